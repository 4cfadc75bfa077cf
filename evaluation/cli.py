"""`reelgan-eval`: every evaluation as a subcommand. A thin shell: each subcommand lives in a module that exposes
`register(subparsers)` (adds its parser and `set_defaults(func=...)`), and adding one is one line in COMMANDS.

    reelgan-eval fid  --checkpoint C --dataset D [--network inception-fid|effnet-lite0]
    reelgan-eval fvd  --checkpoint C --dataset D [--network domain|i3d-fvd]
    reelgan-eval domain --dataset D
    reelgan-eval align --checkpoint C --dataset D
    reelgan-eval engagement --dataset D [--checkpoint C]
    reelgan-eval slot ... / report ...

Results are JSON on stdout (and in --out), each with the pinned protocol and how it was made.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = [
    "evaluation.metrics.cli",           # fid, fvd
    "evaluation.features.cli",          # domain
    "evaluation.personalisation.cli",   # align, engagement
    "evaluation.slot.cli",              # slot
    "evaluation.report.cli",            # report
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reelgan-eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    import torch

    args = build_parser().parse_args(argv)
    threads = torch.get_num_threads()
    if getattr(args, "threads", 0):  # subcommands with a --threads option (restored after: main is also a function)
        torch.set_num_threads(int(args.threads))
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError, KeyError) as err:  # StoreError is a ValueError
        # Our errors name the file, row or field and the fix: show the sentence, not a traceback.
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"reelgan-eval {args.command}: error: {msg}", file=sys.stderr)
        return 2
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    sys.exit(main())
