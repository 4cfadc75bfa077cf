"""Seeds + conditions → clips, in batches, with per-seed latents (gan.seeds): a clip depends only on its own
(seed, condition, truncation), never on the batch size or on which other clips are generated with it."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from data.tensors import model_to_uint8
from gan.generator import VideoGenerator
from gan.seeds import latents_for_seeds

# The generator always runs forwards of exactly `forward_batch` rows (the last one padded with copies). Measured on
# this CPU: forwards of 1 or 2 rows take other GEMM paths than 4+ (≈ 7e-7 apart, enough to flip a few uint8
# values), while a clip's floats are identical whatever its companions in a forward of fixed size. So a seed gives
# the bit-identical clip whatever `batch_size` (how many forwards run between progress calls), device count or
# rank layout, for a given forward batch and precision; both are recorded in the manifest.
FORWARD_BATCH = 8          # the CPU's forward batch (and every device's where no other is listed)
DEVICE_FORWARD_BATCH = {"cpu": FORWARD_BATCH, "cuda": 64}   # a GPU is only fed by wide forwards
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}  # bf16: autocast, faster on GPUs/AMX, other clips than fp32


def forward_batch_for(device: str | torch.device, requested: int | None = None) -> int:
    """The forward batch: `requested` (--forward-batch) when given, else the device type's default."""
    if requested is not None:
        return int(requested)
    return DEVICE_FORWARD_BATCH.get(torch.device(device).type, FORWARD_BATCH)


def check_options(forward_batch: int, precision: str) -> None:
    if int(forward_batch) < 1:
        raise ValueError(f"--forward-batch must be >= 1, got {forward_batch}")
    if precision not in PRECISIONS:
        raise ValueError(f"--precision {precision!r}: choose {' or '.join(PRECISIONS)}")


@torch.no_grad()
def forwards(generator: VideoGenerator, conditions: torch.Tensor, seeds: Sequence[int], truncation: float = 1.0,
             device: str | torch.device = "cpu", forward_batch: int | None = None, precision: str = "fp32",
             attributes: torch.Tensor | None = None):
    """Yield (rows, video) per forward: video float (forward_batch, T, C, H, W) in [-1, 1] on `device`, of which
    the first `rows` are clips of the given seeds (the last forward is padded with copies of its last row).

    conditions (N, E) float; attributes (N, A) long, optional: the product attribute values each clip is made with
    (attribute-conditioned generators; -1 = the shopper's own draw or mode)."""
    forward_batch = forward_batch_for(device, forward_batch)
    check_options(forward_batch, precision)
    conditions = torch.as_tensor(conditions, dtype=torch.float32)
    if conditions.ndim != 2 or conditions.shape[1] != generator.cond_dim:
        raise ValueError(f"conditions must be (N, {generator.cond_dim}) for this generator, "
                         f"got {tuple(conditions.shape)}")
    if len(seeds) != conditions.shape[0]:
        raise ValueError(f"one seed per condition row: got {len(seeds)} seeds for {conditions.shape[0]} conditions")
    if not 0.0 <= float(truncation) <= 1.0:
        raise ValueError(f"truncation must be in [0, 1] (1 = none), got {truncation}")
    n = len(seeds)
    if n == 0:
        return
    generator = generator.to(device).eval()
    pad = (-n) % forward_batch
    z = latents_for_seeds(list(seeds) + [seeds[-1]] * pad, generator.z_dim)
    conditions = torch.cat([conditions, conditions[-1:].expand(pad, -1)])
    if attributes is not None:
        attributes = torch.as_tensor(attributes, dtype=torch.long)
        if attributes.shape[0] != n:
            raise ValueError(f"one attribute row per condition row: got {attributes.shape[0]} for {n}")
        attributes = torch.cat([attributes, attributes[-1:].expand(pad, -1)])
    dtype = PRECISIONS[precision]
    for lo in range(0, n + pad, forward_batch):
        hi = lo + forward_batch
        with torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype is not None):
            given = {} if attributes is None else {"attributes": attributes[lo:hi].to(device)}
            video = generator(z[lo:hi].to(device), conditions[lo:hi].to(device), truncation=float(truncation),
                              **given)
        yield min(forward_batch, n - lo), video


def uint8_forwards(generator: VideoGenerator, conditions: torch.Tensor, seeds: Sequence[int],
                   truncation: float = 1.0, device: str | torch.device = "cpu", forward_batch: int | None = None,
                   precision: str = "fp32", attributes: torch.Tensor | None = None):
    """Yield per forward the clips as written: uint8 (rows, T, H, W, C) on the CPU. Quantised (data.tensors.
    model_to_uint8) and put in the edge layout on the device, then one copy back per forward (a quarter of the
    float32 bytes; the device never waits for a per-clip copy)."""
    for rows, video in forwards(generator, conditions, seeds, truncation, device, forward_batch, precision,
                                attributes):
        yield model_to_uint8(video[:rows]).permute(0, 1, 3, 4, 2).contiguous().cpu()  # laid out on the device


@torch.no_grad()
def generate_clips(generator: VideoGenerator, conditions: torch.Tensor, seeds: Sequence[int],
                   truncation: float = 1.0, batch_size: int = 16, device: str | torch.device = "cpu",
                   progress=None, forward_batch: int | None = None, precision: str = "fp32",
                   attributes: torch.Tensor | None = None) -> torch.Tensor:
    """conditions (N, E) float, seeds N ints → video float32 (N, T, C, H, W) in [-1, 1] on the CPU.

    Forwards of `forward_batch` rows (default: the device's, `forward_batch_for`). attributes: see `forwards`.
    `progress(done, total)` is called after about every `batch_size` clips when given.
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(seeds)
    out, done, reported = [], 0, 0
    for rows, video in forwards(generator, conditions, seeds, truncation, device, forward_batch, precision,
                                attributes):
        out.append(video[:rows].float().cpu())
        done += rows
        if progress is not None and (done - reported >= batch_size or done == n):
            progress(done, n)
            reported = done
    if not out:
        return torch.empty(0, generator.frames, 3, generator.height, generator.width)
    return torch.cat(out)


def generate_clips_across_processes(generator: VideoGenerator, conditions: torch.Tensor, seeds: Sequence[int],
                                    truncation: float = 1.0, batch_size: int = 16,
                                    device: str | torch.device = "cpu",
                                    attributes: torch.Tensor | None = None) -> torch.Tensor:
    """generate_clips with its rows shared by the processes of a torch.distributed group (e.g. `reelgan-eval
    align --devices N`): rank r makes rows r, r + N, ...; every rank gets all rows back. A clip depends only on its
    seed and condition, so the result equals one process's. Without a group it is generate_clips."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return generate_clips(generator, conditions, seeds, truncation, batch_size, device, attributes=attributes)
    world, rank = dist.get_world_size(), dist.get_rank()
    mine = list(range(rank, len(seeds), world))
    part = generate_clips(generator, torch.as_tensor(conditions)[mine], [seeds[i] for i in mine], truncation,
                          batch_size, device, attributes=None if attributes is None else torch.as_tensor(attributes)[mine])
    parts: list = [None] * world
    dist.all_gather_object(parts, part)                     # gloo: CPU tensors, pickled by torch.distributed
    out = torch.empty(len(seeds), *part.shape[1:], dtype=part.dtype)
    for r, p in enumerate(parts):
        out[r::world] = p
    return out
