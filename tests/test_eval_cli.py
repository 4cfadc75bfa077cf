"""`reelgan-eval` fvd / domain / align / engagement through `main`, the COMMANDS extension point, clear errors,
and the in-training fvd[domain] callback on a real (tiny) Lightning run."""
from __future__ import annotations

import json
import shutil
import warnings

import pandas as pd
import pytest
import torch

from evaluation import cli
from evaluation.cli_common import artefact_dir
from evaluation.personalisation.engagement import EngagementScorer
from evaluation.features.domain import load_domain_classifier

import _eval_world
import _tiny_gan as _tiny


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world(eval_world):
    return eval_world


@pytest.fixture(scope="module")
def ckpt(world):
    return _tiny.tiny_checkpoint(cond_dim=_eval_world.DIM)


def _run(argv, capsys) -> tuple[int, dict | None, str]:
    code = cli.main([*argv, "--no-progress"] if argv[0] != "--help" else argv)
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 and out.strip().startswith("{") else None), err


def test_fvd_domain_json_pins_protocol_and_reuses_the_cache(world, ckpt, tmp_path, capsys):
    args = ["fvd", "--checkpoint", str(ckpt), "--dataset", str(world.root), "--domain", str(world.domain),
            "--clips", "24", "--cache-dir", str(tmp_path / "stats"), "--out", str(tmp_path / "eval" / "fvd.json")]
    code, res, _ = _run(args, capsys)
    assert code == 0 and res["metric"] == "fvd[domain]" and res["value"] > 0
    p = res["protocol"]
    assert p["network"]["weights_sha256"] == load_domain_classifier(world.domain)[1]["sha256"]
    assert p["covariance_normalisation"] == "n" and p["real_clips"] == p["fake_clips"] == 24
    assert p["seeds"] == list(range(24)) and p["frames"] == _tiny.TINY["frames"] and p["stride"] == 1
    assert res["checkpoint_sha256"] and json.loads((tmp_path / "eval" / "fvd.json").read_text()) == res
    floor = res["floor"]                                              # real vs a disjoint real set
    assert floor["value"] > 0 and floor["clips"][0] == 24 and 2 <= floor["clips"][1] <= 24
    assert floor["value"] != res["value"]
    code, again, _ = _run(args, capsys)  # same seed → same clips; the real side now comes from the cache
    assert again["value"] == res["value"] and again["protocol"]["real_stats_sha256"] == p["real_stats_sha256"]
    assert len(list((tmp_path / "stats").glob("*.safetensors"))) == 1
    # small-data honesty: 24 clips is no headline FVD; the classifier's accuracy against chance travels along
    assert any("headline FVD" in w for w in res["warnings"]) and any("N < d" in w for w in res["warnings"])
    trust = res["domain_classifier"]
    assert set(trust["attributes"]) == set(world.domain_report.val_accuracy)
    assert all(row["chance"] == world.domain_report.chance[a] for a, row in trust["attributes"].items())


def test_fvd_stride_defaults_to_the_checkpoints_training_stride(world, ckpt, tmp_path, capsys):
    raw = torch.load(ckpt, weights_only=True)
    raw["datamodule_hyper_parameters"] = {"frames": _tiny.TINY["frames"], "stride": 2, "height": 32, "width": 32}
    strided = tmp_path / "strided.ckpt"
    torch.save(raw, strided)
    code, res, _ = _run(["fvd", "--checkpoint", str(strided), "--dataset", str(world.root), "--domain",
                         str(world.domain), "--clips", "8", "--no-floor"], capsys)
    assert code == 0 and res["protocol"]["stride"] == 2
    code, res, _ = _run(["fvd", "--checkpoint", str(strided), "--dataset", str(world.root), "--domain",
                         str(world.domain), "--clips", "8", "--no-floor", "--stride", "1"], capsys)
    assert code == 0 and res["protocol"]["stride"] == 1


def test_fid_has_no_domain_option(capsys):
    with pytest.raises(SystemExit):
        cli.main(["fid", "--help"])
    assert "--domain" not in capsys.readouterr().out


def test_domain_align_engagement_subcommands(world, ckpt, tmp_path, capsys):
    data = tmp_path / "world"
    shutil.copytree(world.root, data)
    code, res, _ = _run(["domain", "--dataset", str(data), "--steps", "20"], capsys)
    model = artefact_dir(data) / "domain.safetensors"
    assert code == 0 and model.is_file() and res["domain_sha256"] == load_domain_classifier(model)[1]["sha256"]
    assert set(res["metrics"]) == {f"domain_val_accuracy[{a}]" for a in ("category", "colour", "pattern")}

    code, res, _ = _run(["align", "--checkpoint", str(ckpt), "--dataset", str(data), "--domain", str(world.domain),
                         "--clips-per-user", "1", "--max-users", "4", "--out", str(tmp_path / "align.json")], capsys)
    assert code == 0 and res["metrics_from"] == "hidden_truth" and len(res["users"]) == 4
    assert {"alignment[colour]", "alignment_shuffled[colour]", "alignment_random[colour]"} <= set(res["metrics"])
    assert res["embeddings_hash"] and res["checkpoint_sha256"]
    ceiling = res["ceilings"]["hidden_truth"]["colour"]               # what the data allows these users
    assert ceiling["users"] >= 1 and 0 < ceiling["sampling"] <= 1 and 0 <= ceiling["mode"] <= 1
    # sharpness and motion against 128 real clips decoded at the generator's size; an untrained G is not real-like
    q = res["quality"]
    assert q["real_clips"] == 128 and q["generated_clips"] == 4 and q["seed_diversity"] is None   # 1 clip per user
    assert res["metrics"]["sharpness_ratio"] == q["sharpness"]["ratio"] and q["motion"]["real"] > 0
    assert set(res["summary"]["attributes"]) == {"category", "colour", "pattern"}

    code, res, _ = _run(["engagement", "--dataset", str(data), "--domain", str(world.domain), "--steps", "60",
                         "--checkpoint", str(ckpt), "--clips-per-user", "1"], capsys)
    assert code == 0 and {"auc[click]", "ndcg@10", "mf:auc[click]", "popularity:ndcg@10"} <= set(res["metrics"])
    scorer = EngagementScorer.load(artefact_dir(data) / "engagement.safetensors")
    assert scorer.info["sha256"] == res["engagement_sha256"] and scorer.info["embeddings_hash"] == res["embeddings_hash"]
    assert not (data / "evaluation").exists()                        # nothing written into the dataset folder
    gen = res["generated"]["p_click"]
    assert all(0 < v < 1 for v in gen.values())


def test_errors_name_the_problem(world, ckpt, tmp_path, capsys):
    code, _, err = _run(["fvd", "--checkpoint", str(ckpt), "--dataset", str(tmp_path / "nowhere")], capsys)
    assert code == 2 and "nowhere" in err and "not a folder" in err
    code, _, err = _run(["align", "--checkpoint", str(tmp_path / "missing.ckpt"), "--dataset", str(world.root),
                         "--domain", str(world.domain)], capsys)
    assert code == 2 and "missing.ckpt" in err
    data = tmp_path / "noheld"
    shutil.copytree(world.root, data)
    users = pd.read_csv(data / "users.csv", dtype=str)
    users.assign(split="train").to_csv(data / "users.csv", index=False)
    code, _, err = _run(["align", "--checkpoint", str(ckpt), "--dataset", str(data), "--domain", str(world.domain)],
                        capsys)
    assert code == 2 and "held-out" in err and "users.csv" in err
    with pytest.raises(SystemExit):  # argparse refuses a frame network for fvd
        cli.main(["fvd", "--checkpoint", str(ckpt), "--dataset", str(world.root), "--network", "inception-fid"])


def test_a_module_adds_a_subcommand_with_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "hello_cmd.py").write_text(
        "def register(sub):\n"
        "    p = sub.add_parser('hello', help='say hello')\n"
        "    p.add_argument('--name', default='world')\n"
        "    p.set_defaults(func=lambda a: print('hello ' + a.name) or 0)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "COMMANDS", [*cli.COMMANDS, "hello_cmd"])
    assert cli.main(["hello", "--name", "slot"]) == 0
    assert capsys.readouterr().out.strip() == "hello slot"
    assert {"fid", "fvd", "align", "engagement", "domain", "hello"} <= set(
        cli.build_parser()._subparsers._group_actions[0].choices)


def test_callback_logs_fvd_domain_during_training(world, tmp_path):
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import CSVLogger
    from torch.utils.data import DataLoader

    from evaluation.metrics.callbacks import DomainFVD
    from gan.module import ReelGAN

    torch.manual_seed(0)
    model = ReelGAN(**{**_tiny.TINY, "cond_dim": _eval_world.DIM, "motion": "gru"})
    loader = DataLoader(_tiny._Clips(n=8, cond_dim=_eval_world.DIM, frames=_tiny.TINY["frames"],
                                     size=_tiny.TINY["height"]),
                        batch_size=4, collate_fn=_tiny._collate)
    cb = DomainFVD(every_n_steps=2, clips=12, dataset=str(world.root), domain=str(world.domain),
                   embeddings=str(world.embeddings), at_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = pl.Trainer(max_steps=10, accelerator="cpu", devices=1, logger=CSVLogger(tmp_path, name="run"),
                             callbacks=[cb], enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, default_root_dir=tmp_path)
        trainer.fit(model, loader)
    steps = [s for s, _ in cb.history]
    # At start, every 2 batches, and at the end (max_steps 10 = 5 batches: two optimisers per batch).
    assert steps == [0, 2, 4, 5] and all(v > 0 for _, v in cb.history)
    assert cb.measure(model) == pytest.approx(cb.history[-1][1], rel=1e-9)  # same seeds and conditions each time
    log = pd.read_csv(next(tmp_path.rglob("metrics.csv")))
    assert "fvd[domain]" in log.columns and log["fvd[domain]"].notna().sum() == 4
    assert float(trainer.callback_metrics["fvd[domain]"]) == pytest.approx(cb.history[-1][1])


def test_an_undecodable_clip_is_skipped_and_counted_by_every_subcommand(world, ckpt, tmp_path, capsys):
    """One corrupt clip file: `check` calls the dataset usable and training skips the clip; every reelgan-eval
    subcommand must do the same (skip it, count it, say so) instead of failing with a traceback."""
    data = tmp_path / "world"
    shutil.copytree(world.root, data)
    clips = pd.read_csv(data / "clips.csv", dtype=str)
    bad_id = clips["clip_id"].iloc[0]
    (data / clips["path"].iloc[0]).write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 10)

    code, res, err = _run(["domain", "--dataset", str(data), "--steps", "10"], capsys)
    assert code == 0 and "skipped 1 clip(s) that do not decode" in err and bad_id in err
    assert res["report"]["skipped_clips"] == 1
    code, res, err = _run(["fvd", "--checkpoint", str(ckpt), "--dataset", str(data), "--domain", str(world.domain),
                           "--clips", "200", "--cache-dir", str(tmp_path / "stats")], capsys)
    assert code == 0 and res["skipped_clips"]["count"] == 1 and res["skipped_clips"]["clips"][0]["clip_id"] == bad_id
    assert "skipped 1 clip(s)" in err
    code, res, err = _run(["align", "--checkpoint", str(ckpt), "--dataset", str(data), "--domain",
                           str(world.domain), "--clips-per-user", "1", "--max-users", "2"], capsys)
    assert code == 0 and res["skipped_clips"] == 1 and "skipped 1 clip(s)" in err
    code, res, err = _run(["engagement", "--dataset", str(data), "--domain", str(world.domain), "--steps", "10"],
                          capsys)
    assert code == 0 and res["skipped_clips"] == 1 and "skipped 1 clip(s)" in err
