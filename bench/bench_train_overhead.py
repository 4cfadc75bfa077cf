"""Lightning overhead: the ReelGAN training step through pl.Trainer vs a plain PyTorch loop over the same networks.

The plain loop does exactly what ReelGAN.training_step does (one G pass, D step with lazy R1, G step with D
frozen, EMA, counters, ADA) with torch.optim and torch.autocast, no Trainer. Both run the same config, batches
and precision; rounds alternate (Lightning, plain, Lightning, ...) so background load hits both alike; the
figure is the median over rounds of per-batch time. Target: overhead ≤ 5 %.

    python bench/bench_train_overhead.py [--config demo-cpu] [--precision 32-true] [--rounds 3] [--batches 16]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time

import pytorch_lightning as pl
import torch

sys.path.insert(0, os.path.dirname(__file__))
from _train_common import build_module, load_config, loader, machine, write_result  # noqa: E402


class _Timer(pl.Callback):
    def __init__(self):
        self.times = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._t = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.times.append(time.perf_counter() - self._t)


def lightning_times(cfg, precision, batches) -> list[float]:
    module, timer = build_module(cfg), _Timer()
    trainer = pl.Trainer(max_steps=2 * batches, precision=precision, accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[timer])
    trainer.fit(module, loader(cfg, batches))
    return timer.times


@contextlib.contextmanager
def frozen(*modules):
    for m in modules:
        m.requires_grad_(False)
    try:
        yield
    finally:
        for m in modules:
            m.requires_grad_(True)


def plain_times(cfg, precision, batches) -> list[float]:
    m = build_module(cfg)
    h = m.hparams
    opt_g = torch.optim.Adam(m.generator.parameters(), lr=h.lr_g, betas=tuple(h.betas_g))
    d_params = list(m.image_discriminator.parameters()) + list(m.video_discriminator.parameters())
    opt_d = torch.optim.Adam(d_params, lr=h.lr_d, betas=tuple(h.betas_d))
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if precision == "bf16-mixed" \
        else contextlib.nullcontext
    ds = m.image_discriminator, m.video_discriminator
    times = []
    m.train()
    m.generator_ema.eval()
    for real, cond, _, _ in loader(cfg, batches):
        t = time.perf_counter()
        z = torch.randn(real.shape[0], m.generator.z_dim, generator=m.rng())
        with autocast():
            fake = m.generator(z, cond)
        with frozen(m.generator), autocast():
            d_loss, _, real_logits = m.loss.d_main(real, fake.detach(), cond)
            if int(m.batches_seen) % h.r1_interval == 0:
                d_loss = d_loss + m.loss.d_reg(real, cond)[0]
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        with frozen(*ds), autocast():
            g_loss, _ = m.loss.g_main(fake, cond)
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        m._after_step(real.shape[0], real_logits)
        times.append(time.perf_counter() - t)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="demo-cpu")
    parser.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=16, help="batches per run (the first 2 are warm-up)")
    args = parser.parse_args()
    cfg = load_config(args.config)
    info = machine()
    per_round = []
    for r in range(args.rounds):
        lt = lightning_times(cfg, args.precision, args.batches)[2:]
        pt = plain_times(cfg, args.precision, args.batches)[2:]
        per_round.append({"lightning_s_per_batch": statistics.median(lt), "plain_s_per_batch": statistics.median(pt)})
        print(f"  round {r}: lightning {per_round[-1]['lightning_s_per_batch']:.4f} s/batch, "
              f"plain {per_round[-1]['plain_s_per_batch']:.4f} s/batch", flush=True)
    light = statistics.median(x["lightning_s_per_batch"] for x in per_round)
    plain = statistics.median(x["plain_s_per_batch"] for x in per_round)
    overhead = light / plain - 1
    info["loadavg_1m_at_end"] = os.getloadavg()[0]
    print(f"{'config':10s} {'precision':11s} {'lightning s/b':>14s} {'plain s/b':>10s} {'overhead':>9s} {'target':>7s}")
    print(f"{args.config:10s} {args.precision:11s} {light:14.4f} {plain:10.4f} {100 * overhead:8.1f}% {'<= 5%':>7s}")
    path = write_result("bench_train_overhead", {
        "how": "median per-batch wall time (after 2 warm-up batches) of pl.Trainer+ReelGAN vs a plain loop doing "
               "the same step on the same networks; rounds alternate; figure = median over rounds",
        "config": args.config, "precision": args.precision, "batches": args.batches, "machine": info,
        "rounds": per_round, "lightning_s_per_batch": light, "plain_s_per_batch": plain,
        "overhead_fraction": overhead, "meets_5pct_target": overhead <= 0.05})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
