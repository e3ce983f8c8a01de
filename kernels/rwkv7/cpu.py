"""The fast RWKV-7 WKV path in plain torch ops: chunked prefill (the WY form of the delta rule) and a decode step.

Per head the reference runs S_t = S_{t-1} (D_t + a_t b_t^T) + v_t k_t^T, o_t = S_t r_t, D_t = diag(exp(log_w_t)).
Inside a chunk of L tokens that starts from state S_0, let g_t be the inclusive cumulative sum of log_w
(g_0 = 0) and u_t = S_{t-1} a_t (the delta rule's "removed value"). Unrolling,

    S_t = S_0 e^{g_t} + sum_{i<=t} (u_i b_i^T + v_i k_i^T) e^{g_t - g_i}          (decays per key channel)
    u_t = S_0 (a_t e^{g_{t-1}}) + sum_{i<t} u_i [a_t . b_i e^{g_{t-1}-g_i}] + v_i [a_t . k_i e^{g_{t-1}-g_i}]

so, with the strictly lower-triangular (L, L) matrices A_ab, A_ak of those brackets,
    U = (I - A_ab)^{-1} (a~ S_0^T + A_ak V) = W S_0^T + U~                      (the WY / UT representation)
where W = (I - A_ab)^{-1} a~ and U~ = (I - A_ab)^{-1} A_ak V depend on the chunk alone. Prefill cuts time into
chunks and takes SEGMENT_CHUNKS of them at a time (so the working set stays in cache); per segment it
  1. builds, for all its chunks at once (batched matmuls; the unit-triangular inverse as log2(L) products), W, U~,
     and the output map O = r~ S_0^T + B_rb U + B_rk V = Q S_0^T + P (r~ = r e^{g}; Q = r~ + B_rb W,
     P = B_rb U~ + B_rk V; the B matrices lower-triangular with the diagonal);
  2. walks its chunks in order, three ops each: [U; O] = [W; Q] S^T + [U~; P] in one matmul, then
     S <- S e^{g_L} + U^T (b e^{g_L - g}) + V^T (k e^{g_L - g}), the last term built in step 1.
Numerics: the pairwise decays e^{g_x - g_i} are formed as e^{g_x} * e^{-g_i} (a matmul), so within a chunk the
cumulative log decay must stay above -SAFE_EXPONENT: the chunk is shortened for the call when log_w is that
strong (x070's log_w >= -exp(-0.5) keeps up to 98 tokens safe: 16 * 0.61 = 9.7). All in float32 (float64 stays
float64, for gradcheck); no op is in-place, so autograd works (training uses this path).
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .reference import accumulate_dtype, initial_state7

# Tokens per chunk, and chunks per segment (the unit whose intra-chunk terms are built at once): the fastest at
# B=1, T=512, H=12, N=64 on a 2-core CPU (of L = 8/16/32, 1 to 32 chunks; python -m kernels.rwkv7.bench --chunk L).
CHUNK = 16
SEGMENT_CHUNKS = 8

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
    """Six (B, T, H, N) inputs -> one contiguous chunk-major (C, B, H, 6, L, N) tensor in acc (one copy),
    zero-padded at the end to C * L tokens (a zero token, log_w = 0 included, leaves the state as it was)."""
    batch, seq_len, heads, size = inputs[0].shape
    pad = -seq_len % chunk
    if pad:
        inputs = [F.pad(x, (0, 0, 0, 0, 0, pad)) for x in inputs]  # (B, C * L, H, N) each
    views = [x.to(acc).reshape(batch, -1, chunk, heads, size).permute(1, 0, 3, 2, 4) for x in inputs]  # (C, B, H, L, N)
    return torch.stack(views, dim=3)  # (C, B, H, 6, L, N)


def _unit_lower_inverse(strict: torch.Tensor) -> torch.Tensor:
    """(I - A)^{-1} for strictly lower-triangular A (..., L, L): (I + A)(I + A^2)(I + A^4)... as A^L = 0."""
    eye = torch.eye(strict.shape[-1], dtype=strict.dtype, device=strict.device)  # (L, L)
    inverse, power = eye + strict, strict  # (..., L, L)
    for _ in range(max(strict.shape[-1] - 1, 1).bit_length() - 1):
        power = power @ power  # A^(2^j)
        inverse = inverse + inverse @ power  # times (I + A^(2^j))
    return inverse


@functools.lru_cache(maxsize=16)
def _pair_mask(chunk: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(2L, 2L): which [a~; r~] x [b; k] pairs count. u_t sees tokens before t, o_t tokens up to t."""
    strict = torch.ones(chunk, chunk, dtype=dtype, device=device).tril(-1)  # (L, L)
    upto = strict + torch.eye(chunk, dtype=dtype, device=device)  # (L, L)
    return torch.cat([strict.repeat(1, 2), upto.repeat(1, 2)], dim=0)  # (2L, 2L)


def _intra_chunk(packed: torch.Tensor):
    """Everything that depends on one chunk alone, from packed (..., 6, L, N) [a, r, b, k, v, log_w] chunks:
    the maps ([W; Q], [U~; P]) with [U; O] = [W; Q] S_0^T + [U~; P], e^{g_L}, b e^{g_L - g} and V^T (k e^{g_L - g})."""
    shape = packed.shape
    chunk, size = shape[-2], shape[-1]
    pairs_shape = (*shape[:-3], 2 * chunk, size)  # (..., 2L, N)
    g = F.pad(packed[..., 5, :, :].cumsum(dim=-2), (0, 0, 1, 0))  # (C, B, H, L + 1, N): g_0 = 0, g_1..g_L
    decay = torch.exp(g)  # (C, B, H, L + 1, N)
    grow = torch.reciprocal(decay[..., 1:, :]).unsqueeze(-3)  # (C, B, H, 1, L, N): e^{-g_t} <= e^SAFE_EXPONENT
    windows = decay.unfold(-2, chunk, 1).transpose(-1, -2)  # (C, B, H, 2, L, N): e^{g_{t-1}}, e^{g_t}
    ar = (packed[..., 0:2, :, :] * windows).reshape(pairs_shape)  # (C, B, H, 2L, N): [a~; r~]
    pairs = ar @ (packed[..., 2:4, :, :] * grow).reshape(pairs_shape).mT  # (C, B, H, 2L, 2L)
    pairs = pairs * _pair_mask(chunk, pairs.dtype, pairs.device)  # [[A_ab, A_ak], [B_rb, B_rk]]
    v = packed[..., 4, :, :]  # (C, B, H, L, N)
    inverse = _unit_lower_inverse(pairs[..., :chunk, :chunk])  # (C, B, H, L, L): (I - A_ab)^{-1}
    wu = inverse @ torch.cat([ar[..., :chunk, :], pairs[..., :chunk, chunk:] @ v], dim=-1)  # (C, B, H, L, 2N)
    w_mat, u_tilde = wu[..., :size], wu[..., size:]  # (C, B, H, L, N) each: U = W S_0^T + U~
    decay_end = decay[..., -1:, :]  # (..., 1, N): e^{g_L}
    bk_end = packed[..., 2:4, :, :] * (decay_end.unsqueeze(-3) * grow)  # (..., 2, L, N): [b; k] e^{g_L - g}
    inject = v.mT @ bk_end[..., 1, :, :]  # (..., N, N): V^T (k e^{g_L - g}), the update's part that S does not touch
    query = ar[..., chunk:, :] + pairs[..., chunk:, :chunk] @ w_mat  # (..., L, N): Q = r~ + B_rb W
    local = pairs[..., chunk:, :] @ torch.cat([u_tilde, v], dim=-2)  # (..., L, N): P = B_rb U~ + B_rk V
    maps = torch.cat([w_mat, query], dim=-2), torch.cat([u_tilde, local], dim=-2)  # (..., 2L, N) each
    return maps, decay_end, bk_end[..., 0, :, :], inject


def _walk_chunks(maps, decay_end, b_end, inject, state):
    """The sequential part over chunk-major (C, B, H, ., N) tensors. Per chunk, one matmul gives both
    [U; O] = [W; Q] S^T + [U~; P], then S <- S e^{g_L} + U^T (b e^{g_L - g}) + V^T (k e^{g_L - g}) (the last term
    is `inject`). Returns the outputs (C, B, H, L, N) and the state after all chunks (B, H, N, N)."""
    batch, heads, size, _ = state.shape
    chunk = b_end.shape[-2]
    flat = (batch * heads, -1, size)  # (B, H, ., N) -> (B * H, ., N) for baddbmm
    s, outputs = state.reshape(flat), []  # (B * H, N, N)
    for c in range(b_end.shape[0]):
        removed_out = torch.baddbmm(maps[1][c].reshape(flat), maps[0][c].reshape(flat), s.mT)  # (B * H, 2L, N)
        outputs.append(removed_out[:, chunk:])  # (B * H, L, N): o_t = S_t r_t
        decayed = torch.addcmul(inject[c].reshape(flat), s, decay_end[c].reshape(flat))  # (B * H, N, N)
        s = torch.baddbmm(decayed, removed_out[:, :chunk].mT, b_end[c].reshape(flat))  # (B * H, N, N)
    out = torch.stack(outputs).reshape(len(outputs), batch, heads, chunk, size)  # (C, B, H, L, N)
    return out, s.reshape(batch, heads, size, size)


def _run_segment(packed: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunks (C, B, H, 6, L, N) from `state` -> output (C, B, H, L, N) and the state after them."""
    return _walk_chunks(*_intra_chunk(packed), state)


def wkv7_cpu(r, log_w, k, v, a, b, state: torch.Tensor | None = None, *, chunk: int | None = None,
             out_state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """RWKV-7 WKV over (B, T, H, N) inputs -> (output (B, T, H, N) in r's dtype, final state (B, H, N, N) float32).

    Same contract as `wkv7_reference` (state read, never written); T == 1 goes to `wkv7_cpu_step`.
    chunk: tokens per chunk (default CHUNK; shortened where log_w is strong, see chunk_size).
    out_state: optional (B, H, N, N) float32 tensor the final state is written into and returned as.
    """
    batch, seq_len, heads, size = r.shape
    if seq_len == 1:
        out, final = wkv7_cpu_step(*(x[:, 0] for x in (r, log_w, k, v, a, b)), state, out_state)
        return out.unsqueeze(1), final  # (B, 1, H, N)
    acc = accumulate_dtype(r.dtype)
    chunk = min(chunk_size(log_w, chunk), seq_len)
    if chunk == 1:  # a decay beyond e^-SAFE_EXPONENT somewhere: clamp it (see MIN_LOG_DECAY)
        log_w = log_w.to(acc).clamp(min=MIN_LOG_DECAY)  # (B, T, H, N)
    packed = _pack_chunks((a, r, b, k, v, log_w), chunk, acc)  # (C, B, H, 6, L, N)
    final = initial_state7(batch, heads, size, r.device, acc) if state is None else state.to(acc)  # (B, H, N, N)
    outputs = []
    for start in range(0, packed.shape[0], SEGMENT_CHUNKS):  # a few chunks at a time: the working set stays in cache
        out, final = _run_segment(packed[start:start + SEGMENT_CHUNKS], final)  # (C', B, H, L, N)
        outputs.append(out)
    out = torch.cat(outputs).permute(1, 0, 3, 2, 4).reshape(batch, -1, heads, size)[:, :seq_len]  # (B, T, H, N)
    return out.to(r.dtype), final if out_state is None else out_state.copy_(final)


def wkv7_cpu_step(r, log_w, k, v, a, b, state: torch.Tensor | None = None,
                  out_state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One decode step: (B, H, N) inputs -> (output (B, H, N) in r's dtype, new state (B, H, N, N) float32).

    Two passes over S: one product reads it for both S a and S (w * r), one op writes S * w (into `out_state`
    when given, which must not overlap `state`), and the rank-2 update lands in place on the written copy. The
    output needs no third pass: S' r = S (w * r) + (S a)(b . r) + v (k . r). Measured at B=16, H=12, N=64 on 2
    cores: 10.5 ms for 12 layers against 18.6 for the five-pass form (S a, S * w, two addcmuls, S' r, a stack),
    the (2, N) x (N, N)^T product being ~4x faster than (N, N) x (N, 1) (python -m kernels.rwkv7.bench)."""
    acc, out_dtype = accumulate_dtype(r.dtype), r.dtype
    batch, heads, size = r.shape
    s = initial_state7(batch, heads, size, r.device, acc) if state is None else state.to(acc)  # (B, H, N, N)
    r, log_w, k, v, a, b = (x.to(acc) for x in (r, log_w, k, v, a, b))  # (B, H, N) each
    w = torch.exp(log_w)  # (B, H, N) decay per key channel
    flat = (batch * heads, -1, size)  # (B, H, ., N) -> (B * H, ., N) for the batched products
    probes = torch.stack([a, w * r], dim=-2).reshape(flat)  # (B * H, 2, N)
    sa, swr = (probes @ s.reshape(flat).mT).view(batch, heads, 2, size).unbind(-2)  # (B, H, N) each: S a, S (w r)
    out = swr + sa * (b * r).sum(-1, keepdim=True) + v * (k * r).sum(-1, keepdim=True)  # (B, H, N): S' r
    left = torch.stack([sa, v], dim=-1).reshape(batch * heads, size, 2)  # (B * H, N, 2)
    right = torch.stack([b, k], dim=-2).reshape(flat)  # (B * H, 2, N)
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (s, w, left, right))
    if out_state is None or grad:  # out= ops do not record gradients
        new = torch.baddbmm((s * w.unsqueeze(-2)).reshape(flat), left, right)  # (B * H, N, N)
        if out_state is None:
            return out.to(out_dtype), new.view(batch, heads, size, size)
        out_state.view(flat).copy_(new)
    else:
        torch.mul(s, w.unsqueeze(-2), out=out_state).view(flat).baddbmm_(left, right)  # (B * H, N, N)
    return out.to(out_dtype), out_state
