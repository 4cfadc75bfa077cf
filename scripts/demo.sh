#!/usr/bin/env bash
# The one-command demo (`make demo RUN=runs/demo`): the whole product on the synthetic try-on world.
#   synth → check → embed → train demo-cpu → generate (3 held-out users + 1 persona) → evaluate
#   (fvd[domain], fid[effnet-lite0], alignment, engagement) → slot → report
# Prints each stage's wall time, where the report is and three headline figures; writes RUN/demo_timings.json.
# Training is budgeted in steps (configs/demo-cpu.yaml's max_steps), not seconds: a slower or busier machine
# trains exactly as much and takes longer, and says so. max_time is only a safety cap. Knobs (environment):
#   DEMO_TRAIN_MAX_TIME  the safety cap DD:HH:MM:SS (default 00:00:40:00)
#   DEMO_CLIPS / DEMO_USERS  world size (default 256 clips, 480 users: 72 held-out users to evaluate on)
set -euo pipefail
RUN="${1:-runs/demo}"
cd "$(dirname "$0")/.."
BIN="${BIN:-.venv/bin}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE="${WANDB_MODE:-offline}"
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore}"
CLIPS="${DEMO_CLIPS:-256}"
USERS="${DEMO_USERS:-480}"
PERSONA="retro red dress with dots"
WORLD="$RUN/world"
EVAL="$RUN/eval"

case "$RUN" in ""|"/"|"."|"..") echo "demo: refusing RUN='$RUN'; give a run folder such as runs/demo" >&2; exit 2;; esac
# A fresh run: remove only what this script makes (never RUN itself).
rm -rf "$WORLD" "$RUN/train" "$RUN/samples" "$EVAL" "$RUN/slot" "$RUN"/report.{html,md,json} "$RUN/demo_timings.json"
mkdir -p "$RUN" "$EVAL"
LOG="$RUN/demo.log"
: > "$LOG"

NAMES=(); SECS=()
START=$(date +%s%N)
secs() { local ms=$(( ($2 - $1) / 1000000 )); printf '%d.%03d' $((ms / 1000)) $((ms % 1000)); }
stage() {  # stage NAME command...: run, log, time; stop the demo on failure with the log's tail
  local name="$1"; shift
  local t0 t1
  printf '\n\033[1m▶ %s\033[0m  %s\n' "$name" "$*" | tee -a "$LOG"
  t0=$(date +%s%N)
  if ! "$@" 2>&1 | tee -a "$LOG"; then
    echo "demo: stage '$name' failed; full log in $LOG" >&2
    exit 1
  fi
  t1=$(date +%s%N)
  NAMES+=("$name"); SECS+=("$(secs "$t0" "$t1")")
  printf '  ✓ %s: %.1f s\n' "$name" "${SECS[-1]}" | tee -a "$LOG"
}

stage synth     "$BIN/reelgan-data" synth "$WORLD" --clips "$CLIPS" --users "$USERS" --seed 0 --workers 2
stage check     "$BIN/reelgan-data" check "$WORLD"
stage embed     "$BIN/reelgan-data" embed "$WORLD"
# The domain classifier comes before training so that training logs fvd[domain] every 250 batches (the report's
# curve). Evaluation at demo scale (2 cores): a 32×32×8 classifier (colour, category, pattern, motion); at 16 px
# stripes and check are below a pixel and pattern reads at chance.
stage domain    "$BIN/reelgan-eval" domain --dataset "$WORLD" --frames 8 --size 32 --steps 450 \
                    --out "$EVAL/domain.json" --no-progress
TRAIN_MAX_TIME="${DEMO_TRAIN_MAX_TIME:-00:00:40:00}"
echo "training for configs/demo-cpu.yaml's max_steps (safety cap $TRAIN_MAX_TIME DD:HH:MM:SS)" | tee -a "$LOG"
stage train     "$BIN/reelgan-train" fit -c configs/demo-cpu.yaml --data.root "$WORLD" \
                    --trainer.default_root_dir "$RUN/train" --trainer.max_time "$TRAIN_MAX_TIME" \
                    --trainer.callbacks+=evaluation.metrics.callbacks.DomainFVD --trainer.callbacks.every_n_steps=250
CKPT="$RUN/train/checkpoints/last.ckpt"
[ -f "$CKPT" ] || { echo "demo: training wrote no $CKPT" >&2; exit 1; }
DEMO_USERS_IDS=$("$BIN/python" scripts/demo_pick_users.py "$WORLD" 3)
stage generate  "$BIN/reelgan-generate" --checkpoint "$CKPT" --data "$WORLD" --user "$DEMO_USERS_IDS" \
                    --persona "$PERSONA" --num 4 --format mp4,gif --outdir "$RUN/samples" --no-progress
# Evaluation at demo scale: 128 clips for
# fvd[domain], 32 for fid[effnet-lite0] (256 frames a side); the protocol in each JSON records the counts.
stage fvd       "$BIN/reelgan-eval" fvd --checkpoint "$CKPT" --dataset "$WORLD" --network domain --clips 128 \
                    --out "$EVAL/fvd_domain.json" --no-progress
stage fid       "$BIN/reelgan-eval" fid --checkpoint "$CKPT" --dataset "$WORLD" --network effnet-lite0 \
                    --clips 32 --out "$EVAL/fid_effnet.json" --no-progress
# Alignment on every held-out user (72) × 8 clips, at truncation 1 and towards each user's mean style (0.7).
stage align     "$BIN/reelgan-eval" align --checkpoint "$CKPT" --dataset "$WORLD" --clips-per-user 8 \
                    --out "$EVAL/align.json" --no-progress
stage align-0.7 "$BIN/reelgan-eval" align --checkpoint "$CKPT" --dataset "$WORLD" --clips-per-user 8 \
                    --truncation 0.7 --out "$EVAL/align_trunc0.7.json" --no-progress
stage engagement "$BIN/reelgan-eval" engagement --dataset "$WORLD" --steps 200 --out "$EVAL/engagement.json" \
                    --no-progress
stage slot      "$BIN/reelgan-eval" slot --checkpoint "$CKPT" --dataset "$WORLD" --heldout 0 -c configs/slot.yaml \
                    --fvd-json "$EVAL/fvd_domain.json" --out "$RUN/slot" --no-progress
stage report    "$BIN/reelgan-eval" report --run "$RUN"

TOTAL=$(secs "$START" "$(date +%s%N)")
{
  printf '\n\033[1mReelGAN demo finished in %.0f s\033[0m (stage timings; the ≈ 90 s install is not included)\n' "$TOTAL"
  for i in "${!NAMES[@]}"; do printf '  %-11s %7.1f s\n' "${NAMES[$i]}" "${SECS[$i]}"; done
} | tee -a "$LOG"
"$BIN/python" - "$RUN" "$TOTAL" "${NAMES[@]}" -- "${SECS[@]}" <<'PY' | tee -a "$LOG"
import json, os, sys
run, total, rest = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
cut = rest.index("--")
stages = dict(zip(rest[:cut], map(float, rest[cut + 1:])))
timings = {"total_s": round(total, 1), "stages_s": {k: round(v, 1) for k, v in stages.items()},
           "dominant_stage": max(stages, key=stages.get), "cpu_count": os.cpu_count()}
tmp = os.path.join(run, ".demo_timings.json.tmp")
with open(tmp, "w") as f:
    json.dump(timings, f, indent=2)
os.replace(tmp, os.path.join(run, "demo_timings.json"))
report = json.load(open(os.path.join(run, "report.json")))
print(f"\nreport: {os.path.abspath(report['html'])}\nsummary: {os.path.abspath(report['markdown'])}")
print("headline figures:")
for h in report["headlines"]:
    print(f"  {h['name']:<26} {h['display']:>8}   {h['note']}")
PY
