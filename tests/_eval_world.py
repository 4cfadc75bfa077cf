"""One tiny synthetic world for the personalisation-evaluation tests, built once per test process.

128 clips at 32×32×8, 96 users, BPR embeddings, and a domain classifier trained on its clips. Built in a temp
folder on first use (about 15 s on 2 cores) and shared by tests/test_eval_*.py in the same pytest run.
"""
from __future__ import annotations

import atexit
import contextlib
import functools
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

SIZE = (32, 32)
FRAMES = 8


# The condition's size: 16 BPR factors + 16 attribute affinities (4 categories, 8 colours, 4 patterns)
DIM = 32


@dataclass(frozen=True)
class EvalWorld:
    root: Path            # the dataset folder
    embeddings: Path      # DATASET/embeddings/preferences.safetensors
    domain: Path          # trained domain classifier (.safetensors)
    domain_report: object  # DomainTrainReport of that training


@contextlib.contextmanager
def one_thread():
    """These networks are tiny: on a shared 2-core machine a second intra-op thread mostly spins (10× slower
    under load), so the evaluation tests run single-threaded and restore the setting afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@functools.lru_cache(maxsize=1)
def eval_world() -> EvalWorld:
    with one_thread():
        return _build()


def _build() -> EvalWorld:
    from data.embed import embed_dataset
    from data.synth import make_world
    from evaluation.features.domain_train import DomainTrainConfig, train_domain_classifier

    folder = Path(tempfile.mkdtemp(prefix="reelgan-evalworld-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    root = folder / "world"
    make_world(root, clips=128, users=96, size=SIZE, frames=FRAMES, seed=0, workers=1)
    report = embed_dataset(root, dim=16, epochs=30, seed=0, persona=False)
    assert report["dim"] == DIM, report["dim"]
    cfg = DomainTrainConfig(frames=FRAMES, height=SIZE[0], width=SIZE[1], steps=420, seed=0)
    _, report = train_domain_classifier(root, cfg, out=folder / "domain.safetensors")
    return EvalWorld(root, root / "embeddings" / "preferences.safetensors", folder / "domain.safetensors", report)
