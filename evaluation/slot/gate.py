"""The slot's configuration, quality gate and ranking (pure: no models here; the files: evaluation.slot.store).

A candidate row before gating: {user_id, candidate, seed, clip, scores: {engagement, realism, alignment, ...}}.
After `gate_and_rank`: + passed (bool), reasons (list of failed checks, each "check value op threshold"),
rank (1.. among passing clips of the user, None if failed), served (rank <= serve).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml


@dataclass
class GateConfig:
    max_fvd: float | None = 250.0     # checkpoint-level fvd[domain] ceiling; None disables
    min_realism: float = 0.01         # per-clip realism floor
    min_alignment: float = 0.25       # per-clip alignment floor


@dataclass
class SlotConfig:
    candidates: int = 8
    seed_base: int = 100000
    serve: int = 1
    truncation: float = 0.8
    batch_size: int = 16
    rank_by: str = "engagement"
    fallback: str = "popular"
    attributes: list[str] | None = None  # product attributes the alignment score reads (default: all the classifier has)
    gate: GateConfig = field(default_factory=GateConfig)


def load_slot_config(path: str | Path | None, **overrides) -> SlotConfig:
    """YAML → SlotConfig; unknown keys and bad values fail naming the file and the field."""
    raw = {}
    if path is not None:
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ValueError(f"{path}: cannot read the slot config ({e})") from e
    where = str(path) if path else "slot config"
    known = {f.name for f in fields(SlotConfig)}
    if bad := set(raw) - known:
        raise ValueError(f"{where}: unknown field(s) {sorted(bad)}; known: {sorted(known)}")
    gate_raw = raw.pop("gate", {}) or {}
    gate_known = {f.name for f in fields(GateConfig)}
    if bad := set(gate_raw) - gate_known:
        raise ValueError(f"{where}: unknown gate field(s) {sorted(bad)}; known: {sorted(gate_known)}")
    cfg = SlotConfig(**raw, gate=GateConfig(**gate_raw))
    for k, v in overrides.items():
        if v is not None:
            setattr(cfg, k, v)
    checks = [(cfg.candidates >= 1, "candidates must be >= 1"), (1 <= cfg.serve <= cfg.candidates, "serve must be in 1..candidates"),
              (cfg.truncation > 0, "truncation must be > 0"), (cfg.batch_size >= 1, "batch_size must be >= 1"),
              (cfg.rank_by in ("engagement", "alignment", "realism"), "rank_by must be engagement, alignment or realism"),
              (cfg.fallback in ("popular", "none"), "fallback must be popular or none"),
              (0 <= cfg.gate.min_realism <= 1, "gate.min_realism must be in [0, 1]"),
              (0 <= cfg.gate.min_alignment <= 1, "gate.min_alignment must be in [0, 1]")]
    for ok, msg in checks:
        if not ok:
            raise ValueError(f"{where}: {msg}")
    return cfg


def checkpoint_gate(fvd: float | None, cfg: GateConfig) -> str | None:
    """None when the checkpoint may serve, else the reason (fails closed when FVD is required but unknown)."""
    if cfg.max_fvd is None:
        return None
    if fvd is None:
        return "checkpoint fvd[domain] unknown: run `reelgan-eval fvd` for this checkpoint and pass --fvd-json"
    if not fvd <= cfg.max_fvd:  # NaN fails too
        return f"checkpoint fvd[domain] {fvd:.4g} > max_fvd {cfg.max_fvd:.4g}"
    return None


def gate_and_rank(rows: list[dict], cfg: SlotConfig, checkpoint_reason: str | None) -> list[dict]:
    """Apply the checkpoint gate and the per-clip gates, rank passing clips per user by `cfg.rank_by`."""
    out = []
    users = list(dict.fromkeys(r["user_id"] for r in rows))
    for user in users:
        mine = [dict(r) for r in rows if r["user_id"] == user]
        for r in mine:
            s = r["scores"]
            reasons = [checkpoint_reason] if checkpoint_reason else []
            if not s["realism"] >= cfg.gate.min_realism:
                reasons.append(f"realism {s['realism']:.3g} < min_realism {cfg.gate.min_realism:.3g}")
            if math.isnan(s["alignment"]):
                reasons.append("alignment unknown: the user has no training interactions to reveal favourites")
            elif not s["alignment"] >= cfg.gate.min_alignment:
                reasons.append(f"alignment {s['alignment']:.3g} < min_alignment {cfg.gate.min_alignment:.3g}")
            r["passed"], r["reasons"] = not reasons, reasons
        order = sorted((r for r in mine if r["passed"]), key=lambda r: (
            -r["scores"][cfg.rank_by], -r["scores"]["engagement"], -r["scores"]["alignment"], r["seed"]))
        for i, r in enumerate(order, 1):
            r["rank"] = i
        for r in mine:
            r.setdefault("rank", None)
            r["served"] = r["rank"] is not None and r["rank"] <= cfg.serve
        out += sorted(mine, key=lambda r: (r["rank"] is None, r["rank"] or 0, r["candidate"]))
    return out


def config_dict(cfg: SlotConfig) -> dict:
    return asdict(cfg)
