"""One seed → one clip, bit for bit, whatever --batch-size: checked at the demo-cpu generator's real widths, where
the raw generator does NOT give batch-independent floats (1- and 2-row forwards take other GEMM paths)."""
from __future__ import annotations

import numpy as np
import torch

from gan.generator import VideoGenerator
from gan.seeds import latents_for_seeds
from generate.run import FORWARD_BATCH, generate_to_folders
from generate.sampler import generate_clips
from generate.targets import Target

DEMO = dict(cond_dim=32, frames=8, height=32, width=32, motion="gru", content_dim=64, motion_noise_dim=8, w_dim=128,
            embed_dim=32, mapping_layers=2, channels=(128, 64, 32, 16), motion_kwargs={"hidden": 64})


def _generator() -> VideoGenerator:
    torch.manual_seed(0)
    return VideoGenerator(**DEMO).eval().requires_grad_(False)


def _targets(n: int) -> list[Target]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        v = rng.normal(size=DEMO["cond_dim"]).astype(np.float32)
        out.append(Target(f"user{i}", "embedding", v / np.linalg.norm(v)))
    return out


def _run(tmp_path, name, targets, seeds, batch_size) -> dict:
    got = {}

    def keep(entries, video):
        for e, v in zip(entries, video):
            got[(e["user"], e["seed"])] = v.clone()

    generate_to_folders(_generator(), {"sha256": "test"}, targets, seeds, tmp_path / name, ["grid"],
                        batch_size=batch_size, progress=False, on_batch=keep)
    return got


def test_raw_forward_depends_on_batch_size_which_is_why_forwards_are_fixed():
    g = _generator()
    z = latents_for_seeds(list(range(FORWARD_BATCH)), g.z_dim)
    c = torch.from_numpy(np.stack([t.condition for t in _targets(FORWARD_BATCH)]))
    with torch.no_grad():
        full = g(z, c)
        perm = torch.randperm(FORWARD_BATCH, generator=torch.Generator().manual_seed(0))
        assert torch.equal(g(z[perm], c[perm]), full[perm])  # position in a fixed-size forward does not matter
        one = g(z[:1], c[:1])
        padded = generate_clips(g, c[:1], [0], batch_size=1)
    # the raw 1-row forward takes another GEMM path than the fixed-size one: its floats differ...
    assert not torch.equal(one, full[:1]), "the raw forward became batch-independent: FORWARD_BATCH is now merely harmless"
    # ...which is why generate_clips pads every forward to FORWARD_BATCH rows: one clip alone is the clip in a full forward
    assert torch.equal(padded, full[:1])


def test_seed_gives_identical_clip_whatever_batch_size(tmp_path):
    targets = _targets(3)
    a = _run(tmp_path, "b1", targets, [0, 1, 2, 3, 4], batch_size=1)
    b = _run(tmp_path, "b16", targets, [0, 1, 2, 3, 4], batch_size=16)
    c = _run(tmp_path, "b3", [targets[2], targets[0]], [4, 0, 3], batch_size=3)  # other order, other companions
    assert set(a) == set(b) and len(a) == 15
    for key in a:
        assert torch.equal(a[key], b[key]), key
    for key in c:
        assert torch.equal(c[key], a[key]), key
    assert not torch.equal(a[("user0", 0)], a[("user0", 1)]) and not torch.equal(a[("user0", 0)], a[("user1", 0)])
