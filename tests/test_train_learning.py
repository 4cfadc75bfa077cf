"""Proof that the GAN learns the condition and that it generalises to shoppers it never trained on: after a short
demo-cpu-recipe training on the synthetic world, held-out users' generated clips show their hidden favourite
garment colour (read by the pixel colour reader, not by anything ReelGAN trains) far more often than the same
clips made with the conditions shuffled among those users."""
import json
import subprocess

import numpy as np
import pytest
import torch

from data.preferences import PreferenceEmbeddings
from data.contract import load_dataset
from data.tensors import model_to_uint8
from evaluation.personalisation.alignment import derangement
from evaluation.personalisation.colour_reader import reader_hits
from generate.loading import load_generator
from generate.sampler import generate_clips
from train_world import ROOT, make_world, run_env, train_cmd, write_config

# demo-cpu's recipe (same losses, conditioning, augmentation, EMA, bf16) shrunk to 16×16×4 clips and small widths
SMALL = {"g_channels": [64, 32, 16, 8], "d_image_channels": [8, 16, 32, 64], "d_video_channels": [8, 16, 32],
         "content_dim": 32, "w_dim": 64, "embed_dim": 16, "d_features": 64, "motion_kwargs": {"hidden": 32}}
BATCHES = 1500
CLIPS_PER_USER = 8


def heldout_hits(generator, world, truncation: float = 1.0) -> dict:
    ds = load_dataset(world)
    emb = PreferenceEmbeddings.load(world / "embeddings" / "preferences.safetensors")
    truth = json.loads((world / "hidden_truth.json").read_text())["users"]
    users = sorted(u for u in ds.heldout_users if u in emb)
    conds = emb.conditions(users)
    perm = torch.as_tensor(derangement(len(users), np.random.default_rng(0)))
    seeds = list(range(CLIPS_PER_USER)) * len(users)
    clips = {name: model_to_uint8(generate_clips(generator, c.repeat_interleave(CLIPS_PER_USER, 0), seeds,
                                                 truncation, 64))
             for name, c in (("own", conds), ("shuffled", conds[perm]))}
    return {**reader_hits(clips, [truth[u]["colour"] for u in users], CLIPS_PER_USER), "users": len(users)}


@pytest.mark.slow
def test_heldout_users_get_their_favourite_colour_far_more_than_shuffled_conditions(tmp_path):
    world = make_world(tmp_path / "world", clips=128, users=320, size="32x32", frames=8)
    run = tmp_path / "run"
    cfg = write_config(tmp_path / "cfg.yaml", world, run, max_steps=2 * BATCHES, ckpt_every=2 * BATCHES,
                       model=SMALL, data={"frames": 4, "height": 16, "width": 16, "batch_size": 16, "stride": 2})
    result = subprocess.run(train_cmd(cfg), cwd=ROOT, env=run_env(), capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]

    trained, info = load_generator(run / "checkpoints" / "last.ckpt")
    assert info["images_seen"] == BATCHES * 16
    after = heldout_hits(trained, world)
    print(f"held-out colour hit {after['hit_rate']:.3f}, shuffled {after['shuffled']:.3f} "
          f"({after['users']} users × {CLIPS_PER_USER} clips)")
    # Measured here (2026-12-04) with 1,500 batches: hit 0.172, shuffled 0.039 (48 users × 8 clips; with 16 and 32
    # clips 0.163 / 0.039 and 0.141 / 0.042, 5-6 standard errors apart). At 1,000 batches the margin was 0.05-0.09
    # depending on bf16 rounding details (two codes with the same maths landed either side of 0.08), too close to
    # the bound to be a proof; an untrained G: 0.10 both ways, chance 0.125. With the fake-aware attribute head
    # (demo-cpu since 2026-12-06): hit 0.198, shuffled 0.029.
    assert after["users"] >= 40
    assert after["hit_rate"] >= after["shuffled"] + 0.08          # the condition decides the colour
    assert after["hit_rate"] >= 2 * after["shuffled"]
