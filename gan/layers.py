"""Building blocks shared by the generator and the discriminators.

Equalised learning rate (weights stored N(0, 1), scaled at run time by 1/sqrt(fan_in)) as in StyleGAN2, so
Adam sees the same effective step size in every layer whatever its width.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from gan.fused import CosineMatrix


SQRT2 = math.sqrt(2)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate; `lr_mul` slows the mapping network as in StyleGAN.

    With `activation`, leaky ReLU with gain √2. The gain is folded into the weight and bias scales, which is
    exact because leaky ReLU is positively homogeneous: lrelu(x)·√2 = lrelu(√2·x). One elementwise pass fewer,
    forwards and backwards.
    """

    def __init__(self, in_features: int, out_features: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init)))
        gain = SQRT2 if activation else 1.0
        self.scale = lr_mul / math.sqrt(in_features) * gain
        self.lr_mul = lr_mul
        self.bias_scale = lr_mul * gain
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias if self.bias_scale == 1 else self.bias * self.bias_scale
        x = F.linear(x, self.weight * self.scale, bias)
        return F.leaky_relu(x, 0.2) if self.activation else x


def batched_affines(affines: list[EqualLinear], w: torch.Tensor) -> torch.Tensor:
    """The outputs of several EqualLinears that read the same input, side by side (N, Σ out), from one matmul over
    their concatenated weights (G's 11 style affines all read w): one op and one cast where there were eleven,
    forwards and backwards. Each keeps its own parameters, so the state_dict and the initialisation are
    unchanged; exact, since each output is the same dot product. Needs equal scales and no activation."""
    first = affines[0]
    if any(a.scale != first.scale or a.bias_scale != first.bias_scale or a.activation for a in affines):
        raise ValueError("batched_affines needs affines with one weight scale and bias scale and no activation")
    weight = torch.cat([a.weight for a in affines]) * first.scale
    bias = torch.cat([a.bias for a in affines])
    return F.linear(w, weight, bias if first.bias_scale == 1 else bias * first.bias_scale)


class EqualConv2d(nn.Module):
    """Plain conv with equalised learning rate (discriminator and motion blocks); `gain` scales the output (folded
    into the weight and bias scales)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, bias: bool = True,
                 gain: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.scale = gain / math.sqrt(in_ch * kernel * kernel)
        self.gain = gain
        self.stride, self.padding = stride, kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias if self.bias is None or self.gain == 1 else self.bias * self.gain
        return F.conv2d(x, self.weight * self.scale, bias, stride=self.stride, padding=self.padding)


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution, in the 'non-fused' form (scale activations, shared conv, scale outputs).

    The non-fused form runs one ordinary conv for the whole batch instead of a grouped conv per sample, which is
    much faster on CPUs. x: (N, in, H, W), styles: (N, in) = `affine(w)` → (N, out, H', W') with H' = 2H when
    `up`; `gain` multiplies the output (bias included). A generator computes every layer's styles and
    demodulation in a few ops for all its layers (`Modulation`); alone, a layer computes its own (`demodulation`).

    Written for few elementwise passes, each rewrite exact in real arithmetic:
    - the style scales x before the upsampling: a per-channel factor commutes with bilinear interpolation, and
      the product runs at a quarter of the pixels;
    - the conv takes the raw weight (under autocast its bf16 copy is made once and cached); the weight scale
      cancels in demodulation, and without demodulation it multiplies the styles;
    - demodulation coefficients are one matmul, s² · Σ_kk W², instead of a broadcast product and a sum;
    - demodulation, gain and bias are applied in one addcmul.
    """

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, kernel: int = 3, demodulate: bool = True,
                 up: bool = False, gain: float = 1.0):
        super().__init__()
        self.affine = EqualLinear(w_dim, in_ch, bias_init=1.0)  # style starts at 1: identity modulation
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.scale = 1 / math.sqrt(in_ch * kernel * kernel)
        self.demodulate, self.up, self.padding, self.gain = demodulate, up, kernel // 2, float(gain)
        # ‖scale·W_o ⊙ s‖ over (in, kh, kw) = scale·√(s² · Σ_kk W_o²): the scale cancels and rescales eps
        self.eps = 1e-8 / self.scale ** 2

    def demodulation(self, styles: torch.Tensor) -> torch.Tensor:
        """(N, in) styles → (N, out) demodulation coefficients × gain, in the weights' precision (fp32)."""
        with torch.autocast(styles.device.type, enabled=False):
            sq = F.linear(styles.to(self.weight.dtype).square(), self.weight.square().sum(dim=(2, 3)))
            return (sq + self.eps).rsqrt() * self.gain

    def forward(self, x: torch.Tensor, styles: torch.Tensor, out_scale: torch.Tensor | None = None) -> torch.Tensor:
        """out_scale: `demodulation(styles)` when already made (a demodulated layer); None: made here."""
        N = x.shape[0]
        if self.demodulate:
            out_scale = self.demodulation(styles) if out_scale is None else out_scale
        else:
            styles = styles * (self.scale * self.gain)
        x = x * styles.reshape(N, -1, 1, 1).to(x.dtype)
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = F.conv2d(x, self.weight.to(x.dtype), padding=self.padding)
        bias = (self.bias if self.gain == 1 else self.bias * self.gain).reshape(1, -1, 1, 1).to(x.dtype)
        if not self.demodulate:
            return x + bias
        return torch.addcmul(bias, x, out_scale.reshape(N, -1, 1, 1).to(x.dtype))


class Modulation(nn.Module):
    """Every modulated conv's styles and demodulation coefficients for one w, in a few ops instead of a dozen per
    layer (issue 19): one matmul over the concatenated affines (`batched_affines`), and one block-diagonal matmul
    s² · blockdiag(Σ_kk W_l²)ᵀ for all demodulated layers, with each layer's eps and gain as constant columns.
    Exact: the same sums, zero blocks add nothing. Holds no parameters (the layers keep theirs) and refers to
    the layers without owning them, so state_dicts are unchanged."""

    def __init__(self, layers: list[ModulatedConv2d]):
        super().__init__()
        self.layers = tuple(layers)                   # a tuple is not registered as submodules
        demod = [i for i, m in enumerate(layers) if m.demodulate]
        # the demodulated layers' styles first, side by side: their squares are one slice of the affine output
        self.order = demod + [i for i, m in enumerate(layers) if not m.demodulate]
        self.demodulated = len(demod)
        self.ordered = tuple(layers[i] for i in self.order)
        self.style_sizes = [m.affine.weight.shape[0] for m in self.ordered]
        self.demod_sizes = [layers[i].bias.numel() for i in demod]
        self.register_buffer("eps", torch.tensor([layers[i].eps / layers[i].gain ** 2 for i in demod
                                                  for _ in range(layers[i].bias.numel())]), persistent=False)
        self.register_buffer("inv_gain_sq", torch.tensor([1 / layers[i].gain ** 2 for i in demod
                                                          for _ in range(layers[i].bias.numel())]), persistent=False)

    def forward(self, w: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """w (N, w_dim) → per layer, in order: (styles (N, in), out_scale (N, out) or None)."""
        styles = batched_affines([m.affine for m in self.ordered], w)             # (N, Σ in)
        made = [[None, None] for _ in self.layers]
        for i, part in zip(self.order, styles.split(self.style_sizes, dim=1)):
            made[i][0] = part
        if self.demodulated:
            demod = self.ordered[:self.demodulated]
            with torch.autocast(w.device.type, enabled=False):
                blocks = torch.block_diag(*[m.weight.square().sum(dim=(2, 3)) for m in demod])   # (Σout, Σin)
                s = styles[:, :blocks.shape[1]].to(blocks.dtype)                  # fp32: the weights' precision
                # g·rsqrt(sq + eps) = rsqrt(sq/g² + eps/g²)
                out = torch.addcmul(self.eps, F.linear(s.square(), blocks), self.inv_gain_sq).rsqrt()
            for i, part in zip(self.order, out.split(self.demod_sizes, dim=1)):
                made[i][1] = part
        return [tuple(pair) for pair in made]


class StyledConv(nn.Module):
    """Modulated conv + bias + leaky ReLU (gain √2, folded into the conv's output scale: lrelu is positively
    homogeneous). No noise inputs: the generator is deterministic in (z, c)."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, up: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, w_dim, up=up, gain=SQRT2)

    def forward(self, x: torch.Tensor, styles: torch.Tensor, out_scale: torch.Tensor | None = None) -> torch.Tensor:
        return F.leaky_relu(self.conv(x, styles, out_scale), 0.2)


class ToRGB(nn.Module):
    """1×1 modulated conv → 3 channels (skip-architecture output); not demodulated unless asked (StyleGAN2)."""

    def __init__(self, in_ch: int, w_dim: int, demodulate: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, 3, w_dim, kernel=1, demodulate=demodulate)

    def forward(self, x: torch.Tensor, styles: torch.Tensor, out_scale: torch.Tensor | None = None) -> torch.Tensor:
        return self.conv(x, styles, out_scale)


class EqualConv3d(nn.Module):
    """nn.Conv3d's interface with an equalised learning rate: weights stored N(0, 1), scaled by 1/√fan_in at run
    time. For G's layers, which Adam steps at StyleGAN's rates (a plain conv's small weights would move by a large
    fraction of themselves per step, and the activations they make grow without bound)."""

    def __init__(self, in_ch: int, out_ch: int, kernel, stride=1, padding=0, bias: bool = True):
        super().__init__()
        kernel = (kernel,) * 3 if isinstance(kernel, int) else tuple(kernel)
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, *kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.scale = 1 / math.sqrt(in_ch * math.prod(kernel))
        self.stride, self.padding = stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv3d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


class Block2Plus1D(nn.Module):
    """Factorised (2+1)D residual block: spatial k×k conv per frame, then temporal k conv per pixel (S3D).

    x: (B, C, T, H, W) → (B, C_out, T', H', W'); `stride` = (temporal, spatial) downsampling by 2 when set.
    `equalised`: equalised-lr convs (G's motion module); plain nn.Conv3d otherwise (the video D).
    """

    def __init__(self, in_ch: int, out_ch: int, temporal_stride: int = 1, spatial_stride: int = 1,
                 kernel: int = 3, equalised: bool = False):
        super().__init__()
        p = kernel // 2
        conv = EqualConv3d if equalised else nn.Conv3d
        self.spatial = conv(in_ch, out_ch, (1, kernel, kernel), (1, spatial_stride, spatial_stride), (0, p, p))
        self.temporal = conv(out_ch, out_ch, (kernel, 1, 1), (temporal_stride, 1, 1), (p, 0, 0))
        self.skip = (conv(in_ch, out_ch, 1, (temporal_stride, spatial_stride, spatial_stride), bias=False)
                     if (in_ch != out_ch or temporal_stride > 1 or spatial_stride > 1) else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.temporal(F.leaky_relu(self.spatial(x), 0.2))
        return (F.leaky_relu(h, 0.2) + self.skip(x)) / math.sqrt(2)


class Block3D(nn.Module):
    """Full 3×3×3 residual block (MoCoGAN-style video D), same interface as Block2Plus1D."""

    def __init__(self, in_ch: int, out_ch: int, temporal_stride: int = 1, spatial_stride: int = 1,
                 kernel: int = 3):
        super().__init__()
        stride = (temporal_stride, spatial_stride, spatial_stride)
        self.conv1 = nn.Conv3d(in_ch, out_ch, kernel, 1, kernel // 2)
        self.conv2 = nn.Conv3d(out_ch, out_ch, kernel, stride, kernel // 2)
        self.skip = (nn.Conv3d(in_ch, out_ch, 1, stride, bias=False)
                     if (in_ch != out_ch or max(stride) > 1) else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.leaky_relu(self.conv1(x), 0.2))
        return (F.leaky_relu(h, 0.2) + self.skip(x)) / math.sqrt(2)


class ProjectionHead(nn.Module):
    """Projection discriminator output (Miyato & Koyama 2018) for a continuous condition.

    logit = ψ(h) + <φ(c), h>: h (N, F) features, c (N, E) condition → (N,). φ is linear, so the score is
    smooth in the user vector and nearby users share what D learns.
    """

    def __init__(self, features: int, cond_dim: int):
        super().__init__()
        self.unconditional = EqualLinear(features, 1)
        self.embed = EqualLinear(cond_dim, features)

    def condition_embedding(self, cond: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """φ(cond) (M, F), in `dtype` when given (the features' dtype): made once, it serves the score and the
        contrastive head."""
        return self.embed(cond if dtype is None else cond.to(dtype))

    def forward(self, h: torch.Tensor, cond: torch.Tensor | None = None,
                phi: torch.Tensor | None = None) -> torch.Tensor:
        """h (N, F) and cond (N, E), or phi = φ(cond) when already made → logits (N,)."""
        phi = self.condition_embedding(cond, h.dtype) if phi is None else phi
        proj = (phi * h).sum(dim=1) / math.sqrt(h.shape[1])
        return self.unconditional(h).squeeze(1) + proj

    def pairwise(self, h: torch.Tensor, cond: torch.Tensor | None = None,
                 phi: torch.Tensor | None = None) -> torch.Tensor:
        """h (N, F), cond (M, E) or phi = φ(cond) → cosine(h_n, φ(c_m)) (N, M): which condition each feature fits
        (2C loss)."""
        phi = self.condition_embedding(cond, h.dtype) if phi is None else phi
        return CosineMatrix.apply(h, phi)
