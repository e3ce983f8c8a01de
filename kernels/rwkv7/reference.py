"""The float32 reference for RWKV-7's WKV (x070, "Goose"): BlinkDL's per-token delta rule, token by token.

Per head, the state S is an (N, N) matrix indexed [value channel, key channel], as in BlinkDL's code:

    S_t = S_{t-1} * w_t[None, :] + (S_{t-1} @ a_t[:, None]) @ b_t[None, :] + v_t[:, None] @ k_t[None, :]
    o_t = S_t @ r_t

where w_t = exp(log_w_t) is the per-key-channel decay in (0, 1), a_t = -kk_t and b_t = kk_t * iclr_t (the
normalised key and the in-context learning rate). This loop is the oracle every fast path is tested against.
"""
from __future__ import annotations

import torch


def accumulate_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for float32/float16/bfloat16 inputs; float64 stays float64 (the gradient tests use it)."""
    return torch.promote_types(dtype, torch.float32)


def initial_state7(batch: int, heads: int, head_size: int, device: torch.device,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The empty state: zeros, (B, H, N, N) indexed [batch, head, value channel, key channel]."""
    return torch.zeros(batch, heads, head_size, head_size, device=device, dtype=dtype)  # (B, H, N, N)


def wkv7_reference(
    r: torch.Tensor,
    log_w: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """RWKV-7 WKV over (B, T, H, N) inputs -> (output (B, T, H, N) in r's dtype, final state (B, H, N, N) float32).

    log_w is the log of the decay (negative); a and b are the delta rule's vectors (a = -kk, b = kk * iclr).
    state is an optional incoming (B, H, N, N) state; it is read, never written.
    """
    acc = accumulate_dtype(r.dtype)
    batch, seq_len, heads, head_size = r.shape
    s = initial_state7(batch, heads, head_size, r.device, acc) if state is None else state.to(acc).clone()
    outputs = []
    for t in range(seq_len):
        rt, wt, kt, vt, at, bt = (x[:, t].to(acc) for x in (r, log_w, k, v, a, b))  # (B, H, N) each
        sa = torch.einsum("bhij,bhj->bhi", s, at)  # (B, H, N): S @ a
        s = s * torch.exp(wt)[:, :, None, :] + sa[..., None] * bt[:, :, None, :] + vt[..., None] * kt[:, :, None, :]
        outputs.append(torch.einsum("bhij,bhj->bhi", s, rt))  # (B, H, N): S @ r
    output = torch.stack(outputs, dim=1).to(r.dtype)  # (B, T, H, N)
    return output, s
