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


def _tampered(tmp_path, name, config_edit=None, tensor_edit=None, drop_config=False):
    """The tiny export with its config and/or tensors altered, written as a real safetensors file."""
    from safetensors.torch import load_file

    good = tmp_path / "good.safetensors"
    if not good.exists():
        export_generator(_tiny.tiny_checkpoint(), good)
    meta, tensors = dict(read_export_metadata(good)), load_file(str(good))
    config = json.loads(meta["generator_config"])
    if config_edit:
        config_edit(config)
    meta["generator_config"] = json.dumps(config)
    if drop_config:
        del meta["generator_config"]
    if tensor_edit:
        tensor_edit(tensors)
    path = tmp_path / f"{name}.safetensors"
    save_file(tensors, str(path), metadata=meta)
    return path


def _first_weight(tensors):
    return next(k for k, v in tensors.items() if v.ndim >= 2)


TAMPERED = {
    "unknown-key": (dict(config_edit=lambda c: c.update(evil=1)), "unknown key(s) ['evil']"),
    "no-config": (dict(drop_config=True), "no generator_config"),
    "missing-required": (dict(config_edit=lambda c: c.pop("frames")), "lacks required key(s) ['frames']"),
    "huge-frames": (dict(config_edit=lambda c: c.update(frames=10_000_000)), "frames=10000000 is not an integer"),
    "wrong-shape": (dict(tensor_edit=lambda t: t.update({_first_weight(t): torch.zeros(3, 3)})),
                    "do not fit generator_config"),
    "missing-tensor": (dict(tensor_edit=lambda t: t.pop(_first_weight(t))), "do not fit generator_config"),
    "nan-weights": (dict(tensor_edit=lambda t: t[_first_weight(t)].fill_(float("nan"))), "NaN or Inf"),
    "bad-json": (dict(config_edit=None), None),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_tampered_export_is_not_a_valid_export(tmp_path, capsys, case):
    kwargs, detail = TAMPERED[case]
    path = _tampered(tmp_path, case, **kwargs)
    if case == "bad-json":                                  # a config that is not JSON at all
        from safetensors.torch import load_file

        meta = dict(read_export_metadata(path), generator_config="{frames: 8")
        save_file(load_file(str(path)), str(path), metadata=meta)
        detail = "generator_config is not JSON"
    with pytest.raises(ValueError, match="this is not a valid ReelGAN export") as info:
        load_exported(path)
    assert detail in str(info.value) and "reelgan-generate export" in str(info.value)
    np_path = tmp_path / "v.npy"
    import numpy as np

    np.save(np_path, np.ones(8, np.float32))
    assert main(["--checkpoint", str(path), "--embedding", str(np_path), "--outdir", str(tmp_path / "out"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "this is not a valid ReelGAN export" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_tampered_checkpoint_is_not_a_valid_checkpoint(tmp_path):
    from generate.loading import load_generator

    ckpt = torch.load(_tiny.tiny_checkpoint(), weights_only=True)
    ckpt["reelgan"]["generator_config"]["frames"] = 10_000_000
    torch.save(ckpt, tmp_path / "t.ckpt")
    with pytest.raises(ValueError, match=r"this is not a valid ReelGAN checkpoint: .*frames=10000000"):
        load_generator(tmp_path / "t.ckpt")
