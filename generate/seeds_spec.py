"""`--seeds 0-7,12` and `--num N` → an ordered list of seeds (one seed → one clip, see gan.seeds)."""
from __future__ import annotations

import re

from gan.seeds import MAX_SEED  # torch.Generator.manual_seed takes 64-bit values; seeds stay non-negative

MAX_SEEDS = 100_000  # a typo like 0-99999999 should fail fast, not fill the disk
_PART = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


class SeedSpecError(ValueError):
    """A --seeds/--num value that cannot be used."""


def parse_seeds(spec: str) -> list[int]:
    """'0-7,12' → [0, 1, ..., 7, 12]. Ranges are inclusive; order is kept; duplicates are an error."""
    if not isinstance(spec, str) or not spec.strip():
        raise SeedSpecError("--seeds is empty: give a list like '0-7,12' or use --num N")
    seeds: list[int] = []
    for part in spec.split(","):
        m = _PART.match(part)
        if not m:
            raise SeedSpecError(
                f"--seeds part {part.strip()!r} is not a seed or a range: use non-negative integers like '3' or '0-7'"
            )
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise SeedSpecError(f"--seeds range {part.strip()!r} runs backwards: write it as '{hi}-{lo}'")
        if hi > MAX_SEED:
            raise SeedSpecError(f"--seeds value {hi} is larger than the largest seed {MAX_SEED}")
        if len(seeds) + (hi - lo + 1) > MAX_SEEDS:
            raise SeedSpecError(f"--seeds {spec!r} asks for more than {MAX_SEEDS} clips; split the job")
        seeds.extend(range(lo, hi + 1))
    seen: set[int] = set()
    for s in seeds:
        if s in seen:
            raise SeedSpecError(f"--seeds {spec!r} names seed {s} twice; each seed is one clip")
        seen.add(s)
    return seeds


def resolve_seeds(num: int | None = None, spec: str | None = None) -> list[int]:
    """Exactly one of --num (seeds 0..num-1) and --seeds; neither → a single clip, seed 0."""
    if num is not None and spec is not None:
        raise SeedSpecError("give --num or --seeds, not both (--num N is the same as --seeds 0-(N-1))")
    if spec is not None:
        return parse_seeds(spec)
    if num is None:
        return [0]
    if num < 1 or num > MAX_SEEDS:
        raise SeedSpecError(f"--num must be between 1 and {MAX_SEEDS}, got {num}")
    return list(range(num))
