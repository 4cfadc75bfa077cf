"""`reelgan-generate export`: safetensors, no pickle, and the same clips as the checkpoint."""
from __future__ import annotations

import json
import struct

import pytest
import torch
from safetensors.torch import save_file

from generate.cli import main
from generate.export import export_generator, load_exported, read_export_metadata
from gan.seeds import latents_for_seeds

import _tiny_gan as _tiny


@pytest.mark.parametrize("motion", ["gru", "attention"])
def test_export_round_trip_gives_identical_clips(tmp_path, motion):
    from generate.loading import load_generator

    ckpt = _tiny.tiny_checkpoint(motion=motion)
    out = tmp_path / "g.safetensors"
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    raw = out.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])  # plain JSON header + raw tensor bytes: nothing to unpickle
    assert header["__metadata__"]["format"] == "reelgan-generator/1"
    assert b"\x80\x04" not in raw[:8 + n]
    meta = read_export_metadata(out)
    assert json.loads(meta["generator_config"])["motion"] == motion

    g_ckpt, info_c = load_generator(ckpt)
    g_exp, info_e = load_exported(out)
    g_via_loader, _ = load_generator(out)  # generate.loading dispatches .safetensors to the export reader
    assert info_e["config"] == info_c["config"] and info_e["embeddings_hash"] == (info_c["embeddings_hash"] or None)
    z = latents_for_seeds([0, 1, 2, 7], g_ckpt.z_dim)
    cond = torch.nn.functional.normalize(torch.randn(4, g_ckpt.cond_dim, generator=torch.Generator().manual_seed(1)), dim=1)
    with torch.no_grad():
        for trunc in (1.0, 0.7):
            a = g_ckpt(z, cond, truncation=trunc)
            assert torch.equal(a, g_exp(z, cond, truncation=trunc))
            assert torch.equal(a, g_via_loader(z, cond, truncation=trunc))


def test_not_an_export_is_refused(tmp_path):
    p = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(p))
    with pytest.raises(ValueError, match="not a ReelGAN generator export"):
        load_exported(p)
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(ValueError, match="not a readable safetensors"):
        read_export_metadata(tmp_path / "junk.safetensors")
    with pytest.raises(ValueError, match="must end in .safetensors"):
        export_generator(tmp_path / "x.ckpt", tmp_path / "x.pt")
