"""`reelgan-generate`: personalised clips for shoppers, personas, vectors or a campaign; `export` for serving.

A thin shell: parsing here, work in generate.targets / generate.run / generate.export.
"""
from __future__ import annotations

import argparse
import itertools
import shlex
import sys
from pathlib import Path

EPILOG = """examples:
  reelgan-generate --checkpoint runs/demo/train/checkpoints/last.ckpt --data runs/demo/world --user u0007,u0042 --num 4
  reelgan-generate --checkpoint G.safetensors --data DATASET --persona "retro red dress with dots" --seeds 0-7,12 --format mp4,gif,grid
  reelgan-generate --checkpoint G.safetensors --preferences DATASET/embeddings/preferences.safetensors --users-file campaign.csv
  reelgan-generate --checkpoint G.safetensors --embedding shopper.npy --truncation 0.7
  reelgan-generate --checkpoint G.safetensors --data DATASET --users-file campaign.csv --devices 8 --strategy ddp
  reelgan-generate export --checkpoint runs/demo/train/checkpoints/last.ckpt --out generator.safetensors

output: OUTDIR/runs/<run id>/<safe user name>/<name>-seedNNNN.<fmt>, published atomically (1 or N processes
alike) with OUTDIR/manifest.json (user, seed, embedding hash,
checkpoint sha256, truncation, forward batch, precision, sizes, timings). A seed gives the same clip whatever
--batch-size, --encode-workers or number of devices, for the same --forward-batch and --precision.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="reelgan-generate", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Generate try-on clips conditioned on a shopper's preference vector. Subcommand: "
                    "`reelgan-generate export --help` writes the EMA generator to safetensors for serving.")
    # required unless the `export` subcommand is given (checked in main: argparse cannot say "required without a
    # subcommand"); the error is argparse's own
    p.add_argument("--checkpoint", help="a training .ckpt or an exported .safetensors generator (required)")
    sub = p.add_subparsers(dest="command", metavar="{export}", title="subcommand (optional)")
    add_export_parser(sub)
    who = p.add_argument_group("who the clips are for (any combination)")
    who.add_argument("--user", action="append", default=[], metavar="ID[,ID...]", help="user ids with a preference vector")
    who.add_argument("--users-file", metavar="CSV", help="campaign CSV with a user_id and/or persona column")
    who.add_argument("--embedding", metavar="NPY", help="external preference vector(s): .npy of shape (E,) or (N, E)")
    who.add_argument("--persona", action="append", default=[], metavar="TEXT",
                     help="describe a new shopper; MiniLM + the learned persona map give the vector (repeatable)")
    src = p.add_argument_group("where vectors come from")
    src.add_argument("--data", metavar="DATASET", help="dataset folder: uses DATASET/embeddings/{preferences,persona_map}.safetensors")
    src.add_argument("--preferences", metavar="FILE", help="preferences.safetensors (overrides --data)")
    src.add_argument("--persona-map", metavar="FILE", help="persona_map.safetensors (overrides --data)")
    src.add_argument("--allow-embeddings-mismatch", action="store_true",
                     help="use user vectors whose hash differs from the one the model was trained with")
    how = p.add_argument_group("what to make")
    how.add_argument("--num", type=int, help="clips per target: seeds 0..NUM-1 (default 1)")
    how.add_argument("--seeds", help="explicit seeds, e.g. 0-7,12 (instead of --num)")
    how.add_argument("--truncation", type=float, default=1.0,
                     help="1 = full diversity; < 1 pulls towards the condition's average style and, for an "
                          "attribute-conditioned generator, shows each shopper's most likely product attributes "
                          "(colour, category, ...) instead of drawing them (default 1.0)")
    how.add_argument("--fps", type=int, default=8, help="frames per second of written videos (default 8)")
    how.add_argument("--format", default="mp4", help="comma list of mp4,webm,gif,grid (grid = PNG contact sheet)")
    how.add_argument("--outdir", default="samples", help="output folder; one sub-folder per target (default samples)")
    how.add_argument("--device", default="auto", help="auto|cpu|cuda (default auto)")
    how.add_argument("--batch-size", type=int, default=16,
                     help="clips made between progress updates, rounded up to whole forward batches; it does not "
                          "change the clips (default 16)")
    how.add_argument("--forward-batch", type=int, default=None,
                     help="rows in every generator forward (the last one padded); part of what fixes a clip, "
                          "recorded in the manifest. Default: the device's (8 on the CPU, bit-exact there whatever "
                          "--batch-size; 64 on CUDA)")
    how.add_argument("--encode-workers", default="auto",
                     help="processes encoding and writing clips while the next forward runs (0 = in this process; "
                          "default auto: the device's share of the CPU cores); never changes a file")
    how.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                     help="fp32 (default, the reference clips) or bf16 autocast (faster on GPUs; other clips); "
                          "recorded in the manifest")
    many = p.add_argument_group("many devices (Lightning's predict loop; each rank writes its share of the clips)")
    many.add_argument("--devices", help="devices (or CPU processes) to generate on, e.g. 8; with --device cpu, "
                                        "that many processes")
    many.add_argument("--strategy", help="Lightning strategy, e.g. ddp (default: Lightning's choice for --devices)")
    many.add_argument("--num-nodes", type=int, default=1, help="machines (under SLURM: #SBATCH --nodes)")
    how.add_argument("--no-progress", action="store_true", help="no progress bar (logs, CI)")
    return p


def add_export_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "export", help="write the EMA generator to one .safetensors file for serving",
        description="Write the EMA generator and its config to one .safetensors file (tensors + JSON metadata, no "
                    "pickle). `reelgan-generate --checkpoint FILE.safetensors` then gives the same clips as the "
                    "checkpoint.")
    p.add_argument("--checkpoint", required=True, help="training checkpoint (.ckpt)")
    p.add_argument("--out", required=True, help="output path ending in .safetensors")
    return p


def _split_ids(values: list[str]) -> list[str]:
    return [u.strip() for v in values for u in v.split(",") if u.strip()]


def _resolve_sources(args):
    from data.preferences import PreferenceEmbeddings

    data = Path(args.data) if args.data else None
    prefs = Path(args.preferences) if args.preferences else (data / "embeddings" / "preferences.safetensors" if data else None)
    pmap = Path(args.persona_map) if args.persona_map else (data / "embeddings" / "persona_map.safetensors" if data else None)
    need_users = bool(args.user) or bool(args.users_file)
    need_persona = bool(args.persona) or bool(args.users_file)
    embeddings = persona_map = None
    if need_users:
        if prefs is None:
            raise ValueError("--user/--users-file need preference vectors: pass --data DATASET or --preferences FILE")
        if not prefs.is_file():
            raise FileNotFoundError(f"{prefs} not found; run `reelgan-data embed {data or 'DATASET'}` first or pass --preferences")
        embeddings = PreferenceEmbeddings.load(prefs)
    if need_persona and pmap is not None and pmap.is_file():
        from data.persona import PersonaMap  # loads MiniLM: only when a persona is asked for

        persona_map = PersonaMap.load(pmap)
    elif args.persona:
        raise FileNotFoundError(f"--persona needs the persona map ({pmap or 'pass --data or --persona-map'} not found); "
                                "`reelgan-data embed` fits it")
    return embeddings, persona_map, prefs


def run_generate(args) -> dict:
    from generate.loading import load_generator
    from generate.run import generate_to_folders, pick_device
    from generate.seeds_spec import resolve_seeds
    from generate.targets import (campaign_targets, check_campaign, dedupe, embedding_targets, persona_targets,
                                  user_targets)
    from generate.writers import parse_formats

    formats = parse_formats(args.format)
    seeds = resolve_seeds(args.num, args.seeds)
    if not 0 < args.truncation <= 1:
        raise ValueError(f"--truncation must be in (0, 1] (1 = full diversity), got {args.truncation}")
    if not (args.user or args.users_file or args.embedding or args.persona):
        raise ValueError("say who the clips are for: --user ID, --users-file CSV, --embedding NPY or --persona TEXT")
    device = pick_device(args.device)
    embeddings, persona_map, prefs = _resolve_sources(args)
    generator, info = load_generator(args.checkpoint, device=device)
    if embeddings is not None and info.get("embeddings_hash") and embeddings.hash != info["embeddings_hash"] \
            and not args.allow_embeddings_mismatch:
        raise ValueError(f"{prefs}: these preference vectors (hash {embeddings.hash[:12]}) are not the ones the model "
                         f"was trained with ({str(info['embeddings_hash'])[:12]}); pass the training run's "
                         "preferences.safetensors, or --allow-embeddings-mismatch if you know they share a space")
    mapped_into = persona_map.meta.get("preferences_hash") if persona_map is not None else None
    if mapped_into and info.get("embeddings_hash") and mapped_into != info["embeddings_hash"] \
            and not args.allow_embeddings_mismatch:
        raise ValueError(f"{args.persona_map or 'the persona map'}: it maps personas into preference vectors with hash "
                         f"{mapped_into[:12]}, but the model was trained with {str(info['embeddings_hash'])[:12]}; "
                         "pass the persona map that `reelgan-data embed` wrote beside the training run's "
                         "preferences, or --allow-embeddings-mismatch if you know they share a space")
    targets = []
    if args.user:
        targets += user_targets(_split_ids(args.user), embeddings, str(prefs))
    campaign = []
    if args.users_file:  # streamed (a 10⁶-row campaign starts at once); a regular file is checked in one pass first
        if Path(args.users_file).is_file():
            check_campaign(args.users_file, embeddings, persona_map)
        campaign = campaign_targets(args.users_file, embeddings, persona_map)
    rest = []
    if args.embedding:
        rest += embedding_targets(args.embedding, int(info["config"]["cond_dim"]))
    if args.persona:
        rest += persona_targets(args.persona, persona_map)
    targets = itertools.chain(targets, campaign, rest)
    command = "reelgan-generate " + shlex.join(sys.argv[1:])
    if args.devices or args.strategy:
        from generate.predict import generate_distributed

        return generate_distributed(generator, info, list(dedupe(targets)), seeds, args.outdir, formats,
                                    devices=_devices(args.devices), strategy=args.strategy or "auto",
                                    num_nodes=args.num_nodes,
                                    device=args.device, fps=args.fps, truncation=args.truncation,
                                    forward_batch=args.forward_batch, precision=args.precision,
                                    encode_workers=_encode_workers(args.encode_workers),
                                    progress=not args.no_progress, command=command)
    return generate_to_folders(generator, info, dedupe(targets), seeds, args.outdir, formats, fps=args.fps,
                               truncation=args.truncation, batch_size=args.batch_size, device=device,
                               progress=not args.no_progress, command=command,
                               forward_batch=args.forward_batch, precision=args.precision,
                               encode_workers=_encode_workers(args.encode_workers))


def _encode_workers(text: str) -> int | str:
    if text == "auto" or text.isdigit():
        return text if text == "auto" else int(text)
    raise ValueError(f"--encode-workers {text!r}: a number of processes (0 = none) or auto")


def _devices(text: str | None) -> int | str:
    if text is None:
        return "auto"
    if text == "auto" or text.isdigit() and int(text) > 0:
        return text if text == "auto" else int(text)
    raise ValueError(f"--devices {text!r}: a positive number of devices (or auto)")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from generate.targets import UnknownUserError
    from generate.writers import ClipEncodeError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None and not args.checkpoint:
        parser.error("the following arguments are required: --checkpoint")
    try:
        if args.command == "export":
            from generate.export import export_generator

            out = export_generator(args.checkpoint, args.out)
            print(f"exported {out['tensors']} tensors ({out['parameters']:,} parameters) to {out['path']}\n"
                  f"sha256 {out['sha256']}")
            return 0
        manifest = run_generate(args)
        if manifest is None:  # a rank other than 0 of a multi-device run: rank 0 reports
            return 0
        run = manifest["runs"][-1]
        print(f"wrote {run['clips']} clips for {len(run['targets'])} target(s) to {Path(args.outdir).resolve()} "
              f"({run['timings']['clips_per_s_model']:.2f} clips/s model, {run['timings']['total_s']:.1f} s total); "
              f"manifest: {Path(args.outdir) / 'manifest.json'}")
        return 0
    except UnknownUserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (ValueError, OSError, ClipEncodeError) as e:  # ours name the file/field/clip; OSError: disk, permissions
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
