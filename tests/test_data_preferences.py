"""Preference embeddings: storage, BPR against popularity, external imports, and `reelgan-data embed`."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from data.bpr import evaluate_ranking, fit_bpr
from data.cli import main
from data.contract import load_dataset
from data.embedding_import import EmbeddingImportError, import_embeddings
from data.preferences import PreferenceEmbeddings, read_header
from data.synth import make_world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    make_world(root, clips=256, users=200, size=(16, 16), frames=4, seed=3, workers=2)
    return root


def test_save_load_round_trip_and_conditions(tmp_path):
    rng = np.random.default_rng(0)
    emb = PreferenceEmbeddings(["a", "b", "c"], rng.normal(size=(3, 4)), ["x", "y"], rng.normal(size=(2, 4)),
                               source="test", meta={"note": "n"})
    path = emb.save(tmp_path / "p.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["p.safetensors"]
    header = read_header(path)
    assert header["dim"] == "4" and header["hash"] == emb.hash
    back = PreferenceEmbeddings.load(path)
    assert back.hash == emb.hash and back.user_ids == ["a", "b", "c"] and back.source == "test"
    cond = back.conditions(["c", "a"])
    assert cond.shape == (2, 4) and str(cond.dtype) == "torch.float32"
    np.testing.assert_allclose(cond.norm(dim=1).numpy(), 1.0, atol=1e-6)
    np.testing.assert_allclose(cond[0].numpy(), emb.user_vectors[2] / np.linalg.norm(emb.user_vectors[2]), rtol=1e-6)
    with pytest.raises(KeyError, match="reelgan-data embed"):
        back.conditions(["zzz"])


def test_closest_ids_are_the_most_similar_users():
    vectors = np.array([[1, 0], [0.9, 0.1], [0, 1], [-1, 0]], np.float32)
    emb = PreferenceEmbeddings(["a", "b", "c", "d"], vectors)
    assert emb.closest_ids("a", 2) == ["b", "c"]
    assert "a" not in emb.closest_ids("a", 10)


def test_altered_file_and_foreign_file_are_refused(tmp_path):
    ids, vectors = _ids_and_vectors()
    path = PreferenceEmbeddings(ids, vectors.astype(np.float32), source="test").save(tmp_path / "p.safetensors")
    PreferenceEmbeddings.load(path)  # the untouched file loads
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x40  # alter one byte of the vectors (the tensor data ends the file); the header is intact
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="the file was altered"):
        PreferenceEmbeddings.load(path)
    (tmp_path / "x.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="not a safetensors file"):
        read_header(tmp_path / "x.safetensors")
    with pytest.raises(FileNotFoundError, match="reelgan-data embed"):
        read_header(tmp_path / "missing.safetensors")


def test_bpr_beats_popularity_on_held_out_interactions(world):
    ds = load_dataset(world)
    emb = fit_bpr(ds, dim=16, epochs=30, seed=0)
    assert emb.hash == fit_bpr(ds, dim=16, epochs=30, seed=0).hash, "same seed, same fit"
    report = evaluate_ranking(ds, emb)
    assert report["users"] > 150
    assert report["mf"]["recall@10"] > 2 * report["popularity"]["recall@10"], report
    assert report["mf"]["ndcg@10"] > 2 * report["popularity"]["ndcg@10"], report
    # Held-out users still get a vector (their train interactions fit MF); test interactions never do.
    assert ds.heldout_users <= set(emb.user_ids)


def _ids_and_vectors(n=5, dim=3):
    return [f"u{i:04d}" for i in range(n)], np.random.default_rng(0).normal(size=(n, dim))


def test_import_npy_csv_parquet(tmp_path):
    ids, vecs = _ids_and_vectors()
    np.save(tmp_path / "v.npy", vecs)
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    table = pd.DataFrame({"user_id": ids, **{f"e{k}": vecs[:, k] for k in range(3)}})
    table.to_csv(tmp_path / "v.csv", index=False)
    pd.DataFrame({"user_id": ids, "vector": list(vecs)}).to_parquet(tmp_path / "v.parquet")
    results = [import_embeddings(tmp_path / "v.npy", tmp_path / "ids.txt"), import_embeddings(tmp_path / "v.csv"),
               import_embeddings(tmp_path / "v.parquet", known_users=set(ids))]
    for emb in results:
        assert emb.user_ids == ids and emb.dim == 3 and emb.source.startswith("import:")
        np.testing.assert_allclose(emb.user_vectors, vecs.astype(np.float32))


@pytest.mark.parametrize("case,match", [
    ("nan", "row 2 .*NaN"),
    ("count", "5 rows but .* has 4 ids"),
    ("duplicate", "row 3: user 'u0001' repeats row 1"),
    ("unknown", "none of its 5 user ids"),
    ("ragged", "row 1: vector has 2 values"),
    ("text", "row 0, column 'e1'"),
])
def test_import_errors_name_the_row_and_fix(tmp_path, case, match):
    ids, vecs = _ids_and_vectors()
    kwargs = {}
    if case == "nan":
        vecs[2, 1] = np.nan
        np.save(tmp_path / "v.npy", vecs)
        (tmp_path / "ids.txt").write_text("\n".join(ids))
        args = (tmp_path / "v.npy", tmp_path / "ids.txt")
    elif case == "count":
        np.save(tmp_path / "v.npy", vecs)
        (tmp_path / "ids.txt").write_text("\n".join(ids[:4]))
        args = (tmp_path / "v.npy", tmp_path / "ids.txt")
    elif case in ("duplicate", "unknown"):
        if case == "duplicate":
            ids[3] = ids[1]
        pd.DataFrame({"user_id": ids, "a": vecs[:, 0], "b": vecs[:, 1]}).to_csv(tmp_path / "v.csv", index=False)
        args = (tmp_path / "v.csv",)
        kwargs = {"known_users": {"someone_else"}} if case == "unknown" else {}
    elif case == "ragged":
        pd.DataFrame({"user_id": ids[:2], "vector": [[1.0, 2.0, 3.0], [1.0, 2.0]]}).to_parquet(tmp_path / "v.parquet")
        args = (tmp_path / "v.parquet",)
    else:
        pd.DataFrame({"user_id": ids, "e0": vecs[:, 0], "e1": ["x"] * 5}).to_csv(tmp_path / "v.csv", index=False)
        args = (tmp_path / "v.csv",)
    with pytest.raises(EmbeddingImportError, match=match):
        import_embeddings(*args, **kwargs)


def test_embed_cli_fits_and_imports(world, tmp_path, capsys):
    assert main(["embed", str(world), "--dim", "8", "--epochs", "10", "--no-persona"]) == 0
    out = capsys.readouterr().out
    assert "Recall@10" in out and "popularity" in out and "summary: embed" in out
    report = json.loads((world / "embeddings" / "embed_report.json").read_text())
    assert report["ranking"]["beats_popularity"] is True
    # 8 BPR factors, then the attribute affinities (category, colour, pattern values of the synthetic world)
    columns = report["affinities"]["columns"]
    assert report["affinities"]["factors_dim"] == 8 and report["dim"] == 8 + len(columns)
    assert {c.split("=")[0] for c in columns} == {"category", "colour", "pattern"}
    text = (world / "embeddings" / "embed_report.json").read_text()
    assert report["dataset"] == ".." and str(world.resolve()) not in text  # no absolute path of this machine
    assert PreferenceEmbeddings.load(world / "embeddings" / "preferences.safetensors").hash == report["hash"]

    users = sorted(pd.read_csv(world / "interactions.csv", dtype=str)["user_id"].unique())
    np.save(tmp_path / "ext.npy", np.random.default_rng(1).normal(size=(len(users), 6)))
    (tmp_path / "ids.txt").write_text("\n".join(users))
    target = tmp_path / "copy"
    target.mkdir()
    for name in ("clips.csv", "interactions.csv"):
        (target / name).write_bytes((world / name).read_bytes())
    assert main(["embed", str(target), "--import", str(tmp_path / "ext.npy"), "--ids", str(tmp_path / "ids.txt")]) == 0
    report = json.loads((target / "embeddings" / "embed_report.json").read_text())
    assert report["source"] == "import:ext.npy" and report["dim"] == 6
    assert "skipped" in report["ranking"] and "no persona column" in report["persona"]["skipped"]


@pytest.mark.parametrize("kind", ["fortran-npy", "csv"])
def test_imported_vectors_load_back_exactly_and_check_agrees(world, tmp_path, capsys, kind):
    """A Fortran-order .npy and a CSV (pandas gives column-major arrays) used to be stored scrambled."""
    users = sorted(pd.read_csv(world / "interactions.csv", dtype=str)["user_id"].unique())
    vectors = np.random.default_rng(2).normal(size=(len(users), 5))
    target = tmp_path / "copy"
    shutil.copytree(world / "clips", target / "clips")
    for name in ("clips.csv", "interactions.csv"):
        (target / name).write_bytes((world / name).read_bytes())
    if kind == "fortran-npy":
        np.save(tmp_path / "ext.npy", np.asfortranarray(vectors))
        assert np.load(tmp_path / "ext.npy").flags.f_contiguous
        args = ["--import", str(tmp_path / "ext.npy"), "--ids", str(tmp_path / "ids.txt")]
        (tmp_path / "ids.txt").write_text("\n".join(users))
    else:
        frame = pd.DataFrame(vectors, columns=[f"f{i}" for i in range(5)])
        frame.insert(0, "user_id", users)
        frame.to_csv(tmp_path / "ext.csv", index=False)
        args = ["--import", str(tmp_path / "ext.csv")]
    assert main(["embed", str(target), *args]) == 0
    report = json.loads((target / "embeddings" / "embed_report.json").read_text())
    emb = PreferenceEmbeddings.load(target / "embeddings" / "preferences.safetensors")
    assert emb.hash == report["hash"]
    np.testing.assert_allclose(emb.user_vectors[emb.index(users[7])], vectors[7].astype(np.float32), rtol=1e-6)
    capsys.readouterr()
    assert main(["check", str(target), "--no-decode"]) == 0
    out = capsys.readouterr().out
    assert "cannot load" not in out and "usable" in out


def _hand_ranking(scores: np.ndarray, seen: np.ndarray, relevant: np.ndarray, k: int) -> tuple[float, float]:
    """Recall@k and NDCG@k by hand: unseen clips by score (ties: lower column first), binary gains."""
    recalls, ndcgs = [], []
    for s, sn, rel in zip(scores, seen, relevant):
        ranked = sorted((c for c in range(len(s)) if not sn[c]), key=lambda c: (-s[c], c))[:k]
        hits = [i for i, c in enumerate(ranked) if rel[c]]
        recalls.append(len(hits) / rel.sum())
        ideal = sum(1 / np.log2(i + 2) for i in range(min(int(rel.sum()), k)))
        ndcgs.append(sum(1 / np.log2(i + 2) for i in hits) / ideal)
    return float(np.mean(recalls)), float(np.mean(ndcgs))


@pytest.mark.parametrize("candidates", [1, 5, 9, 10])
def test_ranking_with_fewer_candidates_than_k_matches_a_hand_computation(candidates):
    """A shop's first catalogue: fewer than k = 10 unseen clips per user. The two seen clips score highest (and
    one is also a held-out clip of user 0): masked, they must never enter the top k."""
    import scipy.sparse as sp

    from data.ranking import ranking_metrics

    clips, k = candidates + 2, 10
    rng = np.random.default_rng(candidates)
    scores = rng.normal(size=(3, clips))
    seen = np.zeros((3, clips), bool)
    seen[:, :2] = True
    scores[:, :2] = 100.0  # seen clips would top every list
    relevant = np.zeros((3, clips), bool)
    relevant[0, [0, 2]] = True                # one seen, one candidate
    relevant[1, 2:] = True                    # every candidate
    relevant[2, clips - 1] = True             # the last candidate only
    scores[2, clips - 1] = scores[2].min() - 1.0
    got = ranking_metrics(lambda r: scores[r], np.arange(3), sp.csr_matrix(seen.astype(float)),
                          sp.csr_matrix(relevant.astype(float)), k=k, batch=2)
    recall, ndcg = _hand_ranking(scores, seen, relevant, k)
    assert got["users"] == 3
    assert got[f"recall@{k}"] == pytest.approx(recall, abs=1e-6)  # torchmetrics sums in float32
    assert got[f"ndcg@{k}"] == pytest.approx(ndcg, abs=1e-6)
