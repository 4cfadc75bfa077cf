"""Feature-extraction throughput of each network in the registry, against pytorch-fid's network (same weights).

Inputs are uint8 frames/clips at --size px (64: the demo resolution), resized by each network as its protocol
says (Inception 299, EfficientNet 224, I3D 224). Weights: a random calibrated pt_inception file (speed does not
depend on the values; the official file is used instead when it is in the torch hub cache), a random I3D, the
packaged EfficientNet-Lite0. Each setting is timed for --seconds after one warm-up batch, fp32. per_s is wall
throughput; per_cpu_s is items per CPU-second of this process (steadier when others load the machine).
Prints a table and writes bench/results/bench_eval_features.json.

    .venv/bin/python bench/bench_eval_features.py [--seconds 10] [--size 64] [--domain-weights PATH]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _eval_common import print_table, write_results  # noqa: E402

from evaluation.features import get_feature_extractor  # noqa: E402
from evaluation.features.base import hub_checkpoint_dir  # noqa: E402


def throughput(fn, make_batch, items_per_batch: int, seconds: float) -> dict:
    fn(make_batch())  # warm-up: oneDNN kernels, allocator
    done, runs, start, start_cpu = 0, 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds or runs < 2:
        fn(make_batch())
        done += items_per_batch
        runs += 1
    wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    # per_cpu_s: items per CPU-second of this process (all its threads); steadier than wall time on a shared box
    return {"items": done, "seconds": round(wall, 2), "per_s": round(done / wall, 2),
            "per_cpu_s": round(done / cpu, 2)}


def inception_weights(tmp: Path) -> tuple[Path, str]:
    official = hub_checkpoint_dir() / "pt_inception-2015-12-05-6726825d.pth"
    if official.is_file():
        return official, "official"
    from evaluation.features.inception import write_random_weights

    path = tmp / "pt_inception-random.pth"
    write_random_weights(path, seed=0)
    return path, "random (calibrated)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0, help="timed seconds per setting")
    p.add_argument("--size", type=int, default=64, help="input frame size (square)")
    p.add_argument("--image-batch", type=int, default=16)
    p.add_argument("--clip-batch", type=int, default=2)
    p.add_argument("--frames", type=int, default=16, help="frames per clip for video networks")
    p.add_argument("--domain-weights", type=Path, default=None, help="also time the domain network")
    args = p.parse_args()
    g = torch.Generator().manual_seed(0)
    s = args.size
    frames = lambda: torch.randint(0, 256, (args.image_batch, 1, 3, s, s), generator=g, dtype=torch.uint8)  # noqa
    clips = lambda: torch.randint(0, 256, (args.clip_batch, args.frames, 3, s, s), generator=g,  # noqa: E731
                                  dtype=torch.uint8)
    rows = []

    def add(network, impl, unit, res, note=""):
        rows.append({"network": network, "implementation": impl, "unit": unit, **res, "note": note})
        print(f"{network:14s} {impl:34s} {res['per_s']:8.2f} {unit}/s  ({res['per_cpu_s']:.2f} per CPU-s)", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        weights, source = inception_weights(Path(tmp))
        for cl in (False, True):
            ext = get_feature_extractor("inception-fid", weights=weights, expected_sha256=None, channels_last=cl)
            add("inception-fid", f"reelgan ({'channels_last' if cl else 'NCHW'})", "img",
                throughput(ext.features, frames, args.image_batch, args.seconds), f"weights: {source}")
        try:
            import pytorch_fid.inception as pfid

            pfid.load_state_dict_from_url = lambda *a, **k: torch.load(weights, map_location="cpu", weights_only=True)
            net = pfid.InceptionV3([3]).eval()

            def run_pfid(x):
                with torch.no_grad():
                    return net(x[:, 0].float() / 255.0)[0]

            add("inception-fid", "pytorch-fid InceptionV3 (same file)", "img",
                throughput(run_pfid, frames, args.image_batch, args.seconds), f"weights: {source}")
        except ImportError:
            print("pytorch-fid not installed: peer row skipped")
    ext = get_feature_extractor("effnet-lite0")
    add("effnet-lite0", "reelgan (channels_last)", "img", throughput(ext.features, frames, args.image_batch,
                                                                         args.seconds))
    from evaluation.features.i3d import InceptionI3d

    with tempfile.TemporaryDirectory() as tmp:
        torch.save(InceptionI3d().state_dict(), Path(tmp) / "i3d.pt")
        ext = get_feature_extractor("i3d-fvd", weights=Path(tmp) / "i3d.pt")
        add("i3d-fvd", f"reelgan ({args.frames} frames)", "clip",
            throughput(ext.features, clips, args.clip_batch, args.seconds), "random weights")
    if args.domain_weights:
        ext = get_feature_extractor("domain", weights=args.domain_weights)
        add("domain", f"reelgan ({args.frames} frames)", "clip",
            throughput(ext.features, clips, args.clip_batch, args.seconds))
    print()
    print_table(rows, ["network", "implementation", "unit", "per_s", "per_cpu_s", "items", "seconds", "note"])
    write_results("bench_eval_features", {"command": " ".join(sys.argv), "args": {k: str(v) for k, v in
                                                                                     vars(args).items()},
                                          "rows": rows})


if __name__ == "__main__":
    main()
