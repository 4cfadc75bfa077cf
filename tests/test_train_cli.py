"""reelgan-train: config checks at start-up, wrong-architecture resume, --print_config, 2-process DDP on CPU."""
import json
import subprocess

import pytest
import pytorch_lightning as pl
import torch
import yaml

from data.datamodule import ProductClipDataModule
from gan.module import ReelGAN
from train.cli import build_cli
from train_world import ROOT, TINY_MODEL, make_world, run_env, train_cmd, write_config


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world") / "w")


@pytest.mark.parametrize("data,field", [({"height": 36}, "data.height=36"), ({"width": 30}, "data.width=30"),
                                        ({"frames": 3}, "data.frames=3")])
def test_impossible_sizes_fail_at_start_up_naming_the_field(world, tmp_path, capsys, data, field):
    cfg = write_config(tmp_path / "cfg.yaml", world, tmp_path / "run", max_steps=2, data=data)
    with pytest.raises(SystemExit) as exit_info:
        build_cli(["fit", "-c", str(cfg)])
    assert exit_info.value.code != 0
    assert field in capsys.readouterr().err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_print_config_resolves_links(world, tmp_path, capsys):
    cfg = write_config(tmp_path / "cfg.yaml", world, tmp_path / "run", max_steps=2)
    with pytest.raises(SystemExit):
        build_cli(["fit", "-c", str(cfg), "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["g_channels"] == TINY_MODEL["g_channels"]
    assert printed["data"]["height"] == 32 and printed["trainer"]["precision"] == "bf16-mixed"


def test_condition_dim_mismatch_is_refused(world, tmp_path):
    dm = ProductClipDataModule(str(world), frames=8, height=32, width=32, batch_size=8)
    model = ReelGAN(cond_dim=dm.embedding_dim + 1, frames=8, height=32, width=32, **TINY_MODEL)
    trainer = pl.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         default_root_dir=str(tmp_path))
    with pytest.raises(ValueError, match="condition dimension mismatch"):
        trainer.fit(model, dm)


def test_resume_from_another_architecture_is_a_clear_error(world, tmp_path):
    run = tmp_path / "run"
    cfg = write_config(tmp_path / "a.yaml", world, run, max_steps=2, ckpt_every=2)
    build_cli(["fit", "-c", str(cfg)])
    assert (run / "checkpoints" / "last.ckpt").exists()
    other = write_config(tmp_path / "b.yaml", world, run, max_steps=4, model={"motion": "sep3d", "motion_kwargs": {}})
    with pytest.raises(ValueError, match=r"different architecture \(motion: checkpoint 'gru' vs config 'sep3d'"):
        build_cli(["fit", "-c", str(other), "--ckpt_path", "last"])


def test_ddp_two_cpu_processes(world, tmp_path):
    run = tmp_path / "run"
    cfg = write_config(tmp_path / "cfg.yaml", world, run, max_steps=6, ckpt_every=6,
                       trainer={"precision": "32-true"})
    data = yaml.safe_load(cfg.read_text())
    data["trainer"]["callbacks"].append({"class_path": "train_world.RankReport"})
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    result = subprocess.run(train_cmd(cfg, "--trainer.devices", "2", "--trainer.strategy",
                                      "ddp_find_unused_parameters_true", "--trainer.accelerator", "cpu"),
                            cwd=ROOT, env=run_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    reports = [json.loads((run / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert {r["world"] for r in reports} == {2}
    assert reports[0]["pid"] != reports[1]["pid"]                       # two real processes
    assert reports[0]["weights"] == pytest.approx(reports[1]["weights"], rel=1e-6)  # gradients were synced
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["reelgan"]["images_seen"] == 3 * 8 * 2                 # 3 batches × 8 clips × 2 processes


@pytest.mark.parametrize("logger,artefact", [
    ({"class_path": "train.loggers.RunCSVLogger", "init_args": {"save_dir": "x"}}, "metrics.csv"),
    ({"class_path": "pytorch_lightning.loggers.TensorBoardLogger", "init_args": {"save_dir": "x"}}, "events.out.*"),
    ({"class_path": "pytorch_lightning.loggers.WandbLogger", "init_args": {"save_dir": "x", "offline": True}},
     "wandb/offline-run-*"),
])
def test_loggers_write_into_the_run_dir_and_sample_grids_are_real_mp4s(world, tmp_path, monkeypatch, logger, artefact):
    from data.video import decode_frames

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "run"
    cfg = write_config(tmp_path / "cfg.yaml", world, run, max_steps=4, ckpt_every=4, sample_every=2,
                       trainer={"logger": logger})
    build_cli(["fit", "-c", str(cfg)])
    assert list(run.glob(artefact)), sorted(p.name for p in run.iterdir())
    frames, n, error = decode_frames(run / "samples" / "step_000002.mp4")
    assert error is None and n == 8                                  # T frames of the grid
    # 2 users × (label 120 px | 2 real clips | 8-px gap | 2 seeds), 32×32 clips upscaled ×8 to 256-px rows,
    # 4-px padding
    assert frames[0].shape == (2 * 256 + 3 * 4, 2 * 4 + 120 + (4 * 32 + 8) * 8, 3)
    label, real, gap = frames[0][4:260, 4:124], frames[0][4:260, 124:124 + 512], frames[0][20:244, 648:676]
    assert label.std() > 10 and real.std() > 10 and gap.max() < 30   # text, real clips, an empty gap
    assert (run / "samples" / "step_000002.png").exists()
    assert (run / "samples" / "final.mp4").exists() and (run / "checkpoints" / "last.ckpt").exists()


@pytest.mark.parametrize("name", ["demo-cpu", "tryon-64", "tryon-128-gpu", "cluster-ddp"])
def test_every_shipped_config_builds_the_current_architecture(name):
    """configs/*.yaml stay coherent with the model: every key is a ReelGAN argument and the networks build."""
    cfg = yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())
    data = cfg["data"]
    model = ReelGAN(cond_dim=8, frames=data["frames"], height=data["height"], width=data["width"],
                    attribute_classes=[4, 8, 4], **cfg["model"])
    assert model.hparams.mapping_lr_mul == 1.0 and model.hparams.contrastive_weight > 0
    assert model.attribute_head is not None and model.hparams.d_image_kind in ("conv", "projected")


def test_the_hybrid_d_overlay_turns_any_config_into_the_sharper_recipe():
    """configs/hybrid-d.yaml holds only model keys; on demo-cpu it builds the hybrid image D with the video D's
    weight raised, and leaves the config's own conv D widths to its pixel part."""
    from gan.hybrid import HybridImageDiscriminator

    base = yaml.safe_load((ROOT / "configs" / "demo-cpu.yaml").read_text())
    overlay = yaml.safe_load((ROOT / "configs" / "hybrid-d.yaml").read_text())
    assert set(overlay) == {"model"}
    data = base["data"]
    model = ReelGAN(cond_dim=8, frames=data["frames"], height=data["height"], width=data["width"],
                    attribute_classes=[4, 8, 4], **{**base["model"], **overlay["model"]})
    image_d = model.image_discriminator
    assert isinstance(image_d, HybridImageDiscriminator) and image_d.projected_frames == 1
    assert image_d.projected.size == (48, 48) and model.loss.video_weight == 10.0
    assert model.hparams.diversity_weight > 0                         # the seeds of a shopper kept apart
    assert [b.conv2.weight.shape[0] for b in image_d.pixel.blocks] == base["model"]["d_image_channels"][1:]


def test_training_before_embed_is_one_clear_message(world, tmp_path, capsys):
    """The usual first-run slip: no traceback, one line naming the file and `reelgan-data embed`, exit 2."""
    import shutil

    from train.cli import main

    bare = shutil.copytree(world, tmp_path / "bare", ignore=shutil.ignore_patterns("embeddings"))
    for root, needle in ((bare, "reelgan-data embed"), (tmp_path / "nowhere", "clips.csv: not found")):
        cfg = write_config(tmp_path / "cfg.yaml", root, tmp_path / "run", max_steps=2)
        if root == bare:        # the console process a user runs
            result = subprocess.run(train_cmd(cfg), cwd=ROOT, env=run_env(), capture_output=True, text=True,
                                    timeout=600)
            code, stderr = result.returncode, result.stderr
        else:                   # the same main, in this process (a process start costs ~10 s)
            with pytest.raises(SystemExit) as stopped:
                main(["fit", "-c", str(cfg)])
            code, stderr = stopped.value.code, capsys.readouterr().err
        assert code == 2
        assert "Traceback" not in stderr and needle in stderr
        errors = [line for line in stderr.splitlines() if "error" in line.lower()]
        assert len(errors) == 1 and needle in errors[0], stderr    # one message (beside Lightning's seed note)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_validation_scores_held_out_products_without_touching_the_training_stream(world, tmp_path):
    import pandas as pd

    runs = {}
    for name, val in (("val", {"limit_val_batches": 2, "val_check_interval": 2}), ("plain", {})):
        run = tmp_path / name
        cfg = write_config(tmp_path / f"{name}.yaml", world, run, max_steps=8, ckpt_every=8,
                           data={"val_fraction": 0.3}, trainer=val)
        build_cli(["fit", "-c", str(cfg)])
        runs[name] = run
    metrics = pd.read_csv(runs["val"] / "metrics.csv")
    scores = metrics[["val/scores_real", "val/scores_fake"]].dropna()
    assert len(scores) == 2 and scores.abs().to_numpy().max() > 0        # after batch 2 and batch 4
    assert "val/scores_real" not in pd.read_csv(runs["plain"] / "metrics.csv")
    # the validation pass draws its own z: the trained weights are those of the run without validation
    a, b = (torch.load(r / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"] for r in runs.values())
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_small_catalogue_training_reads_well(tmp_path):
    """24 clips at batch 16: one batch per epoch. The bar covers the run (batches / planned, optimiser step,
    epoch, clips/s), not `Epoch 7/-2`; the CSV logs every N batches across epochs."""
    import pandas as pd

    small = make_world(tmp_path / "small", clips=24, users=20)
    run = tmp_path / "run"
    cfg = write_config(tmp_path / "cfg.yaml", small, run, max_steps=20, ckpt_every=100,
                       data={"batch_size": 16, "val_fraction": 0.0})
    cli = build_cli(["fit", "-c", str(cfg)])
    assert cli.trainer.current_epoch >= 9                              # one batch per epoch
    bar = cli.trainer.progress_bar_callback
    task = bar.progress.tasks[bar.train_progress_bar_id]
    assert (task.total, task.completed, task.description) == (10, 10, "train batches")
    metrics = bar.get_metrics(cli.trainer, cli.model)
    assert metrics["step"] == "20/20" and float(metrics["clips/s"]) > 0 and metrics["images"] == 160
    logged = pd.read_csv(run / "metrics.csv")
    assert logged["step"].tolist() == [1, 3, 5, 7, 9]                  # log_every_n_steps=2 batches, over epochs
    assert logged["loss/g"].notna().all()
