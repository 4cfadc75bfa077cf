"""The recommendation slot: gate and ranking logic, output files, and the offline check on a small world.

The offline check trains the real domain classifier and engagement model on a small synthetic world. Candidates
are K catalogue clips per held-out user (their true attributes are known exactly, so the hidden-truth expected
engagement needs no classifier); the generator path of the slot is covered by test_run_slot_writes_files.
"""
from __future__ import annotations

import csv
import json
import math
import os
import stat
from dataclasses import asdict
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest

from evaluation.slot.gate import GateConfig, SlotConfig, checkpoint_gate, gate_and_rank, load_slot_config
from evaluation.slot.store import write_slot


def _rows(user="u1", k=4, over=None):
    over = over or {}
    return [{"user_id": user, "candidate": c, "seed": 100 + c, "clip": f"clips/{user}/{c}.mp4",
             "scores": {"engagement": [0.2, 0.9, 0.5, 0.7][c], "realism": 0.5, "alignment": 0.6, **over.get(c, {})}}
            for c in range(k)]


def test_gate_and_rank():
    rows = _rows(over={1: {"realism": 0.001}, 3: {"alignment": 0.1}, 0: {"realism": math.nan, "alignment": math.nan}})
    out = gate_and_rank(rows, SlotConfig(candidates=4, serve=1, gate=GateConfig(min_realism=0.01, min_alignment=0.25)),
                        None)
    by = {r["candidate"]: r for r in out}
    assert by[2]["passed"] and by[2]["rank"] == 1 and by[2]["served"]
    assert by[1]["reasons"] == ["realism 0.001 < min_realism 0.01"] and by[1]["rank"] is None
    assert by[3]["reasons"] == ["alignment 0.1 < min_alignment 0.25"]
    assert not by[0]["passed"] and by[0]["reasons"][1].startswith("alignment unknown")  # NaN never passes
    assert [r["candidate"] for r in out][0] == 2  # ranked first in the file
    # without failures: order by engagement, top-2 served
    out = gate_and_rank(_rows(), SlotConfig(candidates=4, serve=2), None)
    assert [(r["candidate"], r["rank"], r["served"]) for r in out] == [(1, 1, True), (3, 2, True), (2, 3, False),
                                                                       (0, 4, False)]


def test_checkpoint_gate_fails_closed():
    cfg = GateConfig(max_fvd=100.0)
    assert checkpoint_gate(80.0, cfg) is None
    assert checkpoint_gate(120.0, cfg) == "checkpoint fvd[domain] 120 > max_fvd 100"
    assert "unknown" in checkpoint_gate(None, cfg)
    assert checkpoint_gate(math.nan, cfg) is not None
    assert checkpoint_gate(None, GateConfig(max_fvd=None)) is None
    out = gate_and_rank(_rows(), SlotConfig(candidates=4), checkpoint_gate(120.0, cfg))
    assert not any(r["passed"] or r["served"] for r in out)
    assert all(r["reasons"][0].startswith("checkpoint fvd[domain] 120") for r in out)


def test_fvd_json_must_name_this_checkpoint(tmp_path):
    from evaluation.slot.run import read_fvd

    fvd = tmp_path / "fvd.json"
    fvd.write_text(json.dumps({"metric": "fvd[domain]", "value": 80.0}))
    value, problem = read_fvd(fvd, "a" * 64)
    assert value is None and "no checkpoint_sha256" in problem  # fails closed: unknown checkpoint
    fvd.write_text(json.dumps({"metric": "fvd[domain]", "value": 80.0, "protocol": {"checkpoint_sha256": "b" * 64}}))
    value, problem = read_fvd(fvd, "a" * 64)
    assert value is None and "not this one" in problem
    fvd.write_text(json.dumps({"metric": "fvd[domain]", "value": 80.0, "checkpoint_sha256": "a" * 64}))
    assert read_fvd(fvd, "a" * 64) == (80.0, None)
    assert checkpoint_gate(read_fvd(fvd, "a" * 64)[0], GateConfig(max_fvd=100.0)) is None


def test_config_errors_name_the_field(tmp_path):
    p = tmp_path / "slot.yaml"
    p.write_text("candidates: 4\ngate:\n  min_realsim: 0.1\n")
    with pytest.raises(ValueError, match=r"slot.yaml: Group 'gate' does not accept option 'min_realsim'"):
        load_slot_config(p)
    p.write_text("candidates: 4\nserve: 5\n")
    with pytest.raises(ValueError, match="serve must be in 1..candidates"):
        load_slot_config(p)
    p.write_text("rank_by: clicks\n")
    with pytest.raises(ValueError, match=r"slot.yaml: Parser key \"rank_by\": Expected .*'engagement'.* clicks"):
        load_slot_config(p)
    p.write_text("gate:\n  min_alignment: 1.5\n")
    with pytest.raises(ValueError, match=r"slot.yaml: Parser key \"gate.min_alignment\": .*1.5"):
        load_slot_config(p)
    with pytest.raises(ValueError, match=r"slot.yaml: Parser key \"candidates\""):
        load_slot_config(p.parent / "slot.yaml", candidates=0)
    cfg = load_slot_config("configs/slot.yaml", candidates=3)
    assert cfg.candidates == 3 and cfg.gate.max_fvd is not None


def test_write_slot_files(tmp_path):
    rows = gate_and_rank(_rows(over={1: {"realism": 0.0}, 2: {"alignment": math.nan}}), SlotConfig(candidates=4), None)
    jsonl, csvp = write_slot(rows, tmp_path)
    back = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert "NaN" not in jsonl.read_text() and back[-1]["scores"]["alignment"] is None  # strict JSON
    assert [r["candidate"] for r in back] == [r["candidate"] for r in rows] and back[0] == rows[0]
    table = list(csv.DictReader(csvp.open()))
    assert len(table) == 4 and {"user_id", "rank", "clip", "engagement", "realism", "alignment", "passed",
                                "reasons"} <= set(table[0])
    failed = next(r for r in table if r["passed"] == "False")
    assert failed["reasons"].startswith("realism 0 < min_realism") and failed["rank"] == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slot.csv", "slot.jsonl"]  # no temp files left


@pytest.fixture(scope="module")
def small_world(tmp_path_factory):
    """A 128-clip world at 16×16×4 for the classifiers, with real trained domain + engagement models."""
    from data.contract import load_dataset
    from data.embed import embed_dataset
    from data.preferences import PreferenceEmbeddings
    from data.synth import make_world
    from evaluation.personalisation.engagement import EngagementScorer, EngagementTrainConfig, train_engagement_model
    from evaluation.features.domain_train import DomainTrainConfig, train_domain_classifier
    from evaluation.features.realclips import load_real_clips

    root = tmp_path_factory.mktemp("slotworld") / "world"
    make_world(root, clips=128, users=60, size=(32, 32), frames=8, seed=0, workers=2)
    embed_dataset(root, dim=16, epochs=30, persona=False)
    clips = load_real_clips(root, 4, 16, 16)
    domain, report = train_domain_classifier(clips=clips, config=DomainTrainConfig(
        frames=4, height=16, width=16, batch_size=8, steps=300))
    assert report.val_accuracy["colour"] > 0.6  # the classifier must see colour for the slot to mean anything
    ds = load_dataset(root)
    emb = PreferenceEmbeddings.load(root / "embeddings" / "preferences.safetensors")
    model, _ = train_engagement_model(ds.interactions, emb, domain, clips.clip_ids, clips.video,
                                      EngagementTrainConfig(steps=100, dim=32, heads=2))
    return {"root": root, "clips": clips, "ds": ds, "emb": emb, "scorer": EngagementScorer(model, domain),
            "domain_report": asdict(report)}


def test_slot_ranking_of_catalogue_candidates_beats_popular_and_random(small_world, tmp_path):
    """The scorer, gate and ranking, with real catalogue clips standing in as each user's K candidates.

    What it shows: given candidates whose attributes are real, the slot's scoring picks ones the hidden truth
    prefers over the most popular clip and over a random candidate. Generated candidates go through the same
    scorer in test_run_slot_writes_files (a tiny untrained generator's clips carry no attributes to prefer).
    """
    from evaluation.slot.run import CandidateScorer
    from evaluation.slot.check import HiddenTruth, compare_arms, most_popular_clip
    from evaluation.personalisation.preferences import revealed_preferences
    from evaluation.slot.scores import DensityRealism

    w = small_world
    domain, clips, ds = w["scorer"].domain, w["clips"], w["ds"]
    users = sorted(ds.heldout_users)
    feats = domain(domain.prepare(clips.video))[0].detach().double().numpy()
    scorer = CandidateScorer(w["scorer"], DensityRealism(feats), revealed_preferences(
        ds.interactions, ds.clips, domain.vocab, users), domain.vocab)
    truth = HiddenTruth(w["root"] / "hidden_truth.json", domain.vocab)
    k, rng, rows, exact = 8, np.random.default_rng(0), [], {}
    for u in users:
        idx = rng.choice(len(clips.video), k, replace=False)
        scores, _ = scorer.score([u] * k, w["emb"].conditions([u] * k), clips.video[idx])
        rows += [{"user_id": u, "candidate": c, "seed": int(i), "clip": clips.clip_ids[i], "scores": s}
                 for c, (i, s) in enumerate(zip(idx, scores))]
        exact[u] = truth.one_hot(ds.clips.set_index("clip_id").loc[[clips.clip_ids[i] for i in idx]])
    ranked = gate_and_rank(rows, SlotConfig(candidates=k), None)
    jsonl, _ = write_slot(ranked, tmp_path)
    check = compare_arms(truth, ranked, exact, most_popular_clip(ds.clips, ds.interactions))
    assert check["beats_both"], check["verdict"]
    assert check["lift"]["vs_popular"] > 0.05 and check["lift"]["vs_random_generated"] > 0.05, check["lift"]
    assert check["users"] == len(users) >= 5
    served = [json.loads(line) for line in jsonl.read_text().splitlines() if json.loads(line)["served"]]
    assert served and all(r["passed"] and r["rank"] == 1 for r in served)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_run_slot_writes_files(small_world, tmp_path, umask_022):
    """`reelgan-eval slot` end to end with a real (tiny, barely trained) checkpoint: files, gate, fallback, check."""
    import sys

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    import _tiny_gan

    from evaluation.cli import main

    w = small_world
    ckpt = _tiny_gan.tiny_checkpoint(cond_dim=w["emb"].dim)
    eng = tmp_path / "engagement.safetensors"
    w["scorer"].save(eng, extra={"domain_report": w["domain_report"]})  # as `reelgan-eval engagement` saves it
    fvd = tmp_path / "fvd.json"
    from data.io import file_sha256

    sha = file_sha256(ckpt)  # the fvd JSON must say which checkpoint it measured, or the gate fails closed
    fvd.write_text(json.dumps({"metric": "fvd[domain]", "value": 80.0, "checkpoint_sha256": sha}))
    users = sorted(w["ds"].heldout_users)[:3]
    # This small world's classifier reads colour and category but not pattern (below chance on 16-px clips): a slot
    # that judges alignment on every attribute fails closed and serves the fallback ...
    closed = tmp_path / "closed"
    args = ["slot", "--checkpoint", str(ckpt), "--dataset", str(w["root"]), "--engagement", str(eng), "--users",
            ",".join(users), "--candidates", "3", "--fvd-json", str(fvd), "--no-progress"]
    assert w["domain_report"]["val_accuracy"]["pattern"] <= w["domain_report"]["chance"]["pattern"]
    every = tmp_path / "every.yaml"
    every.write_text("attributes: null\n")                          # null: every attribute the classifier reads
    assert main([*args, "-c", str(every), "--out", str(closed)]) == 0
    summary = json.loads((closed / "slot_summary.json").read_text())
    assert "pattern" in summary["classifier_gate"] and summary["domain_classifier"]["untrusted"] == ["pattern"]
    rows = [json.loads(line) for line in (closed / "slot.jsonl").read_text().splitlines()]
    assert all(r["source"] == "catalogue" for r in rows if r["served"])
    # ... and one that judges alignment on the attributes the classifier can read serves generated clips.
    cfg = tmp_path / "slot.yaml"
    cfg.write_text("attributes: [category, colour]\n")
    out = tmp_path / "slot"
    assert main([*args, "-c", str(cfg), "--out", str(out), "--publish"]) == 0
    rows = [json.loads(line) for line in (out / "slot.jsonl").read_text().splitlines()]
    cands = [r for r in rows if r["candidate"] is not None]
    assert len(cands) == 9 and {r["user_id"] for r in rows} == set(users)
    for r in cands:
        assert (out / r["clip"]).is_file() and set(r["scores"]) >= {"engagement", "purchase", "realism", "alignment"}
        assert r["passed"] == (not r["reasons"])
    for u in users:  # every user is served exactly one clip: a passing candidate, or the popular fallback
        assert sum(r["served"] for r in rows if r["user_id"] == u) == 1
    for r in rows:  # every row, generated or catalogue, resolves: `clip` against the slot folder, and its URI
        assert r["source"] in ("generated", "catalogue") and (r["source"] == "catalogue") == (r["candidate"] is None)
        assert (out / r["clip"]).is_file() and Path(unquote(urlparse(r["clip_uri"]).path)).is_file()
    written = [out / "slot.jsonl", out / "slot.csv", out / "slot_summary.json", out / "slot.db",
               out / "clips" / "manifest.json", out / cands[0]["clip"]]
    assert {f.name: oct(stat.S_IMODE(f.stat().st_mode)) for f in written} == {f.name: "0o644" for f in written}
    summary = json.loads((out / "slot_summary.json").read_text())
    assert summary["fvd[domain]"] == 80.0 and summary["checkpoint_gate"] == "passed"
    rep = w["domain_report"]  # the real classifier of this small world (16×16: pattern may be below chance)
    gated = list(summary["domain_classifier"]["attributes"])  # the attributes the gate reads (configs/slot.yaml)
    assert gated and set(gated) <= set(rep["val_accuracy"])
    weak_attrs = [a for a in gated if rep["val_accuracy"][a] <= rep["chance"][a]]
    assert summary["domain_classifier"]["untrusted"] == weak_attrs
    assert (summary["classifier_gate"] == "passed") == (not weak_attrs)
    assert summary["published"]["version"] == 1
    from evaluation.slot.publish import read_slot

    got = read_slot(f"sqlite:///{out / 'slot.db'}", users[0])
    assert got["version"] == 1 and [r["clip_uri"] for r in got["rows"]] == [
        r["clip_uri"] for r in sorted((r for r in rows if r["user_id"] == users[0]),
                                      key=lambda r: (not r["served"], r["rank"] is None, r["rank"] or 0))]
    check = json.loads((out / "slot_check.json").read_text())
    assert set(check["arms"]) == {"slot", "popular", "random_generated", "best_candidate"}
    assert set(check["attributes"]["users"]) == set(users)
    assert len(list(csv.DictReader((out / "slot.csv").open()))) == len(rows)
    # a checkpoint whose fvd[domain] is over the ceiling serves nothing generated
    fvd.write_text(json.dumps({"metric": "fvd[domain]", "value": 1e6, "checkpoint_sha256": sha}))
    assert main(["slot", "--checkpoint", str(ckpt), "--dataset", str(w["root"]), "--engagement", str(eng),
                 "--users", users[0], "--candidates", "2", "--fvd-json", str(fvd), "--out", str(tmp_path / "s2"),
                 "--no-progress"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "s2" / "slot.jsonl").read_text().splitlines()]
    assert [r["fallback"] is not None for r in rows if r["served"]] == [True]
    assert all("max_fvd" in r["reasons"][0] for r in rows if r["candidate"] is not None)
    # a classifier no better than chance on an attribute the gate reads: the gate fails closed, with the reason
    fvd.write_text(json.dumps({"metric": "fvd[domain]", "value": 80.0, "checkpoint_sha256": sha}))
    chance = w["domain_report"]["chance"]  # a report where only category is at or below chance
    weak = {**w["domain_report"], "val_accuracy": {a: (0.11 if a == "category" else min(1.0, c + 0.2))
                                                    for a, c in chance.items()},
            "chance": {**chance, "category": 0.56}}
    w["scorer"].save(eng, extra={"domain_report": weak})
    assert main(["slot", "--checkpoint", str(ckpt), "--dataset", str(w["root"]), "--engagement", str(eng),
                 "--users", ",".join(users), "--candidates", "2", "--fvd-json", str(fvd), "--out",
                 str(tmp_path / "s3"), "--no-progress", "-c", str(cfg)]) == 0
    rows = [json.loads(line) for line in (tmp_path / "s3" / "slot.jsonl").read_text().splitlines()]
    assert not any(r["passed"] for r in rows) and {r["source"] for r in rows if r["served"]} == {"catalogue"}
    assert all("category (0.11 vs chance 0.56)" in r["reasons"][0] for r in rows if r["candidate"] is not None)
    summary = json.loads((tmp_path / "s3" / "slot_summary.json").read_text())
    assert summary["domain_classifier"]["untrusted"] == ["category"] and summary["served"] == len(users)


def test_demo_picks_users_with_different_revealed_colours(small_world):
    import subprocess
    import sys
    from pathlib import Path

    from evaluation.personalisation.preferences import revealed_preferences

    root = Path(__file__).resolve().parents[1]
    assert subprocess.run(["bash", "-n", str(root / "scripts" / "demo.sh")]).returncode == 0  # the demo parses
    sys.path.insert(0, str(root / "scripts"))
    from demo_pick_users import pick

    w = small_world
    users = pick(str(w["root"]), 3)
    assert len(set(users)) == 3 and set(users) <= w["ds"].heldout_users
    colours = sorted(set(w["ds"].clips["colour"]))
    prefs = revealed_preferences(w["ds"].interactions, w["ds"].clips, {"colour": colours}, users)
    assert len({int(np.argmax(prefs[u]["colour"])) for u in users}) == 3


def test_slot_killed_between_its_writes_keeps_the_previous_slot(small_world, tmp_path):
    """A real process SIGKILLs itself after slot.jsonl and slot.csv are written, before slot_summary.json: the
    published slot (all three files) stays the previous run's, and the next run cleans up and switches."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    import _tiny_gan

    from evaluation.cli import main

    w = small_world
    ckpt = _tiny_gan.tiny_checkpoint(cond_dim=w["emb"].dim)
    eng = tmp_path / "engagement.safetensors"
    w["scorer"].save(eng)
    users = sorted(w["ds"].heldout_users)[:2]
    out = tmp_path / "slot"
    args = ["slot", "--checkpoint", str(ckpt), "--dataset", str(w["root"]), "--engagement", str(eng), "--users",
            ",".join(users), "--out", str(out), "--no-progress"]
    assert main([*args, "--candidates", "2"]) == 0
    names = ("slot.jsonl", "slot.csv", "slot_summary.json")
    before = {n: (out / n).read_bytes() for n in names}

    killer = (
        "import os, signal, sys\n"
        "import evaluation.slot.run as run\n"
        "real = run.write_json\n"
        "def write_json(path, obj, *a, **k):\n"
        "    if str(path).endswith('slot_summary.json'):\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return real(path, obj, *a, **k)\n"
        "run.write_json = write_json\n"
        "from evaluation.cli import main\n"
        f"sys.exit(main({[*args, '--candidates', '3']!r}))\n")
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", killer], cwd=Path(__file__).parents[1], env=env,
                          capture_output=True, timeout=840)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert {n: (out / n).read_bytes() for n in names} == before        # old jsonl, csv and summary, together
    rows = [json.loads(line) for line in (out / "slot.jsonl").read_text().splitlines()]
    assert all((out / r["clip"]).is_file() for r in rows if r["candidate"] is not None)

    assert main([*args, "--candidates", "3"]) == 0                      # the next run switches and tidies
    summary = json.loads((out / "slot_summary.json").read_text())
    rows = [json.loads(line) for line in (out / "slot.jsonl").read_text().splitlines()]
    assert summary["candidates"] == 6 == len([r for r in rows if r["candidate"] is not None])
    assert len(list((out / ".slot").iterdir())) == 1
    assert not [p for p in out.rglob("*.tmp*")]


def test_slot_published_to_postgres_keeps_secrets_and_machine_paths_out(small_world, tmp_path, capfd):
    """`slot --publish` to a real PostgreSQL with a password in the URL's user part and in ?password=: the password
    is in no output and no file, the store is recorded redacted, and slot_summary.json holds no absolute path of
    this machine (the checkpoint and engagement model sit outside OUT: their names and sha256s are recorded)."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    import _tiny_gan
    from _postgres import PostgresServer

    from evaluation.cli import main
    from evaluation.slot.publish import read_slot

    w = small_world
    ckpt = _tiny_gan.tiny_checkpoint(cond_dim=w["emb"].dim)
    eng = tmp_path / "engagement.safetensors"
    w["scorer"].save(eng)
    out, secrets = tmp_path / "slot", ("Hunter2Secret", "Query2Secret")
    server = PostgresServer().start()
    try:
        url = (f"postgresql://postgres:{secrets[0]}@127.0.0.1:{server.port}/postgres?password={secrets[1]}"
               "&sslmode=disable")
        user = sorted(w["ds"].heldout_users)[0]
        assert main(["slot", "--checkpoint", str(ckpt), "--dataset", str(w["root"]), "--engagement", str(eng),
                     "--users", user, "--candidates", "1", "--out", str(out), "--no-progress",
                     "--publish", url]) == 0
        printed = "".join(capfd.readouterr())
        shown = f"postgresql://postgres@127.0.0.1:{server.port}/postgres?password=***&sslmode=disable"
        assert f"published version 1 to {shown}" in printed
        assert read_slot(url, user)["version"] == 1
    finally:
        server.stop()
    files = [p for p in out.rglob("*") if p.is_file()]
    assert files and not any(s.encode() in p.read_bytes() for p in files for s in secrets)
    assert not any(s in printed for s in secrets)
    summary_text = (out / "slot_summary.json").read_text()
    summary = json.loads(summary_text)
    assert summary["published"] == {"store": shown, "version": 1}
    assert summary["engagement_model"] == "engagement.safetensors" and summary["checkpoint"] == Path(ckpt).name
    assert summary["files"] == {"jsonl": "slot.jsonl", "csv": "slot.csv"}
    assert str(tmp_path) not in summary_text and str(Path(ckpt).parent) not in summary_text
