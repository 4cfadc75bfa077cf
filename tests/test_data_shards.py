"""reelgan-data shard: real mp4s decoded once into litdata chunks; metadata, re-runs, corrupt clips, the
datamodule over shards, and disjoint chunks per rank with 2 real processes."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from litdata import StreamingDataset

from data import testing as bad
from data.cli import main as data_cli
from data.contract import load_dataset
from data.datamodule import ProductClipDataModule
from data.shards import INFO_FILE, ShardError, read_shard_info, write_shards
from data.video import decode_frames
from train_world import make_world

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world") / "w", clips=40, users=30, size="24x32")


@pytest.fixture(scope="module")
def shards(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards") / "s"
    assert data_cli(["shard", str(world), str(out), "--size", "16x24", "--clips-per-chunk", "4",
                     "--val-fraction", "0.2", "--workers", "1"]) == 0
    return out


def test_shards_hold_the_decoded_clips_and_their_metadata(world, shards):
    info = read_shard_info(shards)
    assert (info["height"], info["width"]) == (16, 24) and info["clips"]["train"] + info["clips"]["val"] > 30
    assert str(world.parent) not in (shards / INFO_FILE).read_text()                # no absolute path in the file
    assert info["source"] == str(world.resolve())                                   # but readers get one
    assert (shards / "embeddings" / "preferences.safetensors").read_bytes() == \
        (world / "embeddings" / "preferences.safetensors").read_bytes()          # carries its embeddings
    clips = load_dataset(world).clips.set_index("clip_id")
    seen = set()
    for split in ("train", "val"):
        for item in StreamingDataset(str(shards / split)):
            row = clips.loc[item["clip_id"]]
            frames, n, _ = decode_frames(row["file"], (16, 24), max_frames=128)
            assert item["video"].dtype.name == "uint8" and item["video"].shape == (n, 16, 24, 3)
            assert (item["video"] == np.stack([frames[i] for i in range(n)])).all()  # the same decode, resized
            assert item["product_id"] == row["product_id"]
            assert json.loads(item["attributes"]) == {a: row[a] for a in ("category", "colour", "pattern")}
            assert abs(item["probs"].sum() - 1) < 1e-12 and len(json.loads(item["users"])) == len(item["probs"])
            seen.add(item["clip_id"])
    assert len(seen) == info["clips"]["train"] + info["clips"]["val"]


def test_rerun_replaces_only_shard_folders(world, shards, tmp_path):
    out = shutil.copytree(shards, tmp_path / "again")
    assert data_cli(["shard", str(world), str(out), "--size", "16x24", "--workers", "1"]) == 0
    assert read_shard_info(out)["clips"]["val"] == 0                              # replaced whole
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".again")]   # no partial folders left
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(ShardError, match="not a ReelGAN shard folder"):
        write_shards(world, other, (16, 24))
    assert (other / "keep.txt").read_text() == "mine"


def test_corrupt_clips_are_skipped_and_counted(world, tmp_path):
    broken = shutil.copytree(world, tmp_path / "w")
    clips = pd.read_csv(broken / "clips.csv", dtype=str)
    bad.corrupt_in_place(broken / clips["path"][0])
    bad.truncated_mp4(broken / clips["path"][1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info = write_shards(broken, tmp_path / "s", (16, 24), workers=1)
    assert info["clips"]["skipped"] >= 1
    assert info["clips"]["train"] + info["clips"]["skipped"] == len(clips) - info["clips"]["without_positive_user"]


def test_datamodule_reads_shards(shards):
    dm = ProductClipDataModule(str(shards), frames=8, height=16, width=24, batch_size=4)
    dm.setup("fit")
    video, cond, users, clip_ids, labels = next(iter(dm.train_dataloader()))
    assert labels.shape == (4, len(dm.attribute_vocab)) and (labels >= 0).all()   # product attributes travel too
    assert video.shape == (4, 8, 3, 16, 24) and video.dtype == torch.uint8   # float only on the device
    assert list(dm.attribute_vocab) == ["category", "colour", "pattern"] and labels.shape == (4, 3)
    assert (labels >= 0).all()                                                   # every synthetic clip has all three
    torch.testing.assert_close(cond.norm(dim=1), torch.ones(4))
    assert len(users) == len(clip_ids) == 4
    val = next(iter(dm.val_dataloader()))
    assert torch.equal(val[0], next(iter(dm.val_dataloader()))[0])               # val is fixed
    with pytest.raises(ShardError, match="--size 32x32"):
        ProductClipDataModule(str(shards), frames=8, height=32, width=32)


RANK_SCRIPT = """
import json, os, sys
import torch.distributed as dist
from litdata import StreamingDataset
dist.init_process_group("gloo")
ids = [item["clip_id"] for item in StreamingDataset(sys.argv[1], shuffle=True, drop_last=False)]
json.dump(ids, open(sys.argv[2], "w"))
dist.barrier()
"""


def test_each_rank_streams_disjoint_chunks(shards, tmp_path):
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT="29517", WORLD_SIZE="2", OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-c", RANK_SCRIPT, str(shards / "train"), str(tmp_path / f"{r}.json")],
                              env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}, cwd=ROOT, stderr=subprocess.PIPE)
             for r in (0, 1)]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read().decode()[-2000:]
        p.stderr.close()
    a, b = (set(json.loads((tmp_path / f"{r}.json").read_text())) for r in (0, 1))
    assert a and b and not a & b                                                   # disjoint
    assert len(a | b) == read_shard_info(shards)["clips"]["train"]               # and together all of them
    assert (shards / INFO_FILE).is_file()


def test_reelgan_train_fit_trains_from_a_shard_folder(world, shards, tmp_path):
    from train_world import run_env, train_cmd, write_config

    run = tmp_path / "run"
    cfg = write_config(tmp_path / "cfg.yaml", shards, run, max_steps=4, ckpt_every=4,
                       data={"frames": 4, "height": 16, "width": 24, "batch_size": 4, "cache_clips": False})
    result = subprocess.run(train_cmd(cfg), cwd=ROOT, env=run_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 4 and saved["reelgan"]["images_seen"] == 8
    broken = tmp_path / "broken"
    shutil.copytree(shards, broken)
    (broken / INFO_FILE).write_text("{")
    result = subprocess.run(train_cmd(cfg, "--data.root", str(broken)), cwd=ROOT, env=run_env(),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode != 0 and INFO_FILE in result.stderr and "Traceback" not in result.stderr


class _RunsCode:
    """A field value whose unpickling runs a shell command (what a crafted shard folder carries)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _crafted_item(index: int, items: list[dict], marker: Path) -> dict:
    return {**items[index], "attributes": _RunsCode(marker)}


@pytest.mark.parametrize("split", ["train", "val"])
def test_a_shard_folder_that_declares_a_pickle_field_is_refused_before_any_chunk_is_read(shards, tmp_path, split):
    """A real `reelgan-data shard` output whose SPLIT/ was re-made with litdata's optimize, one field a pickle
    (litdata's PickleSerializer) that touches a marker file when read: refused, naming index.json and the field."""
    import functools

    from litdata import optimize

    crafted, marker = tmp_path / "crafted", tmp_path / "ran-code"
    shutil.copytree(shards, crafted)
    items = list(StreamingDataset(str(shards / split)))
    shutil.rmtree(crafted / split)
    optimize(fn=functools.partial(_crafted_item, items=items, marker=marker), inputs=list(range(len(items))),
             output_dir=str(crafted / split), chunk_size=4, num_workers=1, start_method="fork")
    shutil.copy2(shards / split / "entries.json", crafted / split / "entries.json")
    assert "pickle" in (crafted / split / "index.json").read_text()
    with pytest.raises(ShardError, match=rf"{split}/index\.json: field 'attributes' has data format 'pickle'"):
        dm = ProductClipDataModule(str(crafted), frames=8, height=16, width=24, batch_size=4)
        dm.setup("fit")
        next(iter(dm.train_dataloader()))
        next(iter(dm.val_dataloader()))
    assert not marker.exists()


def _spawned_children(pid: int) -> list[int]:
    """Processes that `pid` started with multiprocessing's spawn (litdata's workers and chunk writers)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and b"spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return found


def _past_start_up(pid: int) -> bool:
    """A spawned litdata process has unpickled its recipe: data.shards (with PyAV, which nothing before it loads)
    is imported in it."""
    try:
        return "libavcodec" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead
    except OSError:
        return False


def _wait_for(predicate, timeout: float = 120.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_PDEATHSIG) is Linux-only")
def test_a_sigkilled_shard_run_takes_its_workers_and_its_partial_folder_goes_next_run(world, tmp_path):
    """SIGKILL `reelgan-data shard` while its two litdata workers run (held with SIGSTOP so the kill lands mid-run
    whatever the machine's speed): the workers die with it; the next run removes the dead run's partial folder."""
    import signal

    out = tmp_path / "s"
    run = subprocess.Popen([sys.executable, "-m", "data.cli", "shard", str(world), str(out), "--size", "16x24",
                            "--clips-per-chunk", "4", "--workers", "2"], cwd=ROOT, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        assert _wait_for(lambda: sum(map(_past_start_up, _spawned_children(run.pid))) >= 2), "no litdata workers"
        workers = _spawned_children(run.pid)
        for pid in workers:
            os.kill(pid, signal.SIGSTOP)
        run.kill()
        run.wait(timeout=60)
        partial = tmp_path / f".s.partial-{run.pid}"
        written = sorted(partial.rglob("*"))
        for pid in workers:
            os.kill(pid, signal.SIGCONT)
        assert _wait_for(lambda: not any(map(_running, workers))), "litdata workers outlived their parent"
        assert sorted(partial.rglob("*")) == written                  # and wrote nothing after it
        assert [p.name for p in tmp_path.iterdir()] == [partial.name]
        with pytest.raises(ShardError, match="not found"):  # the next run: its first step clears dead partials
            write_shards(world, out, (16, 24), embeddings=tmp_path / "missing.safetensors")
        assert not list(tmp_path.iterdir())
    finally:
        for pid in workers:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
