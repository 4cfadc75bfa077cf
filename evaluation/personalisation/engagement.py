"""The engagement model: P(click) and P(purchase) of a user for a clip, from the clip's pixels and the user's vector.

    clip  ──► frozen domain classifier ──► tokens (T, h, w, C) + attribute probabilities (A,)
    user condition (E,) L2-normalised ──► query ──► spatiotemporal attention over the T·h·w tokens (learned
          time + space positions): what this user looks at in this clip
    clip summary [attributes, attended] ──► rank-r factors z;  user ──► factors u_click, u_buy
    logits = (u_click·z, u_buy·z) + clip bias   (click, purchase-given-click)
    P(click) = σ(l_click);  P(purchase) = σ(l_click) · σ(l_purchase|click)   (so P(purchase) ≤ P(click))

It reads clips, not clip ids, so it scores generated clips as well as catalogue ones: the recommendation slot
ranks candidates with `EngagementScorer.score`. Training uses `split=train` interactions only; each (user, clip)
pair is labelled by its strongest event, and clips the user never touched are sampled as negatives.
The held-out protocol and baselines are in `engagement_eval.py`.
"""
from __future__ import annotations

import os
from pathlib import Path
import time
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from data.contract import EVENT_WEIGHTS
from data.io import track
from data.sparse import PairSet
from evaluation.features.artifacts import load_model_file, save_model_file, tensors_sha256
from evaluation.features.domain import DomainClassifier, domain_from_config

FORMAT = "reelgan-engagement/1"


def engagement_path(dataset: str | os.PathLike) -> Path:
    """Where `reelgan-eval engagement` keeps a dataset's model: its cache folder (never inside the dataset)."""
    from evaluation.cli_common import artefact_dir

    return artefact_dir(dataset) / "engagement.safetensors"

CLICK_MIN = EVENT_WEIGHTS["click"]        # a pair counts as clicked from this event strength on
PURCHASE_MIN = EVENT_WEIGHTS["purchase"]


class EngagementModel(nn.Module):
    """Scores (clip, user condition) pairs.

    Clip inputs come from the frozen domain classifier: `tokens` (B, T, h, w, token_dim) from its feature map,
    and `attrs` (B, A) its concatenated attribute probabilities (an explicit "what is this product" summary).
    The user meets the clip through a low-rank bilinear form: few users (hundreds) must not be memorised one
    by one, and the same preference direction must apply to every clip that shows the same thing.
    """

    def __init__(
        self,
        token_dim: int,       # channels of the domain feature map
        attr_dim: int,        # total number of attribute classes (sum of the head vocabularies)
        cond_dim: int,        # user condition width E
        frames: int,          # T of the token grid
        grid: list[int],      # (h, w) of the token grid
        dim: int = 32,        # attention width
        heads: int = 4,       # attention heads
        rank: int = 16,       # rank of the user × clip interaction
    ):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width dim={dim} must be a multiple of heads={heads}")
        self.config = {"token_dim": token_dim, "attr_dim": attr_dim, "cond_dim": cond_dim, "frames": frames,
                       "grid": list(grid), "dim": dim, "heads": heads, "rank": rank}
        self.token_in = nn.Sequential(nn.Linear(token_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.time_pos = nn.Parameter(torch.randn(frames, dim) * 0.02)
        self.space_pos = nn.Parameter(torch.randn(grid[0] * grid[1], dim) * 0.02)
        self.key_value = nn.Linear(dim, 2 * dim)   # per clip token: computed once per clip, not per pair
        self.query = nn.Linear(cond_dim, dim)      # per user
        self.attn_out = nn.Linear(dim, dim)
        self.user_factors = nn.Linear(cond_dim, 2 * rank)             # click and purchase preference directions
        self.clip_factors = nn.Linear(attr_dim + dim, rank)
        self.clip_bias = nn.Linear(attr_dim + dim, 2)                   # how engaging a clip is for anyone

    def encode_clips(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, T, h, w, C) → keys and values (B, T·h·w, 2·dim), with time and space positions.
        User-independent, so a catalogue is encoded once and scored for any number of users."""
        b, t, h, w, _ = tokens.shape
        x = self.token_in(tokens) + self.time_pos[:t, None, None] + self.space_pos.view(1, 1, h, w, -1)
        return self.key_value(x.reshape(b, t * h * w, -1))

    def attend(self, encoded: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Multi-head attention of each user's query over its clip's spatiotemporal tokens → (B, dim)."""
        b, n, _ = encoded.shape
        heads, dim = self.config["heads"], self.config["dim"]
        key, value = encoded.view(b, n, 2, heads, dim // heads).unbind(2)           # (B, L, H, d)
        q = self.query(cond).view(b, heads, dim // heads)                            # (B, H, d)
        weights = torch.einsum("bhd,blhd->bhl", q, key).div((dim // heads) ** 0.5).softmax(-1)
        return self.attn_out(torch.einsum("bhl,blhd->bhd", weights, value).reshape(b, dim))

    def forward(self, encoded: torch.Tensor, attrs: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """encoded (B, L, 2·dim), attrs (B, A), cond (B, E) → logits (B, 2): [click, purchase-given-click]."""
        clip = torch.cat([attrs, self.attend(encoded, cond)], dim=1)   # what this user sees in this clip
        z = self.clip_factors(clip)
        u_click, u_buy = self.user_factors(cond).chunk(2, dim=1)
        return torch.stack([(u_click * z).sum(1), (u_buy * z).sum(1)], dim=1) + self.clip_bias(clip)


def probabilities(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """logits (B, 2) → (P(click) (B,), P(purchase) (B,))."""
    p_click = torch.sigmoid(logits[:, 0])
    return p_click, p_click * torch.sigmoid(logits[:, 1])


@dataclass
class EngagementTrainConfig:
    dim: int = 32             # attention width
    heads: int = 4
    rank: int = 16            # rank of the user × clip interaction
    steps: int = 600          # optimiser steps (passes over the pairs follow from the data size)
    negatives: int = 2        # untouched clips sampled per observed pair, per pass
    batch_size: int = 256
    lr: float = 1e-2          # AdamW, cosine decay to 0
    weight_decay: float = 1e-4
    seed: int = 0


@torch.no_grad()
def clip_inputs(domain: DomainClassifier, video: torch.Tensor, batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Any clip batch (uint8 or float [-1, 1], any size) → (tokens (B, T, h, w, C), attrs (B, A)), float32 CPU.

    attrs: the domain heads' softmax probabilities, concatenated in head order.
    """
    domain.eval()
    tokens, attrs = [], []
    for i in range(0, video.shape[0], batch_size):
        x = domain.prepare(video[i : i + batch_size])
        fmap = domain.feature_map(x)
        tokens.append(fmap.float().cpu())
        _, logits = domain.read(fmap, x)
        attrs.append(torch.cat([lg.softmax(-1) for lg in logits.values()], dim=1).float().cpu())
    return torch.cat(tokens), torch.cat(attrs)


def observed_pairs(train: pd.DataFrame, users: set[str], clip_index: dict[str, int]) -> pd.DataFrame:
    """Strongest event per (user, clip) among valid train rows of users that have a vector."""
    rows = train[train["valid"] & train["user_id"].isin(users) & train["clip_id"].isin(clip_index)]
    return rows.groupby(["user_id", "clip_id"], as_index=False, sort=True)["weight"].max()


def train_engagement_model(interactions, embeddings, domain: DomainClassifier, clip_ids: list[str],
                           video: torch.Tensor, config: EngagementTrainConfig | None = None,
                           progress: bool = False) -> tuple[EngagementModel, dict]:
    """Fit on train interactions.

    interactions: `load_dataset(root).interactions`; embeddings: PreferenceEmbeddings; clip_ids and video
    (uint8 (N, T, C, H, W)) are the catalogue clips. Returns (model in eval mode, training summary).
    """
    cfg = config or EngagementTrainConfig()
    t0 = time.perf_counter()
    clip_index = {c: i for i, c in enumerate(clip_ids)}
    pairs = observed_pairs(interactions[interactions["split"] == "train"], set(embeddings.user_ids), clip_index)
    if pairs.empty:
        raise ValueError("no train interactions between users with a preference vector and decoded clips: "
                         "check interactions.csv (split=train rows) and the embeddings file")
    user_list = sorted(pairs["user_id"].unique())
    u_index = {u: i for i, u in enumerate(user_list)}
    conds = embeddings.conditions(user_list)  # (U, E) L2-normalised
    u = torch.tensor(pairs["user_id"].map(u_index).to_numpy())
    c = torch.tensor(pairs["clip_id"].map(clip_index).to_numpy())
    w = torch.tensor(pairs["weight"].to_numpy(), dtype=torch.float32)
    touched = PairSet(u, c, len(clip_ids))  # sparse: a users × clips matrix does not fit at shop scale

    gen = torch.Generator().manual_seed(cfg.seed)
    tokens, attrs = clip_inputs(domain, video)
    with torch.random.fork_rng():  # seeded parameter init without touching the caller's RNG state
        torch.manual_seed(cfg.seed)
        model = EngagementModel(domain.token_dim, attrs.shape[1], embeddings.dim, tokens.shape[1],
                                list(tokens.shape[2:4]), cfg.dim, cfg.heads, cfg.rank)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    losses = []
    for eu, ec, ew in track(_pair_batches(u, c, w, touched, cfg, gen), "train engagement model", progress, cfg.steps):
        model.train()
        clips_b, inverse = torch.unique(ec, return_inverse=True)
        encoded = model.encode_clips(tokens[clips_b])[inverse]  # each clip encoded once per step
        logits = model(encoded, attrs[ec], conds[eu])
        click = (ew >= CLICK_MIN).float()
        loss = F.binary_cross_entropy_with_logits(logits[:, 0], click)
        if click.any():  # purchase given click, on clicked pairs only
            bought = (ew >= PURCHASE_MIN).float()
            loss = loss + F.binary_cross_entropy_with_logits(logits[click > 0, 1], bought[click > 0])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    summary = {"pairs": int(len(pairs)), "users": len(user_list), "clips": len(clip_ids),
               "click_rate": float((w >= CLICK_MIN).float().mean()), "final_loss": float(np.mean(losses[-10:])),
               "seconds": time.perf_counter() - t0, "config": asdict(cfg)}
    return model, summary


def _pair_batches(u, c, w, touched, cfg: EngagementTrainConfig, gen: torch.Generator):
    """`cfg.steps` batches of (user idx, clip idx, strength): every observed pair once per pass, plus
    `cfg.negatives` clips per pair the user never touched in train (resampled each pass; collisions dropped)."""
    done = 0
    while True:
        nu = u.repeat(cfg.negatives)
        nc = torch.randint(touched.n_clips, (len(nu),), generator=gen)
        keep = ~touched.contains(nu, nc)
        eu, ec = torch.cat([u, nu[keep]]), torch.cat([c, nc[keep]])
        ew = torch.cat([w, torch.zeros(int(keep.sum()))])
        order = torch.randperm(len(eu), generator=gen)
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            yield eu[idx], ec[idx], ew[idx]
            done += 1
            if done >= cfg.steps:
                return


class EngagementScorer:
    """A trained engagement model with its domain classifier: scores any (user condition, clip) pairs."""

    def __init__(self, model: EngagementModel, domain: DomainClassifier, info: dict | None = None):
        self.model = model.eval()
        self.domain = domain.eval()
        self.info = dict(info or {})

    @torch.no_grad()
    def score(self, user_conditions: torch.Tensor, clips: torch.Tensor, batch_size: int = 64) -> dict[str, np.ndarray]:
        """user_conditions float (N, E) L2-normalised (PreferenceEmbeddings.conditions);
        clips (N, T, C, H, W): float in [-1, 1] (generator output) or uint8; any T, H, W.
        → {"click": float64 (N,), "purchase": float64 (N,)} probabilities, row i for pair i."""
        cond = torch.as_tensor(user_conditions, dtype=torch.float32)
        if cond.ndim != 2 or cond.shape[1] != self.model.config["cond_dim"]:
            raise ValueError(f"user_conditions must be (N, {self.model.config['cond_dim']}), got {tuple(cond.shape)}")
        if clips.ndim != 5 or clips.shape[0] != cond.shape[0]:
            raise ValueError(f"clips must be (N, T, C, H, W) with N = {cond.shape[0]} (one per condition), "
                             f"got {tuple(clips.shape)}")
        click, purchase = [], []
        for i in range(0, cond.shape[0], batch_size):
            tokens, attrs = clip_inputs(self.domain, clips[i : i + batch_size])
            out = self.score_inputs(tokens, attrs, cond[i : i + batch_size])
            click.append(out["click"])
            purchase.append(out["purchase"])
        return {"click": np.concatenate(click), "purchase": np.concatenate(purchase)}

    @torch.no_grad()
    def score_inputs(self, tokens: torch.Tensor, attrs: torch.Tensor, user_conditions: torch.Tensor) -> dict[str, np.ndarray]:
        """As `score`, from precomputed `clip_inputs` (tokens (N, T, h, w, C), attrs (N, A))."""
        dev = next(self.model.parameters()).device
        cond = torch.as_tensor(user_conditions, dtype=torch.float32).to(dev)
        logits = self.model(self.model.encode_clips(tokens.to(dev)), attrs.to(dev), cond)
        pc, pp = probabilities(logits)
        return {"click": pc.double().cpu().numpy(), "purchase": pp.double().cpu().numpy()}

    def save(self, path: str | os.PathLike, extra: dict | None = None) -> str:
        """Atomic safetensors write of both networks + configs; returns the sha256 of all tensors."""
        tensors = {f"engagement.{k}": v for k, v in self.model.state_dict().items()}
        tensors.update({f"domain.{k}": v for k, v in self.domain.state_dict().items()})
        config = {"engagement": self.model.config, "domain": self.domain.config}
        info = {**self.info, **(extra or {}), "domain_sha256": tensors_sha256(self.domain.state_dict())}
        return save_model_file(path, FORMAT, tensors, config, info)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu") -> "EngagementScorer":
        tensors, config, extra, digest = load_model_file(path, FORMAT)
        model = EngagementModel(**config["engagement"])
        domain = domain_from_config(config["domain"])
        model.load_state_dict({k[len("engagement."):]: v for k, v in tensors.items() if k.startswith("engagement.")})
        domain.load_state_dict({k[len("domain."):]: v for k, v in tensors.items() if k.startswith("domain.")})
        return cls(model.to(device), domain.to(device), {**extra, "sha256": digest, "path": str(path)})
