"""The slot's configuration, quality gate and ranking (pure: no models here; the files: evaluation.slot.store).

A candidate row before gating: {user_id, candidate, seed, clip, scores: {engagement, realism, alignment, ...}}.
After `gate_and_rank`: + passed (bool), reasons (list of failed checks, each "check value op threshold"),
rank (1.. among passing clips of the user, None if failed), served (rank <= serve).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Literal

import yaml
from jsonargparse import ArgumentError, ArgumentParser
from jsonargparse.typing import ClosedUnitInterval, PositiveFloat, PositiveInt


@dataclass
class GateConfig:
    max_fvd: float | None = 250.0                # checkpoint-level fvd[domain] ceiling; None disables
    min_realism: ClosedUnitInterval = 0.01       # per-clip realism floor
    min_alignment: ClosedUnitInterval = 0.25     # per-clip alignment floor


@dataclass
class SlotConfig:
    candidates: PositiveInt = 8
    seed_base: int = 100000
    serve: PositiveInt = 1                       # also <= candidates (checked in load_slot_config)
    truncation: PositiveFloat = 0.8
    batch_size: PositiveInt = 16
    rank_by: Literal["engagement", "alignment", "realism"] = "engagement"
    fallback: Literal["popular", "none"] = "popular"
    attributes: Optional[list[str]] = None  # what alignment reads (default: every attribute the classifier has)
    gate: GateConfig = field(default_factory=GateConfig)


def _plain(value):
    """jsonargparse's restricted numbers (PositiveInt, ...) → int/float, so the config is written as before."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    return int(value) if isinstance(value, int) else float(value)


def load_slot_config(path: str | Path | None, **overrides) -> SlotConfig:
    """YAML → SlotConfig, checked by jsonargparse against the dataclasses' types; unknown keys and bad values
    fail naming the file and the field. `overrides` (None = keep) are checked like the file's values."""
    raw = {}
    if path is not None:
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ValueError(f"{path}: cannot read the slot config ({e})") from e
    where = str(path) if path else "slot config"
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a mapping of slot fields, got {type(raw).__name__}")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(SlotConfig)
    try:
        values = parser.parse_object(raw).as_dict()
    except ArgumentError as e:
        detail = " ".join(str(e).split())  # jsonargparse puts the reason on a second, indented line
        raise ValueError(f"{where}: {detail} (the fields and their meaning: configs/slot.yaml)") from None
    gate = GateConfig(**{k: _plain(v) for k, v in values.pop("gate").items()})
    cfg = SlotConfig(**{k: _plain(v) for k, v in values.items()}, gate=gate)
    if cfg.serve > cfg.candidates:
        raise ValueError(f"{where}: serve must be in 1..candidates (serve={cfg.serve}, candidates={cfg.candidates})")
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
