"""Shared helpers for the training tests: a tiny synthetic world and configs derived from configs/demo-cpu.yaml."""
from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytorch_lightning as pl
import yaml

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

TINY_MODEL = {
    "content_dim": 16, "motion_noise_dim": 4, "w_dim": 32, "embed_dim": 8, "mapping_layers": 2,
    "g_channels": [32, 32, 16, 8], "motion_kwargs": {"hidden": 16}, "d_image_channels": [8, 16, 32, 32],
    "d_video_channels": [8, 16, 32], "d_features": 32,
}


def make_world(out: Path, clips: int = 64, users: int = 40, size: str = "32x32", frames: int = 8,
               dim: int = 8, seed: int = 0) -> Path:
    """reelgan-data synth + embed through the real CLI (the same path a user takes)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    subprocess.run([PY, "-m", "data.cli", "synth", str(out), "--clips", str(clips), "--users", str(users),
                    "--size", size, "--frames", str(frames), "--seed", str(seed), "--workers", "1"],
                   check=True, cwd=ROOT, env=env, capture_output=True)
    subprocess.run([PY, "-m", "data.cli", "embed", str(out), "--dim", str(dim), "--no-persona"],
                   check=True, cwd=ROOT, env=env, capture_output=True)
    return out


def _merge(base: dict, over: dict) -> dict:
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict) and k not in ("motion_kwargs", "logger"):
            _merge(base[k], v)
        else:
            base[k] = v
    return base


def write_config(path: Path, world: Path, run: Path, max_steps: int, ckpt_every: int = 10, sample_every: int = 0,
                 model: dict | None = None, data: dict | None = None, trainer: dict | None = None,
                 tiny: bool = True) -> Path:
    """configs/demo-cpu.yaml with a tiny model, the given world/run dir and step counts."""
    cfg = yaml.safe_load((ROOT / "configs" / "demo-cpu.yaml").read_text())
    cfg = copy.deepcopy(cfg)
    cfg["trainer"].update(default_root_dir=str(run), max_steps=max_steps, log_every_n_steps=2)
    cfg["trainer"].pop("max_time", None)
    for cb in cfg["trainer"]["callbacks"]:
        name = cb["class_path"].rsplit(".", 1)[-1]
        if name in ("ModelCheckpoint", "RunCheckpoint"):
            cb["init_args"]["every_n_train_steps"] = ckpt_every
        if name == "SampleGrid":
            cb["init_args"].update(every_n_steps=sample_every, users=2, seeds=[0, 1], at_start=False)
    if tiny:
        cfg["model"].update(TINY_MODEL)
    cfg["data"].update(root=str(world), frames=8, stride=1, height=32, width=32, batch_size=8)
    _merge(cfg, {"model": model or {}, "data": data or {}, "trainer": trainer or {}})
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def train_cmd(config: Path, *extra: str) -> list[str]:
    return [PY, "-m", "train.cli", "fit", "-c", str(config), *extra]


def run_env() -> dict:
    path = os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])
    # one thread per process: the suite shares 2 cores with other work (and the DDP test runs 2 processes)
    return dict(os.environ, HF_HUB_OFFLINE="1", WANDB_MODE="disabled", PYTHONUNBUFFERED="1", PYTHONPATH=path,
                OMP_NUM_THREADS="1")


def colour_alignment(generator, world: Path, per_colour: int = 3, seeds: int = 6, threshold: float = 60.0) -> dict:
    """How much more of each user's preferred garment colour appears in *their* clips than in other users'.

    For users u (grouped by hidden preferred colour) and the same seeds, f[u, k] = share of pixels within
    `threshold` (RGB, 0-255) of colour k. alignment = mean_u (f[u, pref_u] − mean_{v: pref_v ≠ pref_u} f[v, pref_u]).
    mean_shift = mean_u <m_u − m̄, unit(rgb(pref_u) − m̄)> (RGB units): each user's mean colour moved towards
    their preferred colour. An unconditional or untrained generator scores ≈ 0 on both; a conditioned one > 0.
    Reads hidden_truth.json: this is evaluation, never training.
    """
    import json

    import numpy as np
    import torch

    from data.preferences import PreferenceEmbeddings
    from data.synth import COLOUR_RGB
    from data.tensors import model_to_uint8
    from generate.sampler import generate_clips

    truth = json.loads((world / "hidden_truth.json").read_text())["users"]
    emb = PreferenceEmbeddings.load(world / "embeddings" / "preferences.safetensors")
    users: list[str] = []
    for colour in COLOUR_RGB:
        users += [u for u in sorted(truth) if truth[u]["colour"] == colour and u in emb][:per_colour]
    prefs = [truth[u]["colour"] for u in users]
    conds = emb.conditions(users).repeat_interleave(seeds, dim=0)
    clips = generate_clips(generator, conds, list(range(seeds)) * len(users), batch_size=32)
    rgb = model_to_uint8(clips).permute(0, 1, 3, 4, 2).reshape(len(users), -1, 3).float()   # (U, pixels, 3)
    palette = torch.tensor([COLOUR_RGB[c] for c in COLOUR_RGB], dtype=torch.float32)       # (K, 3)
    names = list(COLOUR_RGB)
    frac = torch.stack([(torch.cdist(rgb[i], palette) < threshold).float().mean(0) for i in range(len(users))])
    # mean-colour shift: how far each user's average pixel moves from the all-user average towards their colour
    means = rgb.mean(dim=1)                                                                 # (U, 3)
    centre = means.mean(dim=0)
    shifts = []
    for i, colour in enumerate(prefs):
        direction = palette[names.index(colour)] - centre
        shifts.append(float((means[i] - centre) @ direction / direction.norm()))
    gains = []
    for i, colour in enumerate(prefs):
        k = names.index(colour)
        others = [j for j, c in enumerate(prefs) if c != colour]
        gains.append(float(frac[i, k] - frac[others, k].mean()))
    return {"alignment": float(np.mean(gains)), "mean_shift": float(np.mean(shifts)), "users": len(users),
            "per_user": gains, "per_user_shift": shifts,
            "share_of_preferred": float(np.mean([frac[i, names.index(c)] for i, c in enumerate(prefs)]))}


class RankReport(pl.Callback):
    """For the DDP test: each process writes its rank, pid and a checksum of its generator weights to
    RUN/rank<r>.json at the end of training (class path `train_world.RankReport`, tests/ on PYTHONPATH)."""

    def on_train_end(self, trainer, pl_module):
        import json

        total = sum(float(p.double().sum()) for p in pl_module.generator.parameters())
        Path(trainer.default_root_dir, f"rank{trainer.global_rank}.json").write_text(json.dumps(
            {"rank": trainer.global_rank, "world": trainer.world_size, "pid": os.getpid(),
             "weights": total, "images_seen": int(pl_module.images_seen)}))
