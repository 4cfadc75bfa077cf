"""The conditional video generator: (z, condition) → video (B, T, C, H, W) in [-1, 1].

z = [content code (content_dim) | motion noise (frames × motion_noise_dim) | attribute draws (one per product
attribute, when the generator has them)], so the whole clip is fixed by (z, condition): there is no hidden noise.
The pipeline:
    attributes (optional): condition → p(attribute | shopper), one softmax per product attribute (colour,
               category, ...); each value is drawn from it with z's attribute part, or, in training, is the
               attribute of the real clip the datamodule paired with the shopper (teacher forcing)
    mapping:   normalise(z_content) ⊕ normalise(embed(condition)) [⊕ normalise(embed(attributes))] → MLP → w
    motion:    registry module (gan.motion) → per-frame styles w_t and/or moved low-res features
    synthesis: learned constant at (H/8, W/8) → 4 levels of modulated convs, ×2 up per level, RGB skips; optionally
               position (Fourier) features into the full-size level (gan.fourier: patterns finer than H/2 holds)
Truncation pulls w towards the average w *of the same condition*, estimated on a fixed set of content codes,
so it trades diversity for fidelity without forgetting who the clip is for. It pulls only the styles of the
synthesis levels from `truncation_from_level` on (default 3: the full-size level H), so the coarser levels and the
motion keep the seed's pose and movement (StyleGAN's truncation cutoff, the other way round: the attribute modes
below already fix what the shopper asked for, and a full pull left a shopper's seeds nearly identical, issue 21).
With attributes, truncation < 1 also takes each attribute's most likely value for the shopper (its mode) instead
of a draw: the discrete counterpart of pulling w to its mean, and the way to the data's mode ceiling (a w average
of a red and a blue clip is neither).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gan.attributes import attribute_one_hot, masked_attribute_loss, padded_attribute_logits
from gan.fourier import FourierFeatures
from gan.layers import EqualLinear, Modulation, StyledConv, ToRGB
from gan.motion import build_motion

LEVELS = 4  # H/8, H/4, H/2, H
# How the summed RGB skips become a clip in [-1, 1]. tanh: smooth, but a G pushed far past ±1 gets no gradient
# there and cannot come back (issue 19's saturated runs). linear: StyleGAN2's output; training shows the Ds the raw
# sum (`raw=True`), which they push back into range, and clips are clamped.
RGB_OUTPUTS = {"tanh": torch.tanh, "linear": lambda rgb: rgb.clamp(-1.0, 1.0)}


def _normalise(x: torch.Tensor) -> torch.Tensor:
    """Unit second moment per row (StyleGAN's pixel norm on vectors)."""
    return x * (x.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()


class MappingNetwork(nn.Module):
    """normalise(z_content) ⊕ normalise(embed(c)) [⊕ normalise(embed(one-hot attributes))] → w (B, w_dim)."""

    def __init__(self, content_dim: int, cond_dim: int, w_dim: int, embed_dim: int, layers: int, lr_mul: float,
                 attribute_dim: int = 0):
        super().__init__()
        self.embed = EqualLinear(cond_dim, embed_dim)
        self.embed_attributes = EqualLinear(attribute_dim, embed_dim) if attribute_dim else None
        dims = [content_dim + embed_dim * (2 if attribute_dim else 1)] + [w_dim] * layers
        self.net = nn.Sequential(*[EqualLinear(a, b, lr_mul=lr_mul, activation=True)
                                   for a, b in zip(dims[:-1], dims[1:])])

    def forward(self, z_content: torch.Tensor, cond: torch.Tensor, attributes: torch.Tensor | None = None):
        """attributes: (B, Σ classes) concatenated one-hots, required iff the network was built with them."""
        parts = [_normalise(z_content), _normalise(self.embed(cond))]
        if self.embed_attributes is not None:
            parts.append(_normalise(self.embed_attributes(attributes)))
        return self.net(torch.cat(parts, dim=1))


class PreferenceHead(nn.Module):
    """condition → logits of p(attribute value | shopper), one softmax per product attribute.

    Trained by cross-entropy on the attributes of the real clips the datamodule pairs with each shopper (never on
    hidden truth). Linear on the normalised condition: the preference vectors are dot-product embeddings.
    """

    def __init__(self, cond_dim: int, classes: Sequence[int]):
        super().__init__()
        self.classes = [int(c) for c in classes]
        self.linear = nn.Linear(cond_dim, sum(self.classes))
        self.register_buffer("largest", torch.tensor(self.classes) - 1, persistent=False)   # each attribute's last

    def logits(self, cond: torch.Tensor) -> torch.Tensor:
        """(B, Σ classes): each attribute's logits side by side."""
        return self.linear(_normalise(cond.float()))

    def forward(self, cond: torch.Tensor) -> list[torch.Tensor]:
        return list(self.logits(cond).split(self.classes, dim=1))

    def loss(self, cond: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """labels (B, A) long, -1 = unknown → mean cross-entropy over the attributes that have labels."""
        return masked_attribute_loss(self.logits(cond), labels, self.classes)

    @torch.enable_grad()
    def fit(self, cond: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, l2: float = 1e-4,
            max_iter: int = 500) -> float:
        """Fit the head exactly: weighted multinomial logistic regression by full-batch L-BFGS, in float64.

        cond (N, E) the conditions of the data's (shopper, clip) pairs, labels (N, A) long (-1 = unknown), weights
        (N,) each pair's share of the training stream. Why not by SGD beside the GAN: the head is a convex model
        of p(attribute | shopper); batches of 16 and Adam without momentum leave its modes jittering by a few
        users out of 72 (held-out colour mode accuracy 0.83-0.88 across one run's checkpoints), while the exact
        fit sits at the optimum every time. Deterministic. Returns the final weighted cross-entropy.
        """
        x = _normalise(cond.double())
        w = weights.double() / weights.double().sum()
        weight = self.linear.weight.detach().double().clone().requires_grad_(True)
        bias = self.linear.bias.detach().double().clone().requires_grad_(True)
        opt = torch.optim.LBFGS([weight, bias], max_iter=max_iter, line_search_fn="strong_wolfe",
                                tolerance_grad=1e-9, tolerance_change=1e-12)

        def objective():
            logits = (x @ weight.T + bias).split(self.classes, dim=1)
            ce = sum((F.cross_entropy(lg, labels[:, a], ignore_index=-1, reduction="none") * w).sum()
                     for a, lg in enumerate(logits) if (labels[:, a] >= 0).any())
            return ce + l2 * weight.pow(2).sum()

        def closure():
            opt.zero_grad()
            loss = objective()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            self.linear.weight.copy_(weight.to(self.linear.weight.dtype))
            self.linear.bias.copy_(bias.to(self.linear.bias.dtype))
            return float(objective() - l2 * weight.pow(2).sum())

    def choose(self, cond: torch.Tensor, uniforms: torch.Tensor, mode: bool) -> torch.Tensor:
        """uniforms (B, A) in (0, 1) → attribute indices (B, A): inverse-CDF draws, or each attribute's mode. All
        attributes at once: their -inf padding has probability 0 and adds nothing to a CDF."""
        logits = padded_attribute_logits(self.logits(cond), self.classes)          # (B, A, K_max)
        if mode:
            return logits.argmax(dim=2)
        cdf = logits.softmax(dim=2).cumsum(dim=2)
        u = uniforms.unsqueeze(2).to(cdf.dtype) * cdf[..., -1:]
        return torch.searchsorted(cdf, u).squeeze(2).minimum(self.largest)


class VideoGenerator(nn.Module):
    def __init__(
        self,
        cond_dim: int,                          # size of the preference vector (data.embedding_dim)
        frames: int,                            # T, frames per clip
        height: int,                            # H, a multiple of 8
        width: int,                             # W, a multiple of 8 (non-square is fine: 48×64)
        motion: str = "gru",                    # motion module: gru | sep3d | attention (gan.motion.MOTION_MODULES)
        content_dim: int = 128,                 # size of the per-clip content code in z
        motion_noise_dim: int = 16,             # per-frame motion noise in z
        w_dim: int = 256,                       # style code size
        embed_dim: int = 64,                    # condition embedding size inside the mapping network
        mapping_layers: int = 4,                # MLP depth of the mapping network
        mapping_lr_mul: float = 0.01,           # mapping network learns 100× slower (StyleGAN)
        channels: Sequence[int] = (256, 256, 128, 64),  # feature channels at H/8, H/4, H/2, H
        motion_kwargs: dict | None = None,      # extra kwargs for the motion module (e.g. {"hidden": 128})
        truncation_anchors: int = 256,          # content codes averaged to get each condition's mean w
        attribute_classes: Sequence[int] = (),  # values per product attribute G is conditioned on; () = none
        rgb_output: str = "tanh",               # tanh | linear: how the summed RGB becomes a clip (RGB_OUTPUTS)
        rgb_demodulate: bool = False,           # demodulate the ToRGB convs too: each skip's scale then no longer
                                                # grows with the style's (a saturation path, issue 19)
        truncation_from_level: int = 3,         # truncation pulls w only in synthesis levels ≥ this (0: all, as in
                                                # StyleGAN); the coarser levels and the motion keep the seed's pose
        fourier_features: int = 0,              # periods per axis of position features fed to the full-size level's
                                                # second conv (gan.fourier: stripes and check); 0 = none
        fourier_periods: Sequence[float] = (2.5, 6.0),  # their shortest and longest period, in output pixels
    ):
        super().__init__()
        check_video_size(frames=frames, height=height, width=width)
        if int(cond_dim) < 1:
            raise ValueError(f"cond_dim must be >= 1, got {cond_dim} (it comes from data.embedding_dim)")
        channels = [int(c) for c in channels]
        if len(channels) != LEVELS or min(channels) < 1:
            raise ValueError(f"channels must list {LEVELS} positive widths (H/8, H/4, H/2, H), got {channels}")
        self.config = dict(cond_dim=int(cond_dim), frames=int(frames), height=int(height), width=int(width),
                           motion=str(motion), content_dim=int(content_dim), motion_noise_dim=int(motion_noise_dim),
                           w_dim=int(w_dim), embed_dim=int(embed_dim), mapping_layers=int(mapping_layers),
                           mapping_lr_mul=float(mapping_lr_mul), channels=channels,
                           motion_kwargs=dict(motion_kwargs or {}), truncation_anchors=int(truncation_anchors),
                           attribute_classes=[int(c) for c in attribute_classes], rgb_output=str(rgb_output),
                           rgb_demodulate=bool(rgb_demodulate), truncation_from_level=int(truncation_from_level),
                           fourier_features=int(fourier_features),
                           fourier_periods=[float(p) for p in fourier_periods])
        if not 0 <= int(truncation_from_level) < LEVELS:
            raise ValueError(f"truncation_from_level={truncation_from_level} must be a synthesis level in "
                             f"[0, {LEVELS - 1}] (0 truncates every level)")
        self.truncation_from_level = int(truncation_from_level)
        if rgb_output not in RGB_OUTPUTS:
            raise ValueError(f"rgb_output={rgb_output!r} is unknown; choose one of {sorted(RGB_OUTPUTS)}")
        self.rgb_output = str(rgb_output)
        self.cond_dim, self.frames, self.height, self.width = int(cond_dim), int(frames), int(height), int(width)
        self.content_dim, self.motion_noise_dim = int(content_dim), int(motion_noise_dim)
        self.attribute_classes = self.config["attribute_classes"]
        if any(c < 1 for c in self.attribute_classes):
            raise ValueError(f"attribute_classes must all be >= 1, got {self.attribute_classes}")
        self.z_dim = self.content_dim + self.frames * self.motion_noise_dim + len(self.attribute_classes)

        self.preference = PreferenceHead(cond_dim, self.attribute_classes) if self.attribute_classes else None
        self.mapping = MappingNetwork(content_dim, cond_dim, w_dim, embed_dim, mapping_layers, mapping_lr_mul,
                                      attribute_dim=sum(self.attribute_classes))
        self.const = nn.Parameter(torch.randn(channels[0], height // 8, width // 8))
        self.motion = build_motion(motion, w_dim=w_dim, noise_dim=motion_noise_dim, channels=channels[0],
                                   frames=frames, **(motion_kwargs or {}))
        self.fourier = (FourierFeatures(int(fourier_features), height, width, w_dim, tuple(fourier_periods))
                        if int(fourier_features) else None)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        for level, ch in enumerate(channels):
            if level == 0:
                self.convs.append(nn.ModuleList([StyledConv(ch, ch, w_dim)]))
            else:
                extra = self.fourier.channels if self.fourier is not None and level == LEVELS - 1 else 0
                self.convs.append(nn.ModuleList([StyledConv(channels[level - 1], ch, w_dim, up=True),
                                                 StyledConv(ch + extra, ch, w_dim)]))
            self.to_rgbs.append(ToRGB(ch, w_dim, demodulate=bool(rgb_demodulate)))
        self.modulation = Modulation([m.conv for convs, rgb in zip(self.convs, self.to_rgbs) for m in (*convs, rgb)])
        self.layer_levels = [level for level, convs in enumerate(self.convs) for _ in range(len(convs) + 1)]
        # Fixed content codes for the per-condition mean w (not saved: rebuilt identically from the seed).
        g = torch.Generator().manual_seed(0)
        self.register_buffer("truncation_z", torch.randn(truncation_anchors, content_dim, generator=g),
                             persistent=False)

    def attributes_for(self, z: torch.Tensor, cond: torch.Tensor, truncation: float = 1.0,
                       attributes: torch.Tensor | None = None, checked: bool = False) -> torch.Tensor | None:
        """The attribute values (B, A) a clip is made with: given ones where ≥ 0, else drawn by z's attribute part
        (truncation 1) or each attribute's mode for the shopper (truncation < 1). None without attributes."""
        if self.preference is None:
            return None
        A = len(self.attribute_classes)
        uniforms = torch.special.ndtr(z[:, -A:].float()).clamp(1e-6, 1 - 1e-6)  # N(0, 1) → U(0, 1)
        chosen = self.preference.choose(cond, uniforms, mode=float(truncation) < 1.0)
        if attributes is None:
            return chosen
        if attributes.shape != chosen.shape:
            raise ValueError(f"attributes must be (B, {A}) = one index per product attribute, -1 = choose; "
                             f"got {tuple(attributes.shape)}")
        if not checked:
            self.check_attributes(attributes)
        return torch.where(attributes >= 0, attributes.to(chosen.device), chosen)

    def check_attributes(self, attributes: torch.Tensor) -> None:
        """Refuse indices beyond an attribute's values. It reads the values back (a host sync), so training,
        whose labels the datamodule built from the same classes, skips it (forward's `checked=True`)."""
        bad = [a for a, n in enumerate(self.attribute_classes) if (attributes[:, a] >= n).any()]
        if bad:
            raise ValueError(f"attributes column(s) {bad} hold an index beyond the attribute's "
                             f"{[self.attribute_classes[a] for a in bad]} values")

    @torch.no_grad()
    def average_w(self, cond: torch.Tensor, attributes: torch.Tensor | None = None) -> torch.Tensor:
        """cond (B, E) [, attributes (B, A)] → (B, w_dim): mean of mapping(z_k, c, a) over fixed anchor codes z_k."""
        K = self.truncation_z.shape[0]
        zs = self.truncation_z[None].expand(cond.shape[0], -1, -1).reshape(-1, self.content_dim)
        cs = cond[:, None, :].expand(-1, K, -1).reshape(-1, cond.shape[1])
        one_hot = None
        if attributes is not None:
            one_hot = attribute_one_hot(attributes, self.attribute_classes, cond.dtype).repeat_interleave(K, dim=0)
        return self.mapping(zs, cs, one_hot).reshape(cond.shape[0], K, -1).mean(dim=1)

    def forward(self, z: torch.Tensor, cond: torch.Tensor, truncation: float = 1.0,
                attributes: torch.Tensor | None = None, window: tuple[int | torch.Tensor, int] | None = None,
                checked: bool = False, raw: bool = False) -> torch.Tensor:
        """z (B, z_dim), cond (B, E) → video (B, T, 3, H, W) in [-1, 1].

        attributes (B, A) long, optional: the product attribute values to make (-1 = choose from the shopper's
        predicted preferences); training passes those of the paired real clips.
        window (start, length), optional: synthesise only frames start … start+length-1 of the clip (training's
        temporal window, StyleGAN-V's sparse-frame idea). The motion still runs over the whole clip, so these are
        exactly the frames the whole clip has; only the costly synthesis is skipped for the others. start may be
        a 0-d device tensor (training draws it there and never reads it back).
        checked: the attributes are known to be in range (training's own labels): skip the check's host read.
        raw: return the output before its last step (tanh or clamp, `rgb_output`), fp32: what the Ds see in
        training with a linear output, and where a saturated G's seeds still differ.
        """
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be (B, {self.z_dim}) = content {self.content_dim} + {self.frames} frames × "
                             f"{self.motion_noise_dim} motion noise + {len(self.attribute_classes)} attribute "
                             f"draws; got {tuple(z.shape)}")
        if cond.ndim != 2 or cond.shape[1] != self.cond_dim or cond.shape[0] != z.shape[0]:
            raise ValueError(f"cond must be ({z.shape[0]}, {self.cond_dim}) to match z and the generator's "
                             f"cond_dim; got {tuple(cond.shape)} (does the checkpoint match the embeddings?)")
        B, T = z.shape[0], self.frames
        chosen = self.attributes_for(z, cond, truncation, attributes, checked=checked)
        one_hot = None if chosen is None else attribute_one_hot(chosen, self.attribute_classes, cond.dtype)
        w = self.mapping(z[:, :self.content_dim], cond, one_hot)               # (B, w_dim)
        w_truncated = None
        if truncation != 1.0:
            w_truncated = torch.lerp(self.average_w(cond, chosen).to(w.dtype), w, float(truncation))
            if self.truncation_from_level == 0:
                w, w_truncated = w_truncated, None
        noise = z[:, self.content_dim:self.content_dim + T * self.motion_noise_dim].reshape(
            B, T, self.motion_noise_dim)                                        # (B, T, motion_noise_dim)
        feats = self.const[None, None].expand(B, T, -1, -1, -1)               # (B, T, C0, H/8, W/8)
        w_frames, feats = self.motion(w, noise, feats)                          # (B, T, w_dim), same feats shape
        if w_truncated is not None:     # the fine levels' styles: the truncated w with the same motion offsets
            w_frames = torch.stack([w_frames, w_frames + (w_truncated - w)[:, None]], dim=2)   # (B, T, 2, w_dim)
        if window is not None:
            start, T = window[0], int(window[1])
            if torch.is_tensor(start):      # drawn on the device: gather, don't read it back
                frames = start.reshape(()) + torch.arange(T, device=start.device)
                w_frames, feats = w_frames.index_select(1, frames), feats.index_select(1, frames)
            else:
                if start < 0 or T < 1 or start + T > self.frames:
                    raise ValueError(f"window {tuple(window)} is not inside the clip's {self.frames} frames")
                w_frames, feats = w_frames[:, start:start + T], feats[:, start:start + T]
        rgb = self.synthesis(feats.reshape(B * T, *feats.shape[2:]), w_frames.reshape(B * T, *w_frames.shape[2:]))
        # The 4 RGB skips add up: scale by 1/√4 so tanh starts in its linear range.
        rgb = (rgb * 0.5).reshape(B, T, 3, self.height, self.width)
        return rgb if raw else RGB_OUTPUTS[self.rgb_output](rgb)

    def synthesis(self, x: torch.Tensor, ws: torch.Tensor) -> torch.Tensor:
        """Frames' features (N, C0, H/8, W/8) and styles (N, w_dim), or (N, 2, w_dim) = [w, truncated w] → summed
        RGB skips (N, 3, H, W), fp32, before the output scale and tanh. The costly part, and the part
        `model.compile` compiles (`synthesis` is then replaced on the instance: the same weights, a compiled
        graph)."""
        if ws.ndim == 3:                # (N, 2, w_dim): [w, truncated w]; the levels from truncation_from_level
            full, truncated = self.modulation(ws[:, 0]), self.modulation(ws[:, 1])     # take the truncated one
            made = [t if level >= self.truncation_from_level else f
                    for level, f, t in zip(self.layer_levels, full, truncated)]
        else:
            made = self.modulation(ws)  # every layer's styles and demodulation, in a few ops
        modulation = iter(made)
        rgb = None
        for level, (convs, to_rgb) in enumerate(zip(self.convs, self.to_rgbs)):
            for i, conv in enumerate(convs):
                if i == 1 and level == LEVELS - 1 and self.fourier is not None:
                    # position features shifted by the seed's own w, untruncated: its pose, not the shopper's mean
                    x = torch.cat([x, self.fourier(ws if ws.ndim == 2 else ws[:, 0]).to(x.dtype)], dim=1)
                x = conv(x, *next(modulation))
            y = to_rgb(x, *next(modulation))
            # The RGB sum and the tanh run in fp32 whatever the autocast: bf16 rounds a tanh near ±1 to exactly
            # ±1, where its gradient is 0 and a saturated G cannot recover.
            with torch.autocast(y.device.type, enabled=False):
                y = y.float()
                rgb = y if rgb is None else F.interpolate(rgb, scale_factor=2, mode="bilinear",
                                                          align_corners=False) + y
        return rgb


def check_video_size(frames: int, height: int, width: int, min_frames: int = 1, prefix: str = "") -> None:
    """Fail early, naming the field, when a clip size cannot be generated."""
    for name, value in (("height", height), ("width", width)):
        if int(value) < 8 or int(value) % 8:
            fix = max(8, int(round(int(value) / 8)) * 8)
            raise ValueError(f"{prefix}{name}={value} is not a positive multiple of 8 (the generator starts at "
                             f"{name}/8 and doubles 3 times); use e.g. {prefix}{name}={fix}")
    if int(frames) < max(1, min_frames):
        raise ValueError(f"{prefix}frames={frames} is too few: at least {max(1, min_frames)} are needed"
                         + (" by the video discriminator (temporal kernel 3 + one stride-2 step)" if min_frames > 1
                            else ""))
