"""`reelgan-eval slot`: the argument parser over evaluation.slot.run.run_slot."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from evaluation.cli_common import add_checkpoint, add_dataset
from evaluation.personalisation.engagement import engagement_path
from evaluation.slot import run
from evaluation.slot.gate import load_slot_config


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "slot", help="quality-gated recommendation slot: K candidates per user, gate, rank, slot.jsonl/csv",
        description=run.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_checkpoint(p)
    add_dataset(p)
    p.add_argument("--engagement", type=Path,
                   help="engagement model file (default: the dataset's cache folder, from "
                        "`reelgan-eval engagement`); its domain classifier gives realism and alignment")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--users", help="comma-separated user ids")
    who.add_argument("--heldout", type=int, metavar="N", help="the first N held-out users of users.csv (0 = all)")
    p.add_argument("-c", "--config", default="configs/slot.yaml", help="slot YAML (candidates, gate, ranking)")
    p.add_argument("--fvd-json", type=Path, help="metrics JSON of `reelgan-eval fvd --network domain` for this "
                                                  "checkpoint (the checkpoint-level gate; without it the gate fails "
                                                  "closed unless gate.max_fvd is null)")
    p.add_argument("--candidates", type=int, help="override K from the config")
    p.add_argument("--out", type=Path, required=True, help="output folder: slot.jsonl, slot.csv, clips/, "
                                                            "slot_summary.json, slot_check.json (synthetic world)")
    p.add_argument("--publish", nargs="?", const="", metavar="URL",
                   help="also publish the slot as a new version to a store a recommender reads: sqlite:///path.db "
                        "(the default when URL is left out: OUT/slot.db) or postgresql://user@host:port/db")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_cli)

    r = subparsers.add_parser(
        "slot-read", help="what a recommender gets from a published slot: the current version's rows for a user",
        description="Read the current slot version from a store written by `reelgan-eval slot --publish` and print "
                    "it as JSON (served rows first). Exit 1 when the user has no rows in that version.")
    r.add_argument("url", help="sqlite:///path.db or postgresql://user@host:port/db")
    r.add_argument("--user", required=True, help="user id")
    r.set_defaults(func=read_cli)


def run_cli(args) -> int:
    publish_store = None
    if args.publish is not None:  # checked (parsed, and reached) before any model is loaded or clip generated
        from evaluation.slot.storeurl import check_store

        publish_store = check_store(args.publish or f"sqlite:///{(args.out / 'slot.db').resolve()}")
    cfg = load_slot_config(args.config, candidates=args.candidates)
    if args.users:
        users = [u.strip() for u in args.users.split(",") if u.strip()]
    else:
        from data.contract import load_dataset

        held = sorted(load_dataset(args.dataset).heldout_users)
        if not held:
            raise ValueError(f"{args.dataset}/users.csv has no held-out users; pass --users")
        users = held if args.heldout == 0 else held[: args.heldout]
    engagement = args.engagement or engagement_path(args.dataset)
    if not Path(engagement).is_file():
        raise FileNotFoundError(f"{engagement}: no engagement model; train it with "
                                f"`reelgan-eval engagement --dataset {args.dataset}` or pass --engagement")
    s = run.run_slot(args.checkpoint, args.dataset, users, engagement, args.out, cfg, fvd_json=args.fvd_json,
                     device=args.device, progress=not args.no_progress, publish_url=publish_store)
    print(f"slot: {s['users']} users, {s['candidates']} candidates, {s['passed']} passed, {s['served']} served; "
          f"checkpoint gate: {s['checkpoint_gate']} → {args.out / s['files']['jsonl']}")
    if s["classifier_gate"] != "passed":
        print(f"gate failed closed: {s['classifier_gate']}")
    if "published" in s:
        print(f"published version {s['published']['version']} to {publish_store.shown}")
    if "check" in s:
        print(f"offline check: {s['check']['verdict']}")
    return 0


def read_cli(args) -> int:
    from data.io import dumps
    from evaluation.slot.publish import read_slot

    got = read_slot(args.url, args.user)
    print(dumps({"user_id": args.user, **got}))
    if not got["rows"]:
        print(f"reelgan-eval slot-read: user {args.user!r} has no rows in slot version {got['version']}",
              file=sys.stderr)
        return 1
    return 0
