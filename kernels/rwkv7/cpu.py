"""The fast RWKV-7 WKV path in plain torch ops: chunked prefill (the WY form of the delta rule) and a decode step.

Per head the reference runs S_t = S_{t-1} (D_t + a_t b_t^T) + v_t k_t^T, o_t = S_t r_t, D_t = diag(exp(log_w_t)).
Inside a chunk of L tokens that starts from state S_0, let g_t be the inclusive cumulative sum of log_w
(g_0 = 0) and u_t = S_{t-1} a_t (the delta rule's "removed value"). Unrolling,

    S_t = S_0 e^{g_t} + sum_{i<=t} (u_i b_i^T + v_i k_i^T) e^{g_t - g_i}          (decays per key channel)
    u_t = S_0 (a_t e^{g_{t-1}}) + sum_{i<t} u_i [a_t . b_i e^{g_{t-1}-g_i}] + v_i [a_t . k_i e^{g_{t-1}-g_i}]

so, with the strictly lower-triangular (L, L) matrices A_ab, A_ak of those brackets,
    U = (I - A_ab)^{-1} (a~ S_0^T + A_ak V) = W S_0^T + U~                      (the WY / UT representation)
where W = (I - A_ab)^{-1} a~ and U~ = (I - A_ab)^{-1} A_ak V depend on the chunk alone. Prefill
  1. builds W, U~ and the output's intra-chunk matrices for every chunk at once (batched matmuls, one
     unit-triangular solve);
  2. walks the chunks in order: U = W S^T + U~, S <- S e^{g_L} + U^T (b e^{g_L - g}) + V^T (k e^{g_L - g});
  3. forms every output at once: O = r~ S_0^T + B_rb U + B_rk V (r~ = r e^{g}, B_.. lower-triangular, diagonal kept).
Numerics: the pairwise decays e^{g_x - g_i} are formed as e^{g_x} * e^{-g_i} (a matmul), so within a chunk the
cumulative log decay must stay above -SAFE_EXPONENT: the chunk is shortened for the call when log_w is that
strong (x070's log_w >= -exp(-0.5) keeps CHUNK tokens safe, 64 * 0.61 = 39). All in float32 (float64 stays
float64, for gradcheck); no op is in-place, so autograd works (training uses this path).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .reference import accumulate_dtype, initial_state7

# Tokens per chunk: of 16/32/64, the fastest at B=1, T=512, H=12, N=64 on a 2-core CPU (python -m kernels.rwkv7.bench).
CHUNK = 32

# The largest e^x the factored decays form: e^60 = 1.1e26 times O(1) keys stays far from float32's 3.4e38.
SAFE_EXPONENT = 60.0

# log_w is clamped here first (a decay of e^-60 = 9e-27 per token is 0 for every purpose): every value is
# finite, and a single token is always a safe chunk.
MIN_LOG_DECAY = -SAFE_EXPONENT


def chunk_size(log_w: torch.Tensor, preferred: int | None = None) -> int:
    """`preferred` (default CHUNK), or fewer tokens where the strongest decay in log_w would overflow the factored
    form."""
    preferred = preferred or CHUNK
    strongest = -float(log_w.detach().min()) if log_w.numel() else 0.0
    if not strongest < SAFE_EXPONENT:  # NaN, -inf or a decay beyond e^-60 in one token: clamped to it
        return 1
    if strongest * preferred <= SAFE_EXPONENT:
        return preferred
    return max(1, int(SAFE_EXPONENT // strongest))


def _pack_chunks(inputs, chunk: int, acc: torch.dtype) -> torch.Tensor:
    """Six (B, T, H, N) inputs -> one contiguous (B, H, C, 6, L, N) tensor in acc (one copy), zero-padded at the
    end to C * L tokens (a zero token, log_w = 0 included, leaves the state as it was)."""
    batch, seq_len, heads, size = inputs[0].shape
    x = torch.stack([t.to(acc) for t in inputs], dim=2)  # (B, T, 6, H, N)
    pad = -seq_len % chunk
    if pad:
        x = F.pad(x, (0, 0, 0, 0, 0, 0, 0, pad))  # (B, C * L, 6, H, N)
    x = x.reshape(batch, -1, chunk, len(inputs), heads, size)  # (B, C, L, 6, H, N)
    return x.permute(0, 4, 1, 3, 2, 5).contiguous()  # (B, H, C, 6, L, N)


def _unit_lower_inverse(strict: torch.Tensor) -> torch.Tensor:
    """(I - A)^{-1} for strictly lower-triangular A (..., L, L): (I + A)(I + A^2)(I + A^4)... as A^L = 0."""
    eye = torch.eye(strict.shape[-1], dtype=strict.dtype, device=strict.device)  # (L, L)
    inverse, power = eye + strict, strict  # (..., L, L)
    for _ in range(max(strict.shape[-1] - 1, 1).bit_length() - 1):
        power = power @ power  # A^(2^j)
        inverse = inverse + inverse @ power  # times (I + A^(2^j))
    return inverse


def _intra_chunk(packed: torch.Tensor):
    """Everything that depends on one chunk alone, from the packed (B, H, C, 6, L, N) [a, r, b, k, v, log_w]."""
    shape = packed.shape
    chunk, size = shape[-2], shape[-1]
    pairs_shape = (*shape[:3], 2 * chunk, size)  # (B, H, C, 2L, N)
    g = F.pad(packed[..., 5, :, :].cumsum(dim=-2), (0, 0, 1, 0))  # (B, H, C, L + 1, N): g_0 = 0, g_1..g_L
    decay = torch.exp(g)  # (B, H, C, L + 1, N)
    grow = torch.reciprocal(decay[..., 1:, :]).unsqueeze(-3)  # (B, H, C, 1, L, N): e^{-g_t} <= e^SAFE_EXPONENT
    ar = (packed[..., 0:2, :, :] * torch.stack([decay[..., :-1, :], decay[..., 1:, :]], dim=-3))  # a~, r~
    ar = ar.reshape(pairs_shape)  # (B, H, C, 2L, N): [a_t e^{g_{t-1}}; r_t e^{g_t}]
    pairs = ar @ (packed[..., 2:4, :, :] * grow).reshape(pairs_shape).mT  # (B, H, C, 2L, 2L)
    a_ab, a_ak = pairs[..., :chunk, :chunk].tril(-1), pairs[..., :chunk, chunk:].tril(-1)  # strictly lower
    b_rb, b_rk = pairs[..., chunk:, :chunk].tril(), pairs[..., chunk:, chunk:].tril()  # diagonal kept
    v = packed[..., 4, :, :]  # (B, H, C, L, N)
    inverse = _unit_lower_inverse(a_ab)  # (B, H, C, L, L): (I - A_ab)^{-1}
    w_mat, u_tilde = inverse @ ar[..., :chunk, :], inverse @ (a_ak @ v)  # (B, H, C, L, N) each
    decay_end = decay[..., -1:, :]  # (B, H, C, 1, N): e^{g_L}
    bk_end = (packed[..., 2:4, :, :] * (decay_end.unsqueeze(-3) * grow)).reshape(pairs_shape)  # [b; k] e^{g_L-g}
    return w_mat, u_tilde, decay_end, bk_end, ar[..., chunk:, :], b_rb, b_rk


def _walk_chunks(w_mat, u_tilde, decay_end, bk_end, v, state):
    """The sequential part: the state before every chunk (B, H, C, N, N), each chunk's U, and the final state."""
    starts, removed = [], []
    for c in range(v.shape[2]):
        starts.append(state)
        u = w_mat[:, :, c] @ state.mT + u_tilde[:, :, c]  # (B, H, L, N): u_t = S_{t-1} a_t
        removed.append(u)
        uv = torch.cat([u, v[:, :, c]], dim=-2)  # (B, H, 2L, N)
        state = state * decay_end[:, :, c] + uv.mT @ bk_end[:, :, c]  # (B, H, N, N) [value, key]
    return torch.stack(starts, dim=2), torch.stack(removed, dim=2), state


def wkv7_cpu(r, log_w, k, v, a, b, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """RWKV-7 WKV over (B, T, H, N) inputs -> (output (B, T, H, N) in r's dtype, final state (B, H, N, N) float32).

    Same contract as `wkv7_reference` (state read, never written); T == 1 goes to `wkv7_cpu_step`.
    """
    batch, seq_len, heads, size = r.shape
    if seq_len == 1:
        out, final = wkv7_cpu_step(*(x[:, 0] for x in (r, log_w, k, v, a, b)), state)
        return out.unsqueeze(1), final  # (B, 1, H, N)
    acc = accumulate_dtype(r.dtype)
    chunk = min(chunk_size(log_w), seq_len)
    if chunk == 1:  # a decay beyond e^-SAFE_EXPONENT somewhere: clamp it (see MIN_LOG_DECAY)
        log_w = log_w.to(acc).clamp(min=MIN_LOG_DECAY)  # (B, T, H, N)
    packed = _pack_chunks((a, r, b, k, v, log_w), chunk, acc)  # (B, H, C, 6, L, N)
    w_mat, u_tilde, decay_end, bk_end, r_dec, b_rb, b_rk = _intra_chunk(packed)
    vc = packed[..., 4, :, :]  # (B, H, C, L, N)
    s0 = initial_state7(batch, heads, size, r.device, acc) if state is None else state.to(acc)  # (B, H, N, N)
    starts, removed, final = _walk_chunks(w_mat, u_tilde, decay_end, bk_end, vc, s0)
    out = r_dec @ starts.mT + b_rb @ removed + b_rk @ vc  # (B, H, C, L, N)
    out = out.reshape(batch, heads, -1, size)[:, :, :seq_len].transpose(1, 2)  # (B, T, H, N)
    return out.to(r.dtype), final


def wkv7_cpu_step(r, log_w, k, v, a, b, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One decode step: (B, H, N) inputs -> (output (B, H, N) in r's dtype, new state (B, H, N, N) float32)."""
    acc, out_dtype = accumulate_dtype(r.dtype), r.dtype
    batch, heads, size = r.shape
    s = initial_state7(batch, heads, size, r.device, acc) if state is None else state.to(acc)  # (B, H, N, N)
    r, log_w, k, v, a, b = (x.to(acc) for x in (r, log_w, k, v, a, b))  # (B, H, N) each
    sa = s @ a.unsqueeze(-1)  # (B, H, N, 1): S a
    s = torch.addcmul(s * torch.exp(log_w).unsqueeze(-2), sa, b.unsqueeze(-2))  # (B, H, N, N)
    s = torch.addcmul(s, v.unsqueeze(-1), k.unsqueeze(-2))  # (B, H, N, N): + v k^T
    out = (s @ r.unsqueeze(-1)).squeeze(-1)  # (B, H, N): S r
    return out.to(out_dtype), s
