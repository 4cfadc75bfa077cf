"""A resumed run equals an uninterrupted one bit for bit with the real datamodule: dataset folder and shards,
checkpoint taken mid-epoch, the run continuing across an epoch boundary."""
import pytest
import pytorch_lightning as pl
import torch

from data.datamodule import ProductClipDataModule
from data.shards import write_shards
from gan.module import ReelGAN
from train_world import TINY_MODEL, make_world

BATCH = 8


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world") / "w", clips=48)


@pytest.fixture(scope="module")
def shards(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards") / "s"
    write_shards(world, out, (32, 32), clips_per_chunk=8, val_fraction=0.1, workers=1)
    return out


def _module(seed_init, cond_dim):
    torch.manual_seed(seed_init)
    return ReelGAN(cond_dim=cond_dim, frames=8, height=32, width=32, r1_interval=3, ada_interval=1,
                   ada_speed_images=64, ema_half_life_images=64, **TINY_MODEL)


def _fit(root, tmp, max_batches, workers, ckpt_path=None, save_every=None):
    dm = ProductClipDataModule(str(root), frames=8, height=32, width=32, batch_size=BATCH, num_workers=workers,
                               cache_clips=False, val_fraction=0.1)
    model = _module(0 if ckpt_path is None else 99, dm.embedding_dim)
    callbacks = [pl.callbacks.ModelCheckpoint(dirpath=tmp, every_n_train_steps=save_every, save_top_k=-1,
                                              filename="step{step}", auto_insert_metric_name=False)] \
        if save_every else []
    trainer = pl.Trainer(max_steps=2 * max_batches, logger=False, enable_checkpointing=bool(save_every),
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1,
                         precision="32-true", default_root_dir=str(tmp), callbacks=callbacks,
                         limit_val_batches=0, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    return model, trainer


@pytest.mark.parametrize("source,workers", [("folder", 0), ("shards", 1)])
def test_resume_mid_epoch_equals_uninterrupted(world, shards, tmp_path, source, workers):
    root = world if source == "folder" else shards
    straight, trainer = _fit(root, tmp_path / "a", max_batches=9, workers=workers)
    assert trainer.current_epoch >= 1, "the run must cross an epoch boundary"
    _fit(root, tmp_path / "b", max_batches=3, workers=workers, save_every=6)       # killed after batch 3
    torch.manual_seed(123)                            # another process state: the checkpoint must restore it
    resumed, _ = _fit(root, tmp_path / "c", max_batches=9, workers=workers, ckpt_path=str(tmp_path / "b" / "step6.ckpt"))
    assert int(resumed.images_seen) == int(straight.images_seen) == 9 * BATCH
    a, b = straight.state_dict(), resumed.state_dict()
    for key in a:                                     # G, G_ema, both Ds, buffers: bit-identical
        assert torch.equal(a[key], b[key]), key
