"""Checkpoint → generator: gan.build.generator_from_checkpoint and generate.loading.load_generator."""
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from gan.build import generator_from_checkpoint
from gan.module import ReelGAN
from gan.seeds import latents_for_seeds
from generate.loading import load_generator
from train_world import TINY_MODEL


def _collate(items):
    video, cond = torch.stack([i[0] for i in items]), torch.stack([i[1] for i in items])
    return video, cond, [f"u{k}" for k in range(len(items))], [f"c{k}" for k in range(len(items))]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    model = ReelGAN(cond_dim=6, frames=4, height=16, width=24, embeddings_hash="abc123", **TINY_MODEL)
    data = TensorDataset(torch.rand(8, 4, 3, 16, 24) * 2 - 1, torch.nn.functional.normalize(torch.randn(8, 6), dim=1))
    trainer = pl.Trainer(max_steps=4, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=str(tmp))
    trainer.fit(model, DataLoader(data, batch_size=4, collate_fn=_collate))
    path = tmp / "model.ckpt"
    trainer.save_checkpoint(path)
    return path, model


def test_checkpoint_loads_weights_only_and_rebuilds_the_ema_generator(checkpoint):
    path, model = checkpoint
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["reelgan"]["images_seen"] == 8 and ckpt["reelgan"]["embeddings_hash"] == "abc123"
    g = generator_from_checkpoint(ckpt)
    z, c = latents_for_seeds([0, 1], g.z_dim), torch.nn.functional.normalize(torch.randn(2, 6), dim=1)
    with torch.no_grad():
        assert torch.equal(g(z, c), model.generator_ema(z, c))
        assert not torch.equal(g(z, c), model.generator(z, c))      # EMA, not the raw G


def test_load_generator_reports_provenance(checkpoint):
    path, _ = checkpoint
    g, info = load_generator(path)
    assert info["config"]["width"] == 24 and info["embeddings_hash"] == "abc123"
    assert len(info["sha256"]) == 64 and info["images_seen"] == 8
    assert not any(p.requires_grad for p in g.parameters())


def test_bad_files_are_explained(tmp_path, checkpoint):
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        load_generator(tmp_path / "missing.ckpt")
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(checkpoint[0].read_bytes()[:1000])
    with pytest.raises(ValueError, match="broken.ckpt"):
        load_generator(broken)
    with pytest.raises(ValueError, match="not a ReelGAN training checkpoint"):
        generator_from_checkpoint({"state_dict": {}})
