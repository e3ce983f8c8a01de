"""The fast WKV path in plain torch ops: chunked prefill and a single-step decode.

A segment of tokens is summarised like a state, (num, den, max) normalised by e^max. Segment A
followed by segment B of length L_B combines as
    m = maximum(mA + L_B * w, mB),  num = e^(mA + L_B*w - m) numA + e^(mB - m) numB  (den alike),
which is associative. Prefill cuts time into N chunks of L tokens and
  1. summarises each chunk in one vectorised reduction,
  2. scans those summaries (Hillis-Steele) into the state before each chunk,
  3. runs the reference recurrence over the L positions of all N chunks at once.
That is O(B*T*C) memory and L + log2(N) Python steps instead of T. No op is in-place, so autograd works.
"""
from __future__ import annotations

import torch

from .reference import State, accumulate_dtype, initial_state

# Tokens per chunk: of 16/32/64, the fastest at B=1, T=512, C=768 on a 2-core CPU.
CHUNK = 16

# time_decay is clamped before the exp, so w = -exp(time_decay) >= -9.3e29 stays finite (-inf in the
# reference), -1e38 + T * w cannot reach -inf, and the gradient is 0 rather than 0 * inf = NaN.
MAX_TIME_DECAY = 69.0

# Exponents are clamped at -60 before the exp: torch's CPU exp is ~50x slower on inputs that underflow
# (below about -87), and e^-60 = 9e-27 is nothing next to the weight-1 term every combine keeps.
MIN_EXPONENT = -60.0


def _exp(x: torch.Tensor) -> torch.Tensor:
    """exp(x) for x <= 0, with the underflowing tail lifted to e^MIN_EXPONENT (see above)."""
    return torch.exp(x.clamp(min=MIN_EXPONENT))


def _decay(time_decay: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """w = -exp(time_decay), finite even where time_decay is huge."""
    return -torch.exp(time_decay.to(dtype).clamp(max=MAX_TIME_DECAY))  # (C,)


def _combine(earlier: State, later: State, decay: torch.Tensor) -> State:
    """Segment `earlier` followed by `later`; decay = len(later) * w, broadcast against the max."""
    num_a, den_a, max_a = earlier
    num_b, den_b, max_b = later
    max_a = max_a + decay
    max_ = torch.maximum(max_a, max_b)
    e_a = _exp(max_a - max_)
    e_b = _exp(max_b - max_)
    return torch.addcmul(e_b * num_b, e_a, num_a), torch.addcmul(e_b * den_b, e_a, den_a), max_


def _token(
    state: State, k: torch.Tensor, v: torch.Tensor, w: torch.Tensor, u: torch.Tensor
) -> tuple[torch.Tensor, State]:
    """The reference loop's body: output for key/value k, v (..., C) and the state after them."""
    num, den, max_ = state  # (..., C) each
    uk = u + k  # (..., C)
    q = torch.maximum(max_, uk)  # (..., C)
    e1 = _exp(max_ - q)  # (..., C)
    e2 = _exp(uk - q)  # (..., C)
    output = torch.addcmul(e2 * v, e1, num) / torch.addcmul(e2, e1, den)  # (..., C)
    decayed = max_ + w  # (..., C)
    q = torch.maximum(decayed, k)  # (..., C)
    e1 = _exp(decayed - q)  # (..., C)
    e2 = _exp(k - q)  # (..., C)
    return output, (torch.addcmul(e2 * v, e1, num), torch.addcmul(e2, e1, den), q)


def _chunk_summaries(key: torch.Tensor, value: torch.Tensor, w: torch.Tensor) -> State:
    """Each chunk of key/value (B, N, L, C) as one segment, (B, N, C) each: token j weighs e^(k_j + (L-1-j) w)."""
    chunk = key.shape[2]
    steps = torch.arange(chunk - 1, -1, -1, device=w.device, dtype=w.dtype)  # (L,)
    logits = key + steps[:, None] * w  # (B, N, L, C)
    max_ = logits.amax(dim=2)  # (B, N, C)
    weights = _exp(logits - max_.unsqueeze(2))  # (B, N, L, C)
    return (weights * value).sum(dim=2), weights.sum(dim=2), max_


def _states_before_chunks(summaries: State, w: torch.Tensor, chunk: int, state: State) -> State:
    """The state before each of N chunks, (B, N, C) each: an inclusive Hillis-Steele scan over
    [incoming state, chunk 0, ..., chunk N-2]. Before the round with offset s, every element c >= s
    summarises exactly s chunks, so it takes element c - s decayed by s * L * w."""
    scan = tuple(torch.cat([s.unsqueeze(1), x], dim=1) for s, x in zip(state, summaries))  # (B, N, C)
    offset = 1
    while offset < scan[0].shape[1]:
        merged = _combine(
            tuple(x[:, :-offset] for x in scan), tuple(x[:, offset:] for x in scan), offset * chunk * w
        )  # (B, N - s, C) each
        scan = tuple(torch.cat([x[:, :offset], y], dim=1) for x, y in zip(scan, merged))  # (B, N, C)
        offset *= 2
    return scan


def _run_chunks(
    key: torch.Tensor, value: torch.Tensor, w: torch.Tensor, u: torch.Tensor, before: State, last: int
) -> tuple[torch.Tensor, State]:
    """The reference recurrence over the L positions of all chunks at once, each chunk starting from
    its state in `before`. Returns the output (B, N, L, C) and the state after position `last` of
    the final chunk."""
    state, outputs = before, []
    for i in range(key.shape[2]):
        output, state = _token(state, key[:, :, i], value[:, :, i], w, u)  # (B, N, C)
        outputs.append(output)
        if i == last:
            final = tuple(x[:, -1] for x in state)  # (B, C) each
    return torch.stack(outputs, dim=2), final  # (B, N, L, C)


def _chunked(x: torch.Tensor, chunk: int) -> torch.Tensor:
    """(B, T, C) -> (B, N, L, C), zero-padding T at the end up to N * L (padding is never read back)."""
    batch, seq_len, channels = x.shape
    pad = -seq_len % chunk
    if pad:
        x = torch.nn.functional.pad(x, (0, 0, 0, pad))  # (B, N * L, C)
    return x.reshape(batch, -1, chunk, channels)  # (B, N, L, C)


def wkv_cpu(
    time_decay: torch.Tensor,
    time_first: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    state: State | None = None,
) -> tuple[torch.Tensor, State]:
    """WKV over key/value (B, T, C) -> (output (B, T, C) in key's dtype, final (num, den, max) (B, C) float32).

    Same contract as `wkv_reference`; T == 1 goes to `wkv_cpu_step`.
    """
    batch, seq_len, channels = key.shape
    if seq_len == 1:
        output, state = wkv_cpu_step(time_decay, time_first, key[:, 0], value[:, 0], state)
        return output.unsqueeze(1), state  # (B, 1, C)
    acc = accumulate_dtype(key.dtype)
    w = _decay(time_decay, acc)  # (C,)
    u = time_first.to(acc)  # (C,)
    if state is None:
        state = initial_state(batch, channels, key.device, acc)
    state = tuple(s.to(acc) for s in state)  # (B, C) each
    chunk = min(CHUNK, seq_len)
    k = _chunked(key.to(acc), chunk)  # (B, N, L, C)
    v = _chunked(value.to(acc), chunk)  # (B, N, L, C)
    summaries = _chunk_summaries(k[:, :-1], v[:, :-1], w)  # (B, N - 1, C) each; the last is not needed
    before = _states_before_chunks(summaries, w, chunk, state)  # (B, N, C) each
    output, final = _run_chunks(k, v, w, u, before, last=(seq_len - 1) % chunk)  # (B, N, L, C)
    output = output.reshape(batch, -1, channels)[:, :seq_len]  # (B, T, C)
    return output.to(key.dtype), final


def wkv_cpu_step(
    time_decay: torch.Tensor,
    time_first: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    state: State | None = None,
) -> tuple[torch.Tensor, State]:
    """One decode step: key/value (B, C) -> (output (B, C) in key's dtype, new (num, den, max) (B, C) float32)."""
    acc = accumulate_dtype(key.dtype)
    if state is None:
        state = initial_state(key.shape[0], key.shape[1], key.device, acc)
    state = tuple(s.to(acc) for s in state)  # (B, C) each
    output, state = _token(state, key.to(acc), value.to(acc), _decay(time_decay, acc), time_first.to(acc))
    return output.to(key.dtype), state  # (B, C)
