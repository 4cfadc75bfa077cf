"""Ops with a hand-written backward, where autograd's would dispatch several times as many ops from the host
(issue 19: on a GPU each op is a launch; the CPU's count is checked on every landing). Each returns its inputs'
dtypes and is checked against autograd in float64. Both are once differentiable: G's losses need one backward,
and R1's double backward goes through the Ds' scores only.

GRUSequence: a GRU over a whole sequence. Autograd records a dozen ops per frame forwards and about thirty
backwards (sigmoid, tanh and lerp backward, the split and chunk backward's cats, saved-tensor detaches). This runs
the same equations as nn.GRU (gates r, z, n; h' = (1 − z)·n + z·h) in 8 ops per frame forwards and 9 backwards:
every factor that does not depend on the incoming gradient is made for all frames at once before the loop, and
the weight gradients are one matmul over all frames after it. The forward runs in its input's dtype, as autocast
ran the unrolled loop (bf16 under bf16-mixed: the same numbers, bit for bit); the backward in fp32 at least.

CosineMatrix: cos(h_n, φ_m) for all pairs (the Ds' contrastive heads), in fp32 at least: 13 ops forwards and 15
backwards where F.normalize twice and a matmul dispatch about 12 and 35.
"""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable


class GRUSequence(torch.autograd.Function):
    """gi (B, T, 3H): the input projections x_t·W_ihᵀ + b_ih of every frame (gates r, z, n as in nn.GRU),
    h0 (B, H), w_hh (3H, H), b_hh (3H,) → the hidden states h_1..h_T (B, T, H)."""

    @staticmethod
    def forward(ctx, gi, h0, w_hh, b_hh):
        with torch.autocast(gi.device.type, enabled=False):     # autocast would cast the weights every frame
            return GRUSequence._forward(ctx, gi, h0, w_hh, b_hh)

    @staticmethod
    def _forward(ctx, gi, h0, w_hh, b_hh):
        dt = gi.dtype                # as autocast ran the unrolled loop: bf16 in bf16-mixed, the same numbers
        H = h0.shape[1]
        w_hh_t, b = w_hh.to(dt).t(), b_hh.to(dt)
        h = h0.to(dt)
        gi_rz, gi_n = gi.to(dt).split([2 * H, H], dim=2)
        previous, gates, candidates, gh_ns = [h], [], [], []
        for gi_rz_t, gi_n_t in zip(gi_rz.unbind(1), gi_n.unbind(1)):
            gh_rz, gh_n = torch.addmm(b, h, w_hh_t).split([2 * H, H], dim=1)
            rz = torch.sigmoid(gi_rz_t + gh_rz)
            r, z = rz.chunk(2, dim=1)
            n = torch.tanh(torch.addcmul(gi_n_t, r, gh_n))
            h = torch.lerp(n, h, z)                                      # (1 − z)·n + z·h
            previous.append(h), gates.append(rz), candidates.append(n), gh_ns.append(gh_n)
        states = torch.stack(previous, dim=1)                            # (B, T + 1, H): h_0..h_T
        ctx.save_for_backward(states, torch.stack(gates, dim=1), torch.stack(candidates, dim=1),
                              torch.stack(gh_ns, dim=1), w_hh)
        ctx.dtypes = (gi.dtype, h0.dtype)
        return states[:, 1:].to(gi.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_codes):
        with torch.autocast(grad_codes.device.type, enabled=False):
            return GRUSequence._backward(ctx, grad_codes)

    @staticmethod
    def _backward(ctx, grad_codes):
        dt = torch.promote_types(grad_codes.dtype, torch.float32)       # the backward runs in fp32 at least
        states, gates, n, gh_n = (t.to(dt) for t in ctx.saved_tensors[:4])
        w_hh = ctx.saved_tensors[4]
        H = states.shape[2]
        before = states[:, :-1]                                          # h_{t−1} for each frame
        r, z = gates.chunk(2, dim=2)
        one_minus_z = 1 - z
        # With dh the gradient reaching h_t: da_n = dh·(1 − z)(1 − n²), da_z = dh·(h_{t−1} − n)·z(1 − z),
        # da_r = da_n·gh_n·r(1 − r), and h_{t−1} gets dh·z + [da_r, da_z, da_n·r]·W_hh.
        to_n = one_minus_z * (1 - n * n)
        to_z = (before - n) * z * one_minus_z
        to_r = gh_n * r * (1 - r)
        w = w_hh.to(dt)
        dh, d_gh, d_n = None, [], []
        frames = list(zip(*(x.unbind(1) for x in (grad_codes.to(dt), to_n, to_r, to_z, r, z))))
        for grad_t, to_n_t, to_r_t, to_z_t, r_t, z_t in reversed(frames):
            dh = grad_t if dh is None else dh + grad_t
            da_n = dh * to_n_t
            dgh = torch.cat([da_n * to_r_t, dh * to_z_t, da_n * r_t], dim=1)    # d(h_{t−1}·W_hhᵀ + b_hh)
            dh = torch.addmm(dh * z_t, dgh, w)
            d_gh.append(dgh), d_n.append(da_n)
        d_gh = torch.stack(d_gh[::-1], dim=1)                            # (B, T, 3H)
        d_gi = torch.cat([d_gh[..., :2 * H], torch.stack(d_n[::-1], dim=1)], dim=2)
        d_w = d_gh.flatten(0, 1).t() @ before.flatten(0, 1)              # Σ over frames and rows: (3H, H)
        gi_dtype, h0_dtype = ctx.dtypes
        return d_gi.to(gi_dtype), dh.to(h0_dtype), d_w.to(w_hh.dtype), d_gh.sum(dim=(0, 1)).to(w_hh.dtype)


class CosineMatrix(torch.autograd.Function):
    """h (N, F), phi (M, F) → (N, M) fp32 (at least): cos(h_n, φ_m) = ĥ_n · φ̂_m, with x̂ = x / max(‖x‖, 1e-12)
    as F.normalize. Backward: dx = (dx̂ − x̂ (x̂ · dx̂)) / max(‖x‖, 1e-12), the projection off x̂."""

    @staticmethod
    def forward(ctx, h, phi):
        with torch.autocast(h.device.type, enabled=False):
            dt = torch.promote_types(h.dtype, torch.float32)
            unit, inverse = [], []
            for x in (h.to(dt), phi.to(dt)):
                inv = x.norm(dim=1, keepdim=True).clamp_min(1e-12).reciprocal()
                unit.append(x * inv), inverse.append(inv)
            ctx.save_for_backward(*unit, *inverse)
            ctx.dtypes = (h.dtype, phi.dtype)
            return unit[0] @ unit[1].t()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        with torch.autocast(grad.device.type, enabled=False):
            h_unit, phi_unit, h_inv, phi_inv = ctx.saved_tensors
            grad = grad.to(h_unit.dtype)
            dh = _off_unit(grad @ phi_unit, h_unit, h_inv, ctx.dtypes[0]) if ctx.needs_input_grad[0] else None
            dphi = _off_unit(grad.t() @ h_unit, phi_unit, phi_inv, ctx.dtypes[1]) if ctx.needs_input_grad[1] else None
            return dh, dphi


def _off_unit(d_unit: torch.Tensor, unit: torch.Tensor, inverse_norm: torch.Tensor, dtype) -> torch.Tensor:
    """The gradient of x̂ = x / ‖x‖ pulled back to x: the part of dx̂ orthogonal to x̂, over ‖x‖."""
    return ((d_unit - unit * (unit * d_unit).sum(dim=1, keepdim=True)) * inverse_norm).to(dtype)
