"""ProductClipDataModule: batch layout, who may condition, determinism and corrupt-clip skipping."""
import shutil
import warnings

import pandas as pd
import pytest
import torch

from data import testing as bad
from data.bpr import fit_bpr
from data.contract import EVENT_WEIGHTS, load_dataset
from data.datamodule import ProductClipDataModule
from data.synth import make_world


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("dm")
    make_world(root, clips=48, users=40, size=(24, 32), frames=10, seed=2, workers=2)
    fit_bpr(load_dataset(root), dim=8, epochs=5).save(root / "embeddings" / "preferences.safetensors")
    return root


@pytest.fixture
def world(pristine, tmp_path):
    return shutil.copytree(pristine, tmp_path / "world")


def _dm(root, **kw):
    args = dict(frames=8, stride=1, height=16, width=24, batch_size=4, seed=0)
    args.update(kw)
    return ProductClipDataModule(str(root), **args)


def test_embedding_facts_exist_right_after_init(pristine):
    dm = _dm(pristine)
    assert dm.embedding_dim == 8 and len(dm.embeddings_hash) == 64 and dm.train_dataset is None


def test_missing_embeddings_name_the_fix(world):
    shutil.rmtree(world / "embeddings")
    with pytest.raises(FileNotFoundError, match="reelgan-data embed"):
        _dm(world)


@pytest.mark.parametrize("cache", [True, False])
def test_batches_have_the_contract_layout_and_only_allowed_users(pristine, cache):
    dm = _dm(pristine, cache_clips=cache, val_fraction=0.2)
    dm.setup("fit")
    ds = load_dataset(pristine)
    inter = ds.interactions
    allowed = inter[(inter["split"] == "train") & (inter["weight"] >= EVENT_WEIGHTS["click"])]
    allowed = set(zip(allowed["user_id"], allowed["clip_id"])) - {(u, c) for u, c in allowed[
        ["user_id", "clip_id"]].itertuples(index=False) if u in ds.heldout_users}
    seen_users = set()
    vocab = dm.attribute_vocab
    assert list(vocab) == ["category", "colour", "pattern"] and dm.attribute_classes == [len(v) for v in vocab.values()]
    truth = ds.clips.set_index("clip_id")
    for video, cond, users, clips, labels in dm.train_dataloader():
        assert labels.shape == (4, 3) and labels.dtype == torch.long
        for c, row in zip(clips, labels.tolist()):  # each label is the clip's own product attribute
            assert [vocab[a][i] for a, i in zip(vocab, row)] == [truth.loc[c, a] for a in vocab]
        assert video.shape == (4, 8, 3, 16, 24) and video.dtype == torch.uint8   # float only on the device
        assert video.float().std() > 0.05 * 127.5
        assert cond.shape == (4, 8) and cond.dtype == torch.float32
        torch.testing.assert_close(cond.norm(dim=1), torch.ones(4))
        assert isinstance(users, list) and isinstance(clips, list) and isinstance(users[0], str)
        for u, c in zip(users, clips):
            assert (u, c) in allowed and u not in ds.heldout_users
        seen_users.update(users)
    assert len(seen_users) > 5
    train_products = {e["product_id"] for e in dm.train_dataset.entries}
    assert not train_products & {e["product_id"] for e in dm.val_dataset.entries}, "split is by product"
    assert len(dm.val_dataset) > 0


def test_same_seed_same_batches_and_val_is_fixed(pristine):
    first = [next(iter(_dm(pristine, seed=s).train_dataloader())) for s in (0, 0, 1)]
    assert torch.equal(first[0][0], first[1][0]) and first[0][2] == first[1][2]
    assert first[0][3] != first[2][3] or not torch.equal(first[0][0], first[2][0])
    dm = _dm(pristine)
    a, b = next(iter(dm.val_dataloader())), next(iter(dm.val_dataloader()))
    assert torch.equal(a[0], b[0]) and a[2] == b[2]


def test_corrupt_clips_are_skipped_counted_and_named(world):
    clips = pd.read_csv(world / "clips.csv", dtype=str)
    broken = [world / clips["path"][i] for i in range(5)]
    for i, path in enumerate(broken):
        (bad.corrupt_in_place if i % 2 else bad.truncated_mp4)(path)
    dm = _dm(world, cache_clips=True)
    with pytest.warns(RuntimeWarning, match="skipping clip c0000"):
        dm.setup("fit")
    in_pool = {e["clip_id"] for e in dm.train_dataset.entries} | {e["clip_id"] for e in dm.val_dataset.entries}
    assert dm.skipped_clips == len(dm.skipped_files) >= 1
    assert not in_pool & {f"c{i:05d}" for i in range(5)}

    dm = _dm(world, cache_clips=False, num_workers=0, val_fraction=0.0)
    n = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for video, *_ in dm.train_dataloader():
            n += len(video)
    assert n > 0 and dm.skipped_clips > 0
    assert any("Fix:" in str(w.message) for w in caught)


def test_worker_processes_share_the_skip_counter(world):
    clips = pd.read_csv(world / "clips.csv", dtype=str)
    for i in range(len(clips)):
        if i % 3 == 0:
            bad.corrupt_in_place(world / clips["path"][i])
    dm = _dm(world, cache_clips=False, num_workers=1, val_fraction=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batches = list(dm.train_dataloader())
    assert batches and dm.skipped_clips > 0


def test_pickled_datamodule_still_loads(pristine):
    import pickle

    dm = _dm(pristine)
    dm.setup("fit")
    copy = pickle.loads(pickle.dumps(dm))  # what ddp_spawn does with the datamodule
    video, cond, users, clips, _ = next(iter(copy.train_dataloader()))
    assert video.shape == (4, 8, 3, 16, 24) and copy.embeddings_hash == dm.embeddings_hash
    assert copy.train_dataset.skipped is copy._skipped
