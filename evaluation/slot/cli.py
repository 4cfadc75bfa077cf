"""`reelgan-eval slot`: the argument parser over evaluation.slot.run.run_slot."""
from __future__ import annotations

import argparse
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
                   help="engagement model file (default DATASET/evaluation/engagement.safetensors, from "
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
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_cli)


def run_cli(args) -> int:
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
                 device=args.device, progress=not args.no_progress)
    print(f"slot: {s['users']} users, {s['candidates']} candidates, {s['passed']} passed, {s['served']} served; "
          f"checkpoint gate: {s['checkpoint_gate']} → {s['files']['jsonl']}")
    if "check" in s:
        print(f"offline check: {s['check']['verdict']}")
    return 0
