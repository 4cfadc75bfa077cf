"""`reelgan-train`: LightningCLI over gan.module.ReelGAN and data.datamodule.ProductClipDataModule.

    reelgan-train fit -c configs/demo-cpu.yaml                      # train
    reelgan-train fit -c configs/demo-cpu.yaml --ckpt_path last     # resume everything from RUN/checkpoints/last.ckpt
    reelgan-train fit -c configs/demo-cpu.yaml --print_config       # the full resolved config

The run directory is `trainer.default_root_dir`: loggers write there (CSV by default), checkpoints go to
RUN/checkpoints, sample grids to RUN/samples, the resolved config to RUN/config.yaml. Sizes and the condition
dimension come from the data section (data.frames/height/width → model, data.embedding_dim → model.cond_dim).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import warnings
from pathlib import Path

from jsonargparse import DefaultHelpFormatter, Namespace
from pytorch_lightning.cli import LightningCLI
from pytorch_lightning.trainer.states import TrainerStatus
from pytorch_lightning.utilities.exceptions import SIGTERMException

from data.contract import DatasetError
from data.datamodule import DEFAULT_EMBEDDINGS, ProductClipDataModule
from data.video import VideoError
from gan.discriminators import VideoDiscriminator
from gan.generator import check_video_size
from gan.module import ReelGAN
from train.callbacks import DivergenceError, NonFiniteLossError
from train.checkpoints import CheckpointRefused, load_checkpoint_weights_only

CHECKPOINT_CLASSES = ("ModelCheckpoint", "RunCheckpoint")
RUN_CHECKPOINT = "train.checkpoints.RunCheckpoint"
CHECKPOINT_IO = "train.checkpoints.WeightsOnlyCheckpointIO"
# Two warnings raised inside libraries about conditions ReelGAN does not have, silenced by exact message:
# - torch's deprecation of `isinstance(treespec, LeafSpec)`, a call inside Lightning's own code;
# - "training batches smaller than the logging interval": Lightning logs by global step across epochs, so a tiny
#   catalogue (one batch per epoch) still logs every log_every_n_steps batches.
# Warnings about ReelGAN's own design are handled where the decision is made (G_ema stays in train mode:
# gan/module.py; checkpoints hold the post-step state: train/checkpoints.RunCheckpoint; the validation loop has
# a validation_step).
QUIET = (r".*isinstance\(treespec, LeafSpec\)",
         r"The number of training batches \(\d+\) is smaller than the logging interval")


class ReelGANCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.frames", "model.frames")
        parser.link_arguments("data.height", "model.height")
        parser.link_arguments("data.width", "model.width")
        parser.link_arguments("data.embedding_dim", "model.cond_dim", apply_on="instantiate")
        parser.link_arguments("data.embeddings_hash", "model.embeddings_hash", apply_on="instantiate")
        parser.link_arguments("data.attribute_classes", "model.attribute_classes", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        try:
            check_video_size(cfg.data.frames, cfg.data.height, cfg.data.width,
                             min_frames=VideoDiscriminator.min_frames, prefix="data.")
        except ValueError as err:
            self.parser.error(f"bad config: {err}")
        _check_inputs(cfg.data)
        root = Path(cfg.trainer.default_root_dir or "runs/default")
        cfg.trainer.default_root_dir = str(root)
        cfg.trainer.logger = _loggers_in(cfg.trainer.logger, root)
        if cfg.trainer.get("enable_checkpointing") is not False:
            cfg.trainer.callbacks = _checkpoints_in(cfg.trainer.callbacks, root)
        cfg.trainer.plugins = _weights_only_io(cfg.trainer.plugins)

    def _parse_ckpt_path(self) -> None:
        """Lightning reads a local --ckpt_path here to copy its saved hyperparameters over the config. ReelGAN reads
        it weights-only (a pickle with code is refused with one line) and lets the config decide: a different
        architecture is refused when the weights load (gan.module), a new learning rate is applied and announced."""
        sub = self.config.get("subcommand")
        ckpt_path = self.config[sub].get("ckpt_path") if sub else None
        if ckpt_path and Path(str(ckpt_path)).is_file():
            load_checkpoint_weights_only(ckpt_path, map_location="cpu")


class InputError(ValueError):
    """A missing or unusable input with a known fix: `reelgan-train` prints the message alone (no traceback)."""


def _check_inputs(data) -> None:
    """Before anything is built: the dataset folder (or shard folder) and its embeddings exist (the usual
    first-run slip is training before `reelgan-data embed`)."""
    from data.preferences import read_header
    from data.shards import ShardError, is_shard_folder, read_shard_info

    root = Path(data.root)
    if is_shard_folder(root):       # `reelgan-data shard` output: carries its embeddings
        try:
            read_shard_info(root)
        except ShardError as err:
            raise InputError(str(err)) from None
    else:
        for need in (root / "clips.csv", root / "interactions.csv"):
            if not need.is_file():
                raise InputError(f"{need}: not found (data.root={root}). Fix: point data.root at a dataset folder "
                                 "(`reelgan-data import` or `reelgan-data synth` make one) or at a shard folder "
                                 "(`reelgan-data shard`)")
    try:
        read_header(data.embeddings or root / DEFAULT_EMBEDDINGS)
    except (FileNotFoundError, ValueError) as err:
        raise InputError(str(err)) from None


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, DefaultHelpFormatter):
    """Keep the description's line breaks (the usage examples), jsonargparse's formatting for the rest."""


def _loggers_in(logger, root: Path):
    """Every logger writes into the run dir; CSV is the default. WandB runs offline unless told otherwise."""
    if logger is None or logger is True:
        logger = Namespace(class_path="train.loggers.RunCSVLogger", init_args=Namespace())
    if logger is False:
        return False
    items = logger if isinstance(logger, list) else [logger]
    for item in items:
        args = item.init_args
        kind = item.class_path.rsplit(".", 1)[-1]
        args.save_dir = str(root)
        if kind in ("RunCSVLogger", "CSVLogger", "TensorBoardLogger"):
            args.name, args.version = "", ""          # logs in RUN itself: one folder per run, appended on resume
        if kind == "WandbLogger":
            os.environ.setdefault("WANDB_MODE", "offline" if args.get("offline", True) else "online")
            os.environ.setdefault("WANDB_DIR", str(root))
            root.mkdir(parents=True, exist_ok=True)
    return logger


def _checkpoints_in(callbacks, root: Path) -> list:
    """Checkpoints go to RUN/checkpoints through train.checkpoints.RunCheckpoint (Lightning's ModelCheckpoint is
    swapped for it: same arguments, plus a fresh last.ckpt first and a save on SIGTERM); one is added if none is
    configured, so a stopped run can always be resumed with --ckpt_path last."""
    callbacks = list(callbacks or [])
    found = False
    for cb in callbacks:
        if isinstance(cb, Namespace) and cb.class_path.rsplit(".", 1)[-1] in CHECKPOINT_CLASSES:
            found = True
            cb.class_path = RUN_CHECKPOINT
            if not cb.init_args.get("dirpath"):
                cb.init_args.dirpath = str(root / "checkpoints")
    if not found:
        callbacks.append(Namespace(class_path=RUN_CHECKPOINT,
                                   init_args=Namespace(dirpath=str(root / "checkpoints"), save_last=True)))
    return callbacks


def _weights_only_io(plugins):
    """Every Trainer checkpoint load goes through train.checkpoints.WeightsOnlyCheckpointIO (any path scheme)."""
    items = [] if plugins is None else list(plugins) if isinstance(plugins, list) else [plugins]
    names = [p.class_path if isinstance(p, Namespace) else str(p) for p in items]
    if not any(name.endswith("CheckpointIO") for name in names):
        items.append(Namespace(class_path=CHECKPOINT_IO, init_args=Namespace()))
    return items


def build_cli(args: list[str] | None = None, run: bool = True) -> ReelGANCLI:
    """Parse (and with run=True execute) a reelgan-train command line; tests call this in process."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    for message in QUIET:
        warnings.filterwarnings("ignore", message=message)
    return ReelGANCLI(
        ReelGAN,
        ProductClipDataModule,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
        parser_kwargs={"description": __doc__, "formatter_class": _HelpFormatter},
        args=args,
        run=run,
    )


def main(args: list[str] | None = None) -> None:
    """Console entry point (`reelgan-train`): failures with a known fix are one message and a non-zero status
    (2: bad input or a refused checkpoint; 1: training stopped itself; 143: SIGTERM)."""
    try:
        cli = build_cli(args)
    except SIGTERMException:
        sys.exit(_stopped_by_sigterm())
    except (InputError, DatasetError, VideoError, CheckpointRefused) as err:
        print(f"reelgan-train: error: {err}", file=sys.stderr)
        sys.exit(2)
    except (NonFiniteLossError, DivergenceError) as err:
        print(f"reelgan-train: error: {err}", file=sys.stderr)
        sys.exit(1)
    trainer = getattr(cli, "trainer", None)
    if trainer is not None and trainer.received_sigterm and trainer.state.status != TrainerStatus.FINISHED:
        sys.exit(_stopped_by_sigterm())


def _stopped_by_sigterm() -> int:
    """After SIGTERM: say where the resumable checkpoint is; exit 128 + SIGTERM (how a killed job reports)."""
    print("stopped by SIGTERM before training finished; RunCheckpoint saved the state at the last whole step to "
          "RUN/checkpoints/last.ckpt. Resume with: reelgan-train fit -c CONFIG --ckpt_path last", file=sys.stderr)
    return 128 + signal.SIGTERM


if __name__ == "__main__":
    main()
