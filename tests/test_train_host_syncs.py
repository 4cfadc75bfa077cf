"""On a GPU the training step must never wait for the host. Checked here on the CPU, where a dispatch mode sees
every host read (`aten._local_scalar_dense`: .item(), float(t), int(t), bool(t)) and every aten op: whole training
batches through `reelgan-train fit` with the shipped configs and all their callbacks, batch by batch.

Widths are shrunk (op counts do not depend on them) and the batch sizes are those of the issue's baseline (demo-cpu
16, tryon-64 4). Logging batches may read the device (Lightning writes logs there); every other batch may make
at most 2 reads: ADA's r_t every ada_interval batches, and one of Lightning's at an epoch's end.
"""
import pytest
import yaml

from train.cli import build_cli
from train.host_syncs import HostSyncCounter
from train_world import TINY_MODEL, make_world

BATCHES = 8
# Aten ops per batch before this work (issue 19, same measurement) and the ceilings held now, with a little margin
# for platform differences: the goal, 0.40 × the old count, on a run's first batches (augmentation off,
# as the baseline was counted); augmentation on (ADA's p > 0, most of a run) adds about 200 ops.
BASELINE = {"demo-cpu": 5340, "tryon-64": 5750}
CEILING = {0.0: 0.40, 0.2: 0.45}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world") / "w", clips=64, users=40, frames=16)


def _records(name, batch_size, world, run, p=0.2):
    cfg = yaml.safe_load(open(f"configs/{name}.yaml"))
    t = cfg["trainer"]
    t.update(default_root_dir=str(run), max_steps=2 * BATCHES, log_every_n_steps=5)
    t.pop("max_time", None)
    t["logger"]["init_args"]["save_dir"] = str(run)
    t["callbacks"].insert(0, {"class_path": "train.host_syncs.HostSyncCounter"})
    cfg["model"].update(TINY_MODEL, ada_p_init=p, ada_fixed=p == 0)   # p 0.2: augmentation on from the start
    cfg["data"].update(root=str(world), batch_size=batch_size, num_workers=0, height=32, width=32)
    path = run / "cfg.yaml"
    run.mkdir()
    path.write_text(yaml.safe_dump(cfg))
    cli = build_cli(["fit", "-c", str(path)])
    counter = next(c for c in cli.trainer.callbacks if isinstance(c, HostSyncCounter))
    return counter.records, cli.trainer


@pytest.mark.parametrize("p", [0.2, 0.0])
@pytest.mark.parametrize("name,batch_size", [("demo-cpu", 16), ("tryon-64", 4)])
def test_training_batches_make_no_host_syncs_and_few_ops(world, tmp_path, name, batch_size, p):
    records, trainer = _records(name, batch_size, world, tmp_path / "run", p)
    assert len(records) == BATCHES
    # batch i is a logging batch when Lightning's step counter (i + 1) is a multiple of log_every_n_steps; the
    # last record also holds on_train_end's final reads
    plain = [r for r in records[1:-1] if (r["batch"] + 1) % trainer.log_every_n_steps]
    assert len(plain) >= 5
    for r in plain:
        assert r["syncs"] <= 2, (r["batch"], r["sync_sources"])
    assert sum(r["syncs"] for r in plain) <= len(plain) // 2 + 2      # most batches read nothing at all
    logging = [r for r in records[:-1] if (r["batch"] + 1) % trainer.log_every_n_steps == 0]
    assert logging and max(r["syncs"] for r in logging) > 0          # the counter does see reads when they happen
    ops = sorted(r["ops"] for r in plain)[len(plain) // 2]
    print(f"{name}, augmentation p {p}: {ops} aten ops per batch ({ops / BASELINE[name]:.3f} of the baseline)")
    assert ops <= CEILING[p] * BASELINE[name], f"{name}: {ops} aten ops per batch"
