#!/usr/bin/env python
"""The whole new-user path on a small real catalogue, end to end, as a shop would run it:

    sample videos (PyAV) + products.csv → reelgan-data import → interactions.csv, users.csv → reelgan-data check
    → reelgan-data embed → reelgan-eval domain → reelgan-train fit (1 minute, demo-cpu made tiny)
    → reelgan-eval engagement → reelgan-eval fvd → reelgan-eval slot --publish sqlite:///… → slot-read
    → reelgan-eval report

The catalogue is six product videos made here (no internet needed): garments (t-shirt, dress, jacket, trousers)
moving over a studio background, of different lengths, sizes, frame rates and containers: a portrait phone clip
with an AAC track, a clip with rotation metadata, a 29.97 fps clip, a vp9 webm and an mkv. Import cuts them into
about 30 clips. Then it checks what a user would trust: every JSON file under RUN parses strictly (no NaN or
Infinity), and every served slot clip resolves to a file that exists and decodes with PyAV.

    .venv/bin/python scripts/new_user_path.py [RUN]   (default runs/new-user; RUN is replaced)

Prints each stage's wall time and writes RUN/new_user_path.json. Exit 1 on the first failed stage or check.
"""
from __future__ import annotations

import csv
import functools
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path
from urllib.parse import unquote, urlparse

import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]
TRAIN_SECONDS = int(os.environ.get("NEW_USER_TRAIN_SECONDS", "60"))

# name, category, colour (RGB), coded (H, W), fps, seconds, extras
VIDEOS = [
    ("red-tshirt.mp4", "tshirt", "red", (200, 30, 40), (360, 640), 30, 11.0, {}),
    ("blue-dress.mov", "dress", "blue", (40, 70, 200), (640, 360), 24, 10.5, {"audio": True}),  # portrait phone
    ("green-jacket.webm", "jacket", "green", (40, 150, 60), (400, 400), 25, 10.5, {}),
    ("black-trousers.mkv", "trousers", "black", (25, 25, 30), (240, 320), 15, 12.0, {}),
    ("yellow-tshirt.mp4", "tshirt", "yellow", (230, 200, 40), (270, 480), Fraction(30000, 1001), 10.5, {}),
    ("pink-dress.mp4", "dress", "pink", (230, 120, 170), (180, 320), 30, 10.5, {"rotate": -90}),  # phone sideways
]


@functools.lru_cache(maxsize=8)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return y, x


def garment_mask(kind: str, h: int, w: int, t: float) -> np.ndarray:
    """Boolean (h, w) silhouette of a garment that sways and drifts with time t (seconds)."""
    y, x = _grid(h, w)
    s = min(h, w)
    cx = w / 2 + 0.18 * w * np.sin(0.7 * t)
    cy = h / 2 + 0.05 * h * np.sin(1.3 * t)
    sway = 0.08 * np.sin(2.0 * t)
    u, v = (x - cx) / s, (y - cy) / s
    u = u - sway * v  # lean with the sway
    if kind == "tshirt":
        body = (np.abs(u) < 0.17) & (v > -0.22) & (v < 0.28)
        sleeves = (np.abs(u) < 0.30) & (v > -0.22) & (v < -0.05) & (np.abs(u) > 0.1 - 0.6 * (v + 0.22))
        return body | sleeves
    if kind == "dress":
        half = 0.09 + 0.35 * np.clip(v + 0.25, 0, 0.6)
        return (np.abs(u) < half) & (v > -0.28) & (v < 0.32)
    if kind == "jacket":
        body = (np.abs(u) < 0.2) & (v > -0.25) & (v < 0.25)
        arms = (np.abs(u) > 0.2) & (np.abs(u) < 0.28) & (v > -0.22) & (v < 0.2)
        opening = (np.abs(u) < 0.02) & (v > -0.1)
        return (body | arms) & ~opening
    legs = (np.abs(np.abs(u) - 0.08) < 0.07) & (v > -0.1) & (v < 0.35)  # trousers
    waist = (np.abs(u) < 0.15) & (v > -0.18) & (v <= -0.1)
    return legs | waist


def render_frame(kind: str, colour, h: int, w: int, t: float) -> np.ndarray:
    """uint8 (h, w, 3): a light studio backdrop with a floor line and a shaded garment."""
    y, x = _grid(h, w)
    back = 215 - 40 * (y[:, :1] / h) + 8 * np.sin(x[:1] / w * 3 + 0.2 * t)  # (h, w) by broadcasting
    back[int(0.82 * h):] *= 0.8
    img = np.repeat(back[..., None], 3, axis=-1)
    mask = garment_mask(kind, h, w, t)
    shade = 0.75 + 0.25 * np.sin(x[mask] / 9 + y[mask] / 15 + 2 * t)[:, None]
    img[mask] = np.asarray(colour, np.float32) * shade + 20
    return np.clip(img, 0, 255).astype(np.uint8)


def write_sample(path: Path, kind: str, colour, size, fps, seconds: float, audio=False, rotate=0) -> None:
    h, w = size
    fmt, codec = {".mp4": ("mp4", "libx264"), ".mov": ("mov", "libx264"), ".mkv": ("matroska", "libx264"),
                  ".webm": ("webm", "libvpx-vp9")}[path.suffix]
    n = int(round(seconds * float(fps)))
    with av.open(str(path), "w", format=fmt) as container:
        options = {"preset": "fast", "crf": "23"} if codec == "libx264" else {"deadline": "realtime", "cpu-used": "8"}
        stream = container.add_stream(codec, rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if rotate:
            stream.set_display_rotation(rotate)
        sound = container.add_stream("aac", rate=44100, layout="stereo") if audio else None
        for k in range(n):
            frame = av.VideoFrame.from_ndarray(render_frame(kind, colour, h, w, k / float(fps)), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if sound is not None:
            tone = (0.1 * np.sin(2 * np.pi * 220 * np.arange(int(seconds * 44100)) / 44100)).astype(np.float32)
            for i in range(0, len(tone), 1024):
                chunk = av.AudioFrame.from_ndarray(np.stack([tone[i:i + 1024]] * 2), format="fltp", layout="stereo")
                chunk.sample_rate, chunk.pts = 44100, i
                for packet in sound.encode(chunk):
                    container.mux(packet)
            for packet in sound.encode():
                container.mux(packet)


def make_catalogue(src: Path) -> None:
    """SRC/videos + SRC/products.csv (file, product_id, category, colour)."""
    (src / "videos").mkdir(parents=True)
    rows = []
    for name, kind, colour_name, rgb, size, fps, seconds, extra in VIDEOS:
        write_sample(src / "videos" / name, kind, rgb, size, fps, seconds, **extra)
        rows.append({"file": f"videos/{name}", "product_id": f"sku-{Path(name).stem}", "category": kind,
                     "colour": colour_name})
    with open(src / "products.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_events(dataset: Path, users: int = 48, seed: int = 0) -> None:
    """interactions.csv and users.csv for the imported clips: each shopper likes one colour or category, views a
    dozen clips and clicks, carts and buys mostly what they like. One in six shoppers is held out."""
    rng = np.random.default_rng(seed)
    with open(dataset / "clips.csv", newline="") as f:
        clips = list(csv.DictReader(f))
    t0 = 1_717_000_000
    events, people = [], []
    for u in range(users):
        uid = f"shopper-{u:03d}"
        key, value = ("colour", rng.choice(sorted({c["colour"] for c in clips}))) if u % 2 else \
            ("category", rng.choice(sorted({c["category"] for c in clips})))
        liked = [c for c in clips if c[key] == value]
        seen = rng.choice(len(clips), size=12, replace=False)
        shown = [clips[i] for i in seen] + [liked[rng.integers(len(liked))] for _ in range(3)]
        for k, clip in enumerate(shown):
            ts = t0 + 3600 * u + 60 * k
            events.append((uid, clip["clip_id"], "view", ts))
            p = 0.8 if clip[key] == value else 0.08
            if rng.random() < p:
                events.append((uid, clip["clip_id"], "click", ts + 5))
                if rng.random() < 0.5:
                    events.append((uid, clip["clip_id"], "add_to_cart", ts + 20))
                    if rng.random() < 0.4:
                        events.append((uid, clip["clip_id"], "purchase", ts + 40))
        people.append((uid, "heldout" if u % 6 == 5 else "train"))
    with open(dataset / "interactions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "clip_id", "event", "timestamp"])
        w.writerows(events)
    with open(dataset / "users.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "split"])
        w.writerows(people)


def write_tiny_config(path: Path, root: Path) -> None:
    """configs/demo-cpu.yaml made tiny: narrower G and Ds, batch 8, TRAIN_SECONDS of training, written to `path`."""
    import yaml

    cfg = yaml.safe_load((REPO / "configs" / "demo-cpu.yaml").read_text())
    cfg["trainer"].update(default_root_dir=str(root), max_steps=100_000,
                          max_time=f"00:00:{TRAIN_SECONDS // 60:02d}:{TRAIN_SECONDS % 60:02d}")
    cfg["trainer"]["logger"]["init_args"]["save_dir"] = str(root)
    for cb in cfg["trainer"]["callbacks"]:
        if cb["class_path"].endswith("SampleGrid"):
            # One real clip per row: SampleGrid stacks rows of unequal width (and fails) when a shopper has fewer
            # engaged clips than real_clips, which a small catalogue has (reported; train/ is not ours).
            cb["init_args"]["real_clips"] = 1
    cfg["model"].update(g_channels=[64, 32, 16, 8], d_image_channels=[8, 16, 32, 64], d_video_channels=[8, 16, 32])
    cfg["data"]["batch_size"] = 8
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def _reject(constant: str):
    raise ValueError(f"non-strict JSON constant {constant}")


def strict_json_files(run: Path) -> list[str]:
    """Every .json / .jsonl file under RUN parsed with NaN, Infinity and -Infinity rejected → problems."""
    problems = []
    for path in sorted(run.rglob("*.json")) + sorted(run.rglob("*.jsonl")):
        try:
            text = path.read_text()
            docs = [line for line in text.splitlines() if line.strip()] if path.suffix == ".jsonl" else [text]
            for doc in docs:
                json.loads(doc, parse_constant=_reject)
        except (ValueError, UnicodeDecodeError) as e:
            problems.append(f"{path.relative_to(run)}: {e}")
    return problems


def decodes(path: Path) -> int:
    """Frames PyAV decodes from `path` (0 when none)."""
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(container.streams.video[0]))


def _local_file(uri: str) -> Path:
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        raise ValueError(f"not a file:// URI: {uri}")
    return Path(unquote(parsed.path))


def slot_clips(slot: Path, store: Path, read_out: str) -> tuple[dict, list[str]]:
    """Every row of slot.jsonl (its `clip`, relative to the slot folder, and its `clip_uri`), every row of the
    store's current version and the rows `slot-read` printed must name a file that exists and decodes with PyAV
    → (counts, problems). At least one row per user is served."""
    problems: list[str] = []
    rows = [json.loads(line) for line in (slot / "slot.jsonl").read_text().splitlines() if line.strip()]
    con = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        stored = con.execute("SELECT user_id, served, clip_uri FROM slot_rows WHERE version = "
                             "(SELECT version FROM slot_current)").fetchall()
    finally:
        con.close()
    read = json.loads(read_out, parse_constant=_reject)["rows"]
    files = {}
    for r in rows:
        files.setdefault(os.path.normpath(slot / r["clip"]), []).append(f"slot.jsonl {r['user_id']} clip")
        files.setdefault(str(_local_file(r["clip_uri"])), []).append(f"slot.jsonl {r['user_id']} clip_uri")
    for user, _, uri in stored:
        files.setdefault(str(_local_file(uri)), []).append(f"store {user}")
    for r in read:
        files.setdefault(str(_local_file(r["clip_uri"])), []).append(f"slot-read {r.get('user_id')}")
    for path, who in files.items():
        try:
            frames = decodes(Path(path)) if Path(path).is_file() else -1
        except (av.error.FFmpegError, IndexError) as e:
            problems.append(f"{path} ({who[0]}) does not decode: {e}")
            continue
        if frames <= 0:
            problems.append(f"{path} ({who[0]}): " + ("missing" if frames < 0 else "no frames"))
    users = {r["user_id"] for r in rows}
    served_users = {r["user_id"] for r in rows if r["served"]}
    if users != served_users:
        problems.append(f"users served nothing: {sorted(users - served_users)}")
    if len(stored) != len(rows) or sum(bool(s) for _, s, _ in stored) != sum(bool(r["served"]) for r in rows):
        problems.append(f"the store's current version ({len(stored)} rows) differs from slot.jsonl ({len(rows)})")
    counts = {"rows": len(rows), "served": sum(bool(r["served"]) for r in rows),
              "served_generated": sum(bool(r["served"]) and r["source"] == "generated" for r in rows),
              "files_checked": len(files), "store_rows": len(stored), "slot_read_rows": len(read)}
    return counts, problems


def main() -> int:
    run = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/new-user").resolve()
    if run in (Path("/"), REPO, Path.home()):
        print(f"new_user_path: refusing RUN={run}", file=sys.stderr)
        return 2
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    src, ds, ev = run / "shop", run / "dataset", run / "eval"
    ev.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "offline",
           "PYTHONWARNINGS": "ignore"}
    bindir = Path(sys.executable).parent

    def tool(name: str, module: str) -> list[str]:
        script = bindir / name
        return [str(script)] if script.is_file() else [sys.executable, "-m", module]

    data, train, evaluate = tool("reelgan-data", "data.cli"), tool("reelgan-train", "train.cli"), \
        tool("reelgan-eval", "evaluation.cli")
    timings: dict[str, float] = {}
    log = open(run / "new_user_path.log", "w")

    def stage(name: str, cmd) -> str:
        """Run one stage (a command line, or a function), log it and time it → the command's stdout."""
        print(f"▶ {name}" + (f": {' '.join(map(str, cmd))}" if isinstance(cmd, list) else ""), flush=True)
        t0, out = time.perf_counter(), ""
        if isinstance(cmd, list):
            done = subprocess.run([str(c) for c in cmd], cwd=REPO, env=env, capture_output=True, text=True)
            out = done.stdout
            log.write(f"\n$ {' '.join(map(str, cmd))}\n{done.stdout}{done.stderr}")
            log.flush()
            if done.returncode != 0:
                tail = (done.stdout + done.stderr).splitlines()[-25:]
                raise SystemExit(f"stage {name} failed (exit {done.returncode}):\n" + "\n".join(tail))
        else:
            cmd()
        timings[name] = round(time.perf_counter() - t0, 1)
        print(f"  ✓ {timings[name]} s", flush=True)
        return out

    started = time.perf_counter()
    ckpt = run / "train" / "checkpoints" / "last.ckpt"
    store = run / "slot" / "store.db"
    stage("sample videos", functools.partial(make_catalogue, src))
    stage("import", data + ["import", src, ds, "--products", src / "products.csv", "--size", "64x64",
                            "--clip-seconds", "2", "--max-clips-per-video", "5"])
    stage("events", functools.partial(write_events, ds))
    stage("check", data + ["check", ds])
    stage("embed", data + ["embed", ds, "--dim", "16"])
    stage("domain", evaluate + ["domain", "--dataset", ds, "--frames", "8", "--size", "16", "--steps", "100",
                                "--out", ev / "domain.json", "--no-progress"])
    stage("tiny config", functools.partial(write_tiny_config, run / "tiny.yaml", run / "train"))
    stage("fit", train + ["fit", "-c", run / "tiny.yaml", "--data.root", ds])
    if not ckpt.is_file():
        print(f"new_user_path: training wrote no {ckpt}", file=sys.stderr)
        return 1
    stage("engagement", evaluate + ["engagement", "--dataset", ds, "--steps", "100", "--out", ev / "engagement.json",
                                    "--no-progress"])
    stage("fvd", evaluate + ["fvd", "--checkpoint", ckpt, "--dataset", ds, "--network", "domain", "--clips", "32",
                             "--out", ev / "fvd_domain.json", "--no-progress"])
    stage("slot", evaluate + ["slot", "--checkpoint", ckpt, "--dataset", ds, "--heldout", "0", "-c",
                              "configs/slot.yaml", "--fvd-json", ev / "fvd_domain.json", "--out", run / "slot",
                              "--publish", f"sqlite:///{store}", "--no-progress"])
    first_user = json.loads((run / "slot" / "slot.jsonl").read_text().splitlines()[0])["user_id"]
    read_out = stage("slot-read", evaluate + ["slot-read", f"sqlite:///{store}", "--user", first_user])
    stage("report", evaluate + ["report", "--run", run])
    total = round(time.perf_counter() - started, 1)

    problems = strict_json_files(run)
    slot, bad = slot_clips(run / "slot", store, read_out)
    problems += bad
    for name in ("report.html", "report.md"):
        if not (run / name).is_file():
            problems.append(f"no {name}")
    with open(ds / "clips.csv", newline="") as f:
        clips = sum(1 for _ in csv.DictReader(f))
    summary = {"run": str(run.relative_to(REPO)) if run.is_relative_to(REPO) else run.name,
               "videos": len(VIDEOS), "clips": clips, "stages_s": timings, "total_s": total,
               "train_seconds": TRAIN_SECONDS, "slot": slot, "problems": problems,
               "loadavg": [round(x, 2) for x in os.getloadavg()]}
    (run / "new_user_path.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
