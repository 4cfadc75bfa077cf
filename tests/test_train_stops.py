"""Stopping and resuming training safely: SIGTERM, SLURM requeue, divergence, bad data, hostile checkpoints.

Every test drives the real `reelgan-train` process. Signals are sent only after a checkpoint file is on disk
(no sleeps that assume a speed), and every wait is generous: the suite shares 2 cores with other work.
"""
import http.server
import os
import shutil
import signal
import subprocess
import threading
import time
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from data.preferences import PreferenceEmbeddings
from gan.generator import VideoGenerator
from train.callbacks import DivergenceGuard
from train_world import PY, ROOT, make_world, run_env, train_cmd, write_config

BATCH = 8
WAIT_S = 840


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world") / "w")


def _wait_for(proc, condition, what: str) -> None:
    deadline = time.time() + WAIT_S
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"training ended (exit {proc.returncode}) before {what}: "
                                 f"{proc.stderr.read().decode()[-3000:]}")
        assert time.time() < deadline, f"no {what} within {WAIT_S} s"
        time.sleep(0.2)


def _start(cmd, env=None):
    return subprocess.Popen(cmd, cwd=ROOT, env=env or run_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _finish(proc) -> tuple[int, str]:
    _, err = proc.communicate(timeout=WAIT_S)
    return proc.returncode, err.decode()


def _load(path):
    return torch.load(path, weights_only=True)


def _periodic_steps(run) -> list[int]:
    return sorted(_load(p)["global_step"] for p in (run / "checkpoints").glob("step*.ckpt"))


def test_sigterm_saves_a_resumable_checkpoint_and_exits_non_zero(world, tmp_path):
    run = tmp_path / "run"
    cfg = write_config(tmp_path / "cfg.yaml", world, run, max_steps=100_000, ckpt_every=10)
    proc = _start(train_cmd(cfg))
    _wait_for(proc, lambda: (run / "checkpoints" / "step000010.ckpt").exists(), "the step-10 checkpoint")
    os.kill(proc.pid, signal.SIGTERM)
    code, err = _finish(proc)
    assert code == 128 + signal.SIGTERM, err[-3000:]
    assert "stopped by SIGTERM" in err and "--ckpt_path last" in err and "Traceback" not in err
    saved = _load(run / "checkpoints" / "last.ckpt")
    step, images = saved["global_step"], saved["reelgan"]["images_seen"]
    assert step >= max(_periodic_steps(run)) >= 10
    assert step % 2 == 0 and images == step // 2 * BATCH          # a whole step: D and G both done

    result = subprocess.run(train_cmd(cfg, "--ckpt_path", "last", "--trainer.max_steps", str(step + 4)), cwd=ROOT,
                            env=run_env(), capture_output=True, text=True, timeout=WAIT_S)
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = _load(run / "checkpoints" / "last.ckpt")
    assert resumed["global_step"] == step + 4 and resumed["reelgan"]["images_seen"] == images + 2 * BATCH


def test_slurm_sigusr1_saves_hpc_checkpoint_requeues_and_the_requeued_job_resumes(world, tmp_path):
    run = tmp_path / "run"
    cfg = write_config(tmp_path / "cfg.yaml", world, run, max_steps=100_000, ckpt_every=10, trainer={"plugins": [
        {"class_path": "pytorch_lightning.plugins.environments.SLURMEnvironment",
         "init_args": {"auto_requeue": True}}]})
    bin_dir, calls = tmp_path / "bin", tmp_path / "scontrol.log"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / "scontrol").chmod(0o755)
    env = dict(run_env(), PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", SLURM_JOB_ID="4242", SLURM_NTASKS="1",
               SLURM_NTASKS_PER_NODE="1", SLURM_JOB_NAME="reelgan", SLURM_NODELIST="localhost", SLURM_PROCID="0",
               SLURM_LOCALID="0", SLURM_NODEID="0")
    proc = _start(train_cmd(cfg), env)
    _wait_for(proc, lambda: (run / "checkpoints" / "step000010.ckpt").exists(), "the step-10 checkpoint")
    os.kill(proc.pid, signal.SIGUSR1)                 # SLURM: "time is nearly up"
    _wait_for(proc, lambda: calls.exists(), "the scontrol requeue call")
    os.kill(proc.pid, signal.SIGTERM)                 # SLURM then stops the job
    code, err = _finish(proc)
    assert code == 128 + signal.SIGTERM, err[-3000:]
    assert calls.read_text().split() == ["requeue", "4242"]
    hpc = _load(run / "hpc_ckpt_1.ckpt")
    step = hpc["global_step"]
    assert step >= 10 and step % 2 == 0 and hpc["reelgan"]["images_seen"] == step // 2 * BATCH

    # the requeued job: same command, no --ckpt_path; Lightning finds RUN/hpc_ckpt_1.ckpt by itself
    result = subprocess.run(train_cmd(cfg, "--trainer.max_steps", str(step + 4)), cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=WAIT_S)
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = _load(run / "checkpoints" / "last.ckpt")
    assert resumed["global_step"] == step + 4
    assert resumed["reelgan"]["images_seen"] == hpc["reelgan"]["images_seen"] + 2 * BATCH


def test_finite_divergence_stops_the_run_with_a_clear_message(world, tmp_path):
    run = tmp_path / "run"
    cfg = write_config(tmp_path / "cfg.yaml", world, run, max_steps=200, ckpt_every=10)
    data = yaml.safe_load(cfg.read_text())
    guard = next(c for c in data["trainer"]["callbacks"] if c["class_path"] == "train.callbacks.DivergenceGuard")
    guard["init_args"]["every_n_batches"] = 5        # the shipped config's guard, checking more often
    cfg.write_text(yaml.safe_dump(data))
    result = subprocess.run(train_cmd(cfg, "--model.lr_g", "1000"), cwd=ROOT, env=run_env(), capture_output=True,
                            text=True, timeout=WAIT_S)
    assert result.returncode == 1, result.stderr[-3000:]
    err = result.stderr
    assert "training diverged at global step" in err and "lower model.lr_g (now 1000.0)" in err
    assert "Traceback" not in err
    assert not (run / "checkpoints" / "step000200.ckpt").exists()


def test_nan_preference_vectors_fail_check_and_training_names_the_users(world, tmp_path):
    bad = tmp_path / "w"
    shutil.copytree(world, bad)
    path = bad / "embeddings" / "preferences.safetensors"
    emb = PreferenceEmbeddings.load(path)
    vectors = emb.user_vectors.copy()
    vectors[3, 1], vectors[5, 0] = np.nan, np.inf
    PreferenceEmbeddings(emb.user_ids, vectors, emb.item_ids, emb.item_vectors, emb.source, emb.meta).save(path)
    check = subprocess.run([PY, "-m", "data.cli", "check", str(bad), "--no-decode"], cwd=ROOT,
                           env=dict(run_env(), COLUMNS="400"),  # rich tables fold long cells at 80 columns
                           capture_output=True, text=True, timeout=WAIT_S)
    assert check.returncode == 1
    assert "NaN or Inf" in check.stdout and emb.user_ids[3] in check.stdout

    run = tmp_path / "run"
    cfg = write_config(tmp_path / "cfg.yaml", bad, run, max_steps=4, ckpt_every=2)
    result = subprocess.run(train_cmd(cfg), cwd=ROOT, env=run_env(), capture_output=True, text=True,
                            timeout=WAIT_S)
    assert result.returncode != 0
    err = result.stderr
    assert "NaN or Inf" in err and emb.user_ids[3] in err and "reelgan-data check" in err
    assert "last.ckpt" not in err and "Traceback" not in err


def test_non_finite_at_step_zero_names_no_missing_checkpoint(tmp_path):
    from test_train_resume import _FixedClips, _module, _trainer

    from train.callbacks import NonFiniteGuard, NonFiniteLossError

    clips = _FixedClips()
    clips.cond[2] = float("nan")                          # a poisoned condition reaches the first batch
    guard_msg = None
    ckpt = __import__("train.checkpoints", fromlist=["RunCheckpoint"]).RunCheckpoint(
        dirpath=tmp_path / "ckpt", every_n_train_steps=2, save_last=True)
    with pytest.raises(NonFiniteLossError) as info:
        _trainer(tmp_path, 2, [NonFiniteGuard(), ckpt]).fit(_module(0), torch.utils.data.DataLoader(clips, batch_size=8))
    guard_msg = str(info.value)
    assert "No checkpoint has been written yet" in guard_msg and "last.ckpt" not in guard_msg
    assert "preference vector (condition) is NaN/Inf for users ['u2']" in guard_msg
    assert "reelgan-data check" in guard_msg and "lr_g" not in guard_msg


class _Evil:
    """Unpickling this runs `touch MARKER`: what an attacker's checkpoint does with weights_only=False."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture()
def evil_server(tmp_path):
    served = tmp_path / "www"
    served.mkdir()
    marker = tmp_path / "PWNED"
    torch.save({"state_dict": {}, "payload": _Evil(marker)}, served / "evil.ckpt")
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(served), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", served, marker
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("where", ["http", "HTTP-upper", "file-url", "local"])
def test_malicious_checkpoint_is_refused_for_every_scheme(world, tmp_path, evil_server, where, monkeypatch, capsys):
    """`reelgan-train fit --ckpt_path` on a pickle that would run code: refused, exit 2. The http case runs the
    real console process; the other schemes run the same `main` in this process (a process start costs ~10 s)."""
    from train.cli import main

    base, served, marker = evil_server
    path = {"http": f"{base}/evil.ckpt", "HTTP-upper": f"HTTP://{base.split('://')[1]}/evil.ckpt",
            "file-url": f"file://{served / 'evil.ckpt'}", "local": str(served / "evil.ckpt")}[where]
    cfg = write_config(tmp_path / "cfg.yaml", world, tmp_path / "run", max_steps=2, ckpt_every=2)
    if where == "http":
        env = dict(run_env(), TORCH_HOME=str(tmp_path / "torch-home"))
        result = subprocess.run(train_cmd(cfg, "--ckpt_path", path), cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=WAIT_S)
        code, stderr = result.returncode, result.stderr
    else:
        monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
        with pytest.raises(SystemExit) as stopped:
            main(["fit", "-c", str(cfg), "--ckpt_path", path])
        code, stderr = stopped.value.code, capsys.readouterr().err
    assert not marker.exists(), "the checkpoint's pickle ran code"
    assert code == 2, stderr[-3000:]
    assert "refused" in stderr and "weights-only" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()


def test_a_good_checkpoint_over_http_loads_weights_only(world, tmp_path, evil_server):
    from train.checkpoints import load_checkpoint_weights_only

    base, served, _ = evil_server
    torch.save({"global_step": 7, "state_dict": {"w": torch.ones(3)}}, served / "good.ckpt")
    loaded = load_checkpoint_weights_only(f"{base}/good.ckpt")
    assert loaded["global_step"] == 7 and torch.equal(loaded["state_dict"]["w"], torch.ones(3))


def test_copied_run_resumes_in_place_and_a_new_learning_rate_is_applied(world, tmp_path):
    first = tmp_path / "a" / "run"
    cfg = write_config(tmp_path / "a.yaml", world, first, max_steps=4, ckpt_every=2)
    subprocess.run(train_cmd(cfg), cwd=ROOT, env=run_env(), check=True, capture_output=True, timeout=WAIT_S)
    copy = tmp_path / "b" / "run"
    shutil.copytree(first, copy)
    cfg_b = write_config(tmp_path / "b.yaml", world, copy, max_steps=8, ckpt_every=2)
    result = subprocess.run(train_cmd(cfg_b, "--ckpt_path", "last", "--model.lr_g", "0.0005"), cwd=ROOT,
                            env=run_env(), capture_output=True, text=True, timeout=WAIT_S)
    assert result.returncode == 0, result.stderr[-3000:]
    names = sorted(p.name for p in (copy / "checkpoints").iterdir())
    assert "last.ckpt" in names and not [n for n in names if n.startswith("last-v")], names
    last = _load(copy / "checkpoints" / "last.ckpt")
    assert last["global_step"] == 8
    assert last["optimizer_states"][0]["param_groups"][0]["lr"] == 0.0005       # G's optimiser: the new rate
    assert "model.lr_g: using 0.0005" in result.stderr


def test_divergence_guard_warns_once_when_the_output_saturates_and_names_the_cause():
    torch.manual_seed(0)
    g = VideoGenerator(4, 2, 16, 16, content_dim=8, motion_noise_dim=2, w_dim=16, embed_dim=4, mapping_layers=1,
                       channels=(8, 8, 8, 8), truncation_anchors=4)
    hparams = {"contrastive_weight": 2.0, "rgb_output": "tanh", "mapping_lr_mul": 1.0, "lr_g": 0.0025,
               "lr_d": 0.0025}
    module = SimpleNamespace(generator=g, hparams=hparams)
    trainer = SimpleNamespace(global_step=100, is_global_zero=True)
    batch = [None, torch.nn.functional.normalize(torch.randn(2, 4), dim=1)]
    guard = DivergenceGuard()
    with warnings.catch_warnings():
        warnings.simplefilter("error")                    # an ordinary G: no warning
        assert guard._check(trainer, module, batch) is None
    with torch.no_grad():
        g.to_rgbs[-1].conv.bias.fill_(50.0)               # every pixel far past tanh's range, seeds still differ
    with pytest.warns(UserWarning, match=r"100% of G's output pixels are saturated.*contrastive_weight=0 \(now 2.0\)"):
        assert guard._check(trainer, module, batch) is None   # a warning, not a stop: the seeds differ
    with warnings.catch_warnings():
        warnings.simplefilter("error")                    # once per run
        assert guard._check(trainer, module, batch) is None
