"""The exact fit of G's p(attribute | shopper) head: the optimum of its weighted log-loss, the datamodule's pairs
it is fitted on (dataset folder and shards alike), and a real training run that fits it once and keeps it."""
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from data.contract import load_dataset
from data.datamodule import ProductClipDataModule
from data.shards import write_shards
from gan.generator import PreferenceHead
from gan.module import ReelGAN
from train_world import TINY_MODEL, make_world


def _problem(n=400, dim=6, classes=(3, 5), seed=0):
    g = torch.Generator().manual_seed(seed)
    cond = torch.randn(n, dim, generator=g)
    truth = torch.randn(sum(classes), dim, generator=g) * 3
    logits = F.normalize(cond, dim=1) @ truth.T
    labels = torch.stack([torch.multinomial(lg.softmax(1), 1, generator=g).squeeze(1)
                          for lg in logits.split(list(classes), dim=1)], 1)
    labels[:40, 1] = -1                                     # unknown values are ignored
    weights = torch.rand(n, generator=g, dtype=torch.float64) + 0.1
    return cond, labels, weights


def _weighted_ce(head, cond, labels, weights):
    w = weights / weights.sum()
    return sum((F.cross_entropy(lg.double(), labels[:, a], ignore_index=-1, reduction="none") * w).sum()
               for a, lg in enumerate(head(cond)))


def test_fit_reaches_the_weighted_log_loss_optimum_and_is_deterministic():
    cond, labels, weights = _problem()
    head = PreferenceHead(6, [3, 5])
    with torch.no_grad():
        start = float(_weighted_ce(head, cond, labels, weights))
    loss = head.fit(cond, labels, weights, l2=0.0)
    with torch.no_grad():
        assert loss == pytest.approx(float(_weighted_ce(head, cond, labels, weights)), rel=1e-5)
    assert loss < start - 0.3
    # an optimum: the gradient of the objective vanishes, and SGD from there does not lower it
    params = [p.detach().clone().requires_grad_(True) for p in head.linear.parameters()]
    probe = PreferenceHead(6, [3, 5])
    with torch.no_grad():
        probe.linear.weight.copy_(params[0]), probe.linear.bias.copy_(params[1])
    grads = torch.autograd.grad(_weighted_ce(probe, cond, labels, weights), list(probe.linear.parameters()))
    assert max(float(g.abs().max()) for g in grads) < 1e-4
    again = PreferenceHead(6, [3, 5])
    again.load_state_dict(PreferenceHead(6, [3, 5]).state_dict())   # another start
    again.fit(cond, labels, weights, l2=0.0)
    with torch.no_grad():   # softmax logits are defined up to a shift per attribute: compare the probabilities
        for p, q in zip(again(cond), head(cond)):
            assert torch.allclose(p.softmax(1), q.softmax(1), atol=1e-3)
    twin = PreferenceHead(6, [3, 5])
    twin.load_state_dict(head.state_dict())
    twin.fit(cond, labels, weights, l2=0.0)
    assert torch.allclose(twin.linear.weight, head.linear.weight, atol=1e-5)


def test_weights_decide_the_fit():
    cond, labels, weights = _problem()
    a, b = PreferenceHead(6, [3, 5]), PreferenceHead(6, [3, 5])
    a.fit(cond, labels, weights)
    heavy = weights.clone()
    heavy[labels[:, 0] == 0] *= 20                         # pairs showing value 0 dominate the stream
    b.fit(cond, labels, heavy)
    assert (b(cond)[0].argmax(1) == 0).float().mean() > (a(cond)[0].argmax(1) == 0).float().mean() + 0.2


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world") / "w", clips=48)


def _dm(root, **kw):
    return ProductClipDataModule(str(root), frames=8, height=32, width=32, batch_size=8, num_workers=0,
                                 cache_clips=False, val_fraction=0.1, **kw)


def test_pairs_are_the_training_streams_shopper_and_clip_attributes(world, tmp_path):
    dm = _dm(world)
    pairs = dm.preference_pairs()
    entries = dm.train_dataset.entries
    assert float(pairs["weights"].sum()) == pytest.approx(1.0)
    assert len(pairs["weights"]) == sum(len(e["users"]) for e in entries)
    clips = load_dataset(world).clips.set_index("clip_id")
    first = entries[0]
    n = len(first["users"])
    for a, (name, values) in enumerate(dm.attribute_vocab.items()):     # the first clip's pairs carry its values
        assert set(pairs["labels"][:n, a].tolist()) == {values.index(str(clips.loc[first["clip_id"], name]))}
    assert torch.allclose(pairs["weights"][:n], torch.as_tensor(first["probs"]) / len(entries))
    rows = dm.train_dataset.user_rows
    assert torch.equal(pairs["conditions"][:n], torch.from_numpy(dm.train_dataset.conditions[[rows[u] for u in
                                                                                               first["users"]]]))
    shards = tmp_path / "shards"
    write_shards(world, shards, (32, 32), clips_per_chunk=8, val_fraction=0.1, workers=1)
    from_shards = _dm(shards).preference_pairs()

    def as_set(p):
        return sorted(zip(p["conditions"].sum(1).round(decimals=5).tolist(), map(tuple, p["labels"].tolist()),
                          p["weights"].round(decimals=9).tolist()))
    assert as_set(from_shards) == as_set(pairs)
    assert _dm(world, attribute_labels=False).preference_pairs() is None


def _train(dm, tmp, batches, fit=True, ckpt_path=None, **kw):
    torch.manual_seed(0)
    model = ReelGAN(cond_dim=dm.embedding_dim, frames=8, height=32, width=32, attribute_classes=dm.attribute_classes,
                    attribute_conditioning=True, preference_fit=fit, **TINY_MODEL, **kw)
    trainer = pl.Trainer(max_steps=2 * batches, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu", devices=1, precision="32-true", default_root_dir=str(tmp),
                         limit_val_batches=0, num_sanity_val_steps=0, enable_checkpointing=False)
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    return model, trainer


def test_a_new_run_fits_the_head_once_and_keeps_it_and_a_resume_does_not_refit(world, tmp_path):
    dm = _dm(world)
    pairs = dm.preference_pairs()
    expected = PreferenceHead(dm.embedding_dim, dm.attribute_classes)
    torch.manual_seed(0)
    expected.load_state_dict(ReelGAN(cond_dim=dm.embedding_dim, frames=8, height=32, width=32,
                                     attribute_classes=dm.attribute_classes, attribute_conditioning=True,
                                     **TINY_MODEL).generator.preference.state_dict())
    expected.fit(pairs["conditions"], pairs["labels"], pairs["weights"])
    model, trainer = _train(dm, tmp_path / "a", batches=4)
    for g in (model.generator, model.generator_ema):
        assert torch.equal(g.preference.linear.weight, expected.linear.weight)
    ckpt = tmp_path / "a.ckpt"
    trainer.save_checkpoint(ckpt)
    assert torch.load(ckpt, weights_only=True)["reelgan"]["preference_fitted"] is True
    # beside the GAN (preference_fit false) the head moves with every batch instead
    sgd, _ = _train(_dm(world), tmp_path / "b", batches=4, fit=False)
    assert not torch.allclose(sgd.generator.preference.linear.weight, expected.linear.weight, atol=1e-2)
    # a resumed run restores the fitted head and neither refits nor trains it
    resumed, _ = _train(_dm(world), tmp_path / "c", batches=6, ckpt_path=str(ckpt))
    assert resumed._preference_fitted
    assert torch.equal(resumed.generator.preference.linear.weight, expected.linear.weight)


def test_a_run_with_attribute_projection_trains_and_validates(world, tmp_path):
    """Both Ds condition on (shopper ⊕ the clip's attributes) through training and validation on real batches."""
    dm = ProductClipDataModule(str(world), frames=8, height=32, width=32, batch_size=8, num_workers=0,
                               cache_clips=False, val_fraction=0.2)
    torch.manual_seed(0)
    model = ReelGAN(cond_dim=dm.embedding_dim, frames=8, height=32, width=32, attribute_classes=dm.attribute_classes,
                    attribute_conditioning=True, d_attribute_projection=True, **TINY_MODEL)
    seen = []
    # the projection's condition embedding φ reads what D is conditioned on (training and validation alike)
    model.image_discriminator.head.embed.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[1]))
    trainer = pl.Trainer(max_steps=4, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu", devices=1, precision="32-true", default_root_dir=str(tmp_path),
                         limit_val_batches=1, val_check_interval=2, num_sanity_val_steps=0,
                         enable_checkpointing=False)
    trainer.fit(model, datamodule=dm)
    assert seen and set(seen) == {dm.embedding_dim + sum(dm.attribute_classes)}
    assert "val/scores_real" in trainer.callback_metrics
