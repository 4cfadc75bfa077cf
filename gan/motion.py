"""Motion modules: how a clip's frames differ from one another. A registry, selected by name in the config.

Every module has one interface:
    forward(w (B, w_dim), noise (B, T, noise_dim), feats (B, T, C, h, w))
        -> (w_frames (B, T, w_dim), feats (B, T, C, h, w))
`w` is the clip's style (content ⊕ condition), `noise` the per-frame motion noise taken from z, `feats` the
learned constant at (H/8, W/8) broadcast over the frames. A module moves the clip either through the per-frame
styles (gru) or through the low-resolution features (sep3d, attention).
"""
from __future__ import annotations

import inspect
import math

import torch
import torch.nn.functional as F
from torch import nn

from gan.fused import GRUSequence
from gan.layers import Block2Plus1D, EqualLinear


class GRUMotion(nn.Module):
    """MoCoGAN-style recurrent motion codes: a GRU over per-frame noise, started from the clip style.

    w_t = w + A·GRU(ε_1..ε_t; h_0 = B·w): the content is shared, the trajectory is smooth in t.
    """

    def __init__(self, w_dim: int, noise_dim: int, channels: int, frames: int,
                 hidden: int = 128):  # hidden: GRU state size
        super().__init__()
        self.init_state = EqualLinear(w_dim, hidden)
        self.gru = nn.GRU(noise_dim, hidden, batch_first=True)
        self.to_style = EqualLinear(hidden, w_dim)

    def forward(self, w, noise, feats):
        h0 = torch.tanh(self.init_state(w))                                 # (B, hidden)
        x = noise.to(h0.dtype)
        if x.is_cuda:                                                       # cuDNN: the whole sequence, one kernel
            codes, _ = self.gru(x, h0.unsqueeze(0).contiguous())            # (B, T, hidden)
        else:
            codes = self._unrolled(x, h0)
        return w[:, None, :] + self.to_style(codes), feats

    def _unrolled(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """nn.GRU's equations over its own parameters: the input projections of all frames in one matmul, the
        recurrence in gan.fused.GRUSequence (a hand-written backward through time). The CPU kernel and autograd's
        unrolled loop run a dozen ops per frame forwards and thirty backwards; this is 17 (issue 19)."""
        g = self.gru
        return GRUSequence.apply(F.linear(x, g.weight_ih_l0, g.bias_ih_l0), h, g.weight_hh_l0, g.bias_hh_l0)


class Sep3DMotion(nn.Module):
    """S3D-style factorised (2+1)D residual convolutions over the low-resolution synthesis features.

    Per-frame noise and the clip style are injected as channel biases; temporal 3-tap convs make neighbouring
    frames agree, so motion is local and smooth.
    """

    def __init__(self, w_dim: int, noise_dim: int, channels: int, frames: int,
                 blocks: int = 2):  # blocks: number of (2+1)D residual blocks
        super().__init__()
        self.from_noise = EqualLinear(noise_dim, channels)
        self.from_style = EqualLinear(w_dim, channels)
        # equalised lr: with plain convs, tryon-128-gpu's lr (2.5e-3, β1 = 0) grew these features ~10⁴× within 25
        # batches and saturated G's tanh everywhere (bench/bench_stability.py)
        self.blocks = nn.Sequential(*[Block2Plus1D(channels, channels, equalised=True) for _ in range(blocks)])

    def forward(self, w, noise, feats):
        bias = self.from_noise(noise.to(feats.dtype)) + self.from_style(w)[:, None, :]   # (B, T, C)
        x = (feats + bias[..., None, None]).transpose(1, 2)                              # (B, C, T, h, w)
        x = self.blocks(x).transpose(1, 2).contiguous()                                  # (B, T, C, h, w)
        return w[:, None, :].expand(-1, noise.shape[1], -1), x


class _FactorisedAttentionBlock(nn.Module):
    """Spatial attention within each frame, then temporal attention at each location, then an MLP (pre-norm)."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        self.norm_s, self.norm_t, self.norm_m = (nn.LayerNorm(channels) for _ in range(3))
        self.spatial = nn.MultiheadAttention(channels, heads, batch_first=True)
        self.temporal = nn.MultiheadAttention(channels, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(channels, 2 * channels), nn.GELU(), nn.Linear(2 * channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:          # x: (B, T, S, C), S = h·w tokens
        B, T, S, C = x.shape
        s = x.reshape(B * T, S, C)
        n = self.norm_s(s)
        s = s + self.spatial(n, n, n, need_weights=False)[0]
        t = s.reshape(B, T, S, C).transpose(1, 2).reshape(B * S, T, C)
        n = self.norm_t(t)
        t = t + self.temporal(n, n, n, need_weights=False)[0]
        t = t + self.mlp(self.norm_m(t))
        return t.reshape(B, S, T, C).transpose(1, 2)


class AttentionMotion(nn.Module):
    """Factorised spatiotemporal attention (TimeSformer-style divided attention) at (H/8, W/8)."""

    def __init__(self, w_dim: int, noise_dim: int, channels: int, frames: int,
                 blocks: int = 1,   # blocks: number of (spatial, temporal, MLP) attention blocks
                 heads: int = 4):   # heads: attention heads; must divide the base channels
        super().__init__()
        if channels % heads:
            raise ValueError(f"attention motion: heads={heads} must divide the base channels ({channels})")
        self.from_noise = EqualLinear(noise_dim, channels)
        self.from_style = EqualLinear(w_dim, channels)
        self.time_embedding = nn.Parameter(torch.randn(frames, channels) / math.sqrt(channels))
        self.blocks = nn.ModuleList([_FactorisedAttentionBlock(channels, heads) for _ in range(blocks)])

    def forward(self, w, noise, feats):
        B, T, C, h, wd = feats.shape
        if T > self.time_embedding.shape[0]:
            raise ValueError(f"attention motion was built for {self.time_embedding.shape[0]} frames, got {T}")
        bias = self.from_noise(noise.to(feats.dtype)) + self.from_style(w)[:, None, :] + self.time_embedding[:T]
        x = feats.flatten(3).transpose(2, 3) + bias[:, :, None, :]         # (B, T, h·w, C)
        for block in self.blocks:
            x = block(x)
        x = x.transpose(2, 3).reshape(B, T, C, h, wd)
        return w[:, None, :].expand(-1, T, -1), x


MOTION_MODULES: dict[str, type[nn.Module]] = {
    "gru": GRUMotion,
    "sep3d": Sep3DMotion,
    "attention": AttentionMotion,
}


def build_motion(name: str, **kwargs) -> nn.Module:
    if name not in MOTION_MODULES:
        raise ValueError(f"unknown motion module {name!r}; choose one of {sorted(MOTION_MODULES)} (model.motion)")
    cls = MOTION_MODULES[name]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    extra = sorted(set(kwargs) - accepted)
    if extra:
        options = sorted(accepted - {"w_dim", "noise_dim", "channels", "frames"})
        raise ValueError(f"model.motion_kwargs {extra} are not options of motion {name!r}; its options: {options}")
    return cls(**kwargs)
