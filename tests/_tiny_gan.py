"""A real (tiny) ReelGAN Lightning checkpoint for the generate tests: 2 training steps on random clips.

The weights are barely trained, which is all these tests need: determinism, export equality and paths do not
depend on quality. Built through pytorch-lightning's Trainer, so the file is exactly what training writes.
"""
from __future__ import annotations

import atexit
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

TINY = dict(cond_dim=8, frames=4, height=16, width=16, content_dim=16, motion_noise_dim=4, w_dim=32, embed_dim=8,
            mapping_layers=2, g_channels=(32, 32, 16, 16), motion_kwargs={"hidden": 16},
            d_image_channels=(16, 16, 32, 32), d_video_channels=(16, 16, 32), d_features=32)


class _Clips(Dataset):
    def __init__(self, n: int = 8, cond_dim: int = 8, frames: int = 4, size: int = 16):
        g = torch.Generator().manual_seed(0)
        self.video = torch.rand(n, frames, 3, size, size, generator=g) * 2 - 1
        c = torch.randn(n, cond_dim, generator=g)
        self.cond = c / c.norm(dim=1, keepdim=True)

    def __len__(self):
        return len(self.video)

    def __getitem__(self, i):
        return self.video[i], self.cond[i], f"u{i}", f"c{i}"


def _collate(rows):
    v, c, u, k = zip(*rows)
    return torch.stack(v), torch.stack(c), list(u), list(k)


_CACHE: dict[tuple, Path] = {}


def tiny_checkpoint(motion: str = "gru", **overrides) -> Path:
    """A read-only checkpoint, built once per (motion, overrides) per test process (training costs seconds)."""
    key = (motion, tuple(sorted(overrides.items())))
    if key not in _CACHE or not _CACHE[key].is_file():
        folder = Path(tempfile.mkdtemp(prefix="reelgan-tiny-ckpt-"))
        atexit.register(shutil.rmtree, folder, True)
        _CACHE[key] = _build(folder, motion, **overrides)
    return _CACHE[key]


def _build(folder: Path, motion: str, **overrides) -> Path:
    import pytorch_lightning as pl

    from gan.module import ReelGAN

    kw = {**TINY, "motion": motion, **overrides}
    if motion != "gru":
        kw["motion_kwargs"] = {}
    torch.manual_seed(0)
    model = ReelGAN(**kw)
    loader = DataLoader(_Clips(cond_dim=kw["cond_dim"], frames=kw["frames"], size=kw["height"]), batch_size=4,
                        collate_fn=_collate)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = pl.Trainer(max_steps=4, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, default_root_dir=folder)
        trainer.fit(model, loader)
    path = Path(folder) / "tiny.ckpt"
    trainer.save_checkpoint(path)
    return path
