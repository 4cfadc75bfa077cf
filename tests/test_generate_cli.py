"""reelgan-generate end to end on a real (tiny) checkpoint: seeds vs batch size, path safety, unknown users."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from data.preferences import PreferenceEmbeddings
from generate.cli import main
from generate.targets import UnknownUserError, user_targets

import _tiny_gan as _tiny
HOSTILE = ["../../x", "a/b", "..", "CON", "ünï cødé"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    ckpt = _tiny.tiny_checkpoint()
    rng = np.random.default_rng(0)
    ids = [f"u{i:04d}" for i in range(40)] + HOSTILE
    prefs = PreferenceEmbeddings(ids, rng.normal(size=(len(ids), 8)), [f"c{i}" for i in range(5)],
                                 rng.normal(size=(5, 8)), source="test")
    prefs.save(root / "preferences.safetensors")
    return {"root": root, "ckpt": ckpt, "prefs": root / "preferences.safetensors"}


def _run(world, out, *extra):
    args = ["--checkpoint", str(world["ckpt"]), "--preferences", str(world["prefs"]), "--outdir", str(out),
            "--no-progress", "--allow-embeddings-mismatch", *extra]
    return main(args)


def _grids(out) -> dict[tuple[str, int], np.ndarray]:
    m = json.loads((out / "manifest.json").read_text())
    return {(e["user"], e["seed"]): np.asarray(Image.open(out / e["folder"] / e["files"]["grid"]))
            for e in m["clips"]}


def test_seeds_give_the_same_clip_whatever_the_batch(world, tmp_path):
    assert _run(world, tmp_path / "b1", "--user", "u0001,u0002", "--seeds", "0-4", "--format", "grid",
                "--batch-size", "1") == 0
    assert _run(world, tmp_path / "b7", "--user", "u0002", "--user", "u0001", "--seeds", "3,0-2,4", "--format",
                "grid,mp4", "--batch-size", "7") == 0
    a, b = _grids(tmp_path / "b1"), _grids(tmp_path / "b7")
    assert set(a) == set(b) and len(a) == 10
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    assert not np.array_equal(a[("u0001", 0)], a[("u0001", 1)])  # seeds differ
    assert not np.array_equal(a[("u0001", 0)], a[("u0002", 0)])  # users differ
    m = json.loads((tmp_path / "b7" / "manifest.json").read_text())
    e = m["clips"][0]
    assert {"user", "seed", "embedding_hash", "checkpoint_sha256", "truncation", "frames", "height", "width"} <= set(e)
    assert (tmp_path / "b7" / e["folder"] / e["files"]["mp4"]).stat().st_size > 0
    assert m["runs"][0]["timings"]["clips_per_s_model"] > 0


def test_hostile_user_ids_stay_inside_outdir(world, tmp_path):
    out = tmp_path / "deep" / "out"
    assert _run(world, out, "--user", ",".join(h for h in HOSTILE if "," not in h), "--format", "gif,grid") == 0
    inside = {p.resolve() for p in out.rglob("*") if p.is_file()}
    everything = {p.resolve() for p in tmp_path.rglob("*") if p.is_file()}
    assert everything == inside  # nothing was written outside --outdir
    m = json.loads((out / "manifest.json").read_text())
    assert sorted(e["user"] for e in m["clips"]) == sorted(HOSTILE)
    assert len({e["folder"] for e in m["clips"]}) == len(HOSTILE)
    run_dir = out / "runs" / m["runs"][0]["run_id"]
    for e in m["clips"]:                           # one folder per target, directly inside the run's folder
        assert (out / e["folder"]).resolve().parent == run_dir.resolve()


def test_unknown_user_suggests_closest_ids_and_persona(world, tmp_path, capsys):
    assert _run(world, tmp_path / "x", "--user", "u0001,u00O7") == 2
    err = capsys.readouterr().err
    assert "unknown user 'u00O7'" in err and "Closest ids: u0007" in err and "--persona" in err
    assert not (tmp_path / "x" / "manifest.json").exists()
    prefs = PreferenceEmbeddings.load(world["prefs"])
    with pytest.raises(UnknownUserError, match="Closest ids: u0012"):
        user_targets(["u012"], prefs)


def test_bad_inputs_are_clear(world, tmp_path, capsys):
    assert _run(world, tmp_path / "x", "--user", "u0001", "--format", "avi") == 2
    assert "unknown format(s) avi" in capsys.readouterr().err
    assert _run(world, tmp_path / "x", "--user", "u0001", "--seeds", "5-2") == 2
    assert "backwards" in capsys.readouterr().err
    np.save(tmp_path / "v.npy", np.zeros(5, np.float32))
    assert _run(world, tmp_path / "x", "--embedding", str(tmp_path / "v.npy")) == 2
    assert "expected shape (8,)" in capsys.readouterr().err


def test_external_embedding_equals_the_users_vector(world, tmp_path):
    prefs = PreferenceEmbeddings.load(world["prefs"])
    np.save(tmp_path / "shopper.npy", prefs.user_vectors[prefs.index("u0003")] * 3.0)  # scale: normalised anyway
    assert _run(world, tmp_path / "e", "--embedding", str(tmp_path / "shopper.npy"), "--format", "grid") == 0
    assert _run(world, tmp_path / "u", "--user", "u0003", "--format", "grid") == 0
    a, b = _grids(tmp_path / "e"), _grids(tmp_path / "u")
    assert np.array_equal(a[("shopper", 0)], b[("u0003", 0)])
    ma = json.loads((tmp_path / "e" / "manifest.json").read_text())["clips"][0]
    assert ma["source"] == "embedding" and ma["detail"].endswith("shopper.npy:0")


def test_persona_and_campaign(world, tmp_path):
    from data.persona import PersonaMap, encode_texts

    rng = np.random.default_rng(1)
    pmap = PersonaMap(rng.normal(size=(384, 8)), np.zeros(8), np.zeros(384))
    pmap.save(tmp_path / "persona_map.safetensors")
    (tmp_path / "campaign.csv").write_text('user_id,persona\nu0004,\n,"retro red dress with dots"\n')
    out = tmp_path / "p"
    assert _run(world, out, "--persona-map", str(tmp_path / "persona_map.safetensors"), "--users-file",
                str(tmp_path / "campaign.csv"), "--persona", "sporty blue jacket", "--format", "grid") == 0
    m = json.loads((out / "manifest.json").read_text())
    assert [(e["user"], e["source"]) for e in m["clips"]] == [
        ("u0004", "user"), ("persona-retro red dress with dots", "persona"), ("persona-sporty blue jacket", "persona")]
    from generate.manifest import condition_hash

    expected = pmap.map_features(encode_texts(["sporty blue jacket"]))[0]
    assert m["clips"][2]["embedding_hash"] == condition_hash(expected / np.linalg.norm(expected))
    (tmp_path / "bad.csv").write_text("user_id,persona\nu0004,\n,\n")
    assert _run(world, tmp_path / "q", "--persona-map", str(tmp_path / "persona_map.safetensors"),
                "--users-file", str(tmp_path / "bad.csv")) == 2


def test_persona_map_of_other_embeddings_is_refused_like_user_vectors(world, tmp_path, capsys):
    from data.persona import PersonaMap

    prefs = PreferenceEmbeddings.load(world["prefs"])
    ckpt = _tiny.tiny_checkpoint(embeddings_hash=prefs.hash)          # trained on world["prefs"]
    rng = np.random.default_rng(1)
    for name, mapped_into in (("other", "f" * 64), ("same", prefs.hash)):
        PersonaMap(rng.normal(size=(384, 8)), np.zeros(8), np.zeros(384), meta={"preferences_hash": mapped_into}
                   ).save(tmp_path / f"{name}.safetensors")
    base = ["--checkpoint", str(ckpt), "--no-progress", "--format", "grid"]
    assert main([*base, "--persona-map", str(tmp_path / "other.safetensors"), "--persona", "red dress",
                 "--outdir", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "ffffffffffff" in err and prefs.hash[:12] in err and "--allow-embeddings-mismatch" in err
    assert not (tmp_path / "a" / "manifest.json").exists()
    assert main([*base, "--persona-map", str(tmp_path / "same.safetensors"), "--persona", "red dress",
                 "--outdir", str(tmp_path / "b")]) == 0


def test_a_campaign_streams_its_first_clips_before_the_file_is_read(world, tmp_path, monkeypatch, capsys):
    """--users-file is read as a stream: through a real FIFO, the first batch of clips is written while the writer
    still holds back the rest of the campaign (it waits for that batch: a deadlock guard, not a timing). A bad last
    row of a regular file is refused, naming the row, before any clip is made."""
    import os
    import threading

    import generate.run as run
    import generate.targets as targets

    monkeypatch.setattr(targets, "CAMPAIGN_CHUNK", 8, raising=False)   # rows turned into targets at a time
    first_batch, fed_all_before_it = threading.Event(), []

    class Encoder(run.ClipEncoder):             # a forward's clips are handed to the writers
        def submit(self, *a, **k):
            first_batch.set()
            return super().submit(*a, **k)

    monkeypatch.setattr(run, "ClipEncoder", Encoder)
    fifo, ids = tmp_path / "campaign.csv", [f"u{i:04d}" for i in range(24)]
    os.mkfifo(fifo)

    def feed():
        with open(fifo, "w") as f:
            f.write("user_id\n" + "".join(f"{u}\n" for u in ids[:12]))
            f.flush()
            fed_all_before_it.append(not first_batch.wait(timeout=120))
            f.write("".join(f"{u}\n" for u in ids[12:]))

    writer = threading.Thread(target=feed)
    writer.start()
    out = tmp_path / "out"
    code = _run(world, out, "--users-file", str(fifo), "--format", "grid", "--batch-size", "8")
    writer.join()
    assert code == 0 and fed_all_before_it == [False]     # clips were made before the rest was written
    m = json.loads((out / "manifest.json").read_text())
    assert [e["user"] for e in m["clips"]] == ids and m["runs"][-1]["targets"] == ids
    bad = tmp_path / "bad.csv"
    bad.write_text("user_id\n" + "".join(f"{u}\n" for u in ids) + "nobody\n")
    capsys.readouterr()
    assert _run(world, tmp_path / "bad", "--users-file", str(bad), "--format", "grid") == 2
    assert f"{bad} row {len(ids) + 2}: unknown user 'nobody'" in capsys.readouterr().err
    assert not (tmp_path / "bad" / "runs").exists()
