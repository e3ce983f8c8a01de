"""Choosing the next token for many rows at once: the engine's batched sampler.

`choose_rows(samplers, logits)` gives, for a (B, V) batch of raw logits and one `Sampler` per row, the tokens
that each `Sampler.choose(logits[i])` would give, in a handful of batched tensor operations instead of B passes.
Rows may have different settings: penalties are gathered into one flat index over the batch, temperature and the
truncations take one parameter per row (a filter runs only on the rows that use it), greedy rows take the argmax,
rows with a top_k draw among their k candidates instead of the whole vocabulary, and sampling rows draw from
their own generator, one draw each, as alone. Nothing a row gets depends on the other rows.
`Sampler.choose` (rwkv_app/core/sampling.py) is the per-row reference this is tested against, token for token;
the candidates' softmax adds in another order than the reference's, so a draw could differ at an exact tie of
the last bit, never otherwise.
"""
from __future__ import annotations

import math

import torch

from .sampling import Sampler
from .wide_topk import row_argmax, row_topk


def choose_rows(samplers: list[Sampler], logits: torch.Tensor) -> torch.Tensor:
    """(B, V) raw logits, one sampler per row -> (B,) token ids (long), as each sampler would choose alone."""
    scores = adjust_rows(samplers, logits)  # (B, V) penalties, suppression and bias applied
    drawn = [i for i, s in enumerate(samplers) if not s.settings.greedy]
    if len(drawn) < len(samplers):
        tokens = row_argmax(scores)  # (B,) the greedy rows' picks
    else:
        tokens = torch.empty(len(samplers), dtype=torch.long, device=logits.device)  # (B,) every row draws
    narrow = [i for i in drawn if 0 < samplers[i].settings.top_k <= CANDIDATES]
    for rows, draw in ((narrow, draw_among_top_k), ([i for i in drawn if i not in narrow], draw_full)):
        if len(rows) == len(samplers):  # every row: no gather (the draws do not write into scores)
            tokens = draw(scores, samplers)  # (B,)
        elif rows:
            index = torch.tensor(rows, device=logits.device)  # (S,)
            tokens[index] = draw(scores.index_select(0, index), [samplers[i] for i in rows])  # (S,)
    return tokens


def draw_full(scores: torch.Tensor, samplers: list[Sampler]) -> torch.Tensor:
    """(S, V) adjusted scores -> (S,) drawn tokens, every transform over the whole vocabulary."""
    warped = warp_rows(scores, [s.settings for s in samplers])  # (S, V)
    return sample_rows(warped.softmax(dim=-1), [s.generator for s in samplers])  # (S,)


def draw_among_top_k(scores: torch.Tensor, samplers: list[Sampler]) -> torch.Tensor:
    """draw_full for rows whose top_k <= CANDIDATES: after temperature, only each row's top k can survive, so the
    other filters and the draw run on those k candidates (in vocabulary order, as the reference's cumulative sum
    sees them: the cut tokens add exact zeros there) instead of on V. The same token as draw_full, up to the
    rounding of the softmax's sum (its order of addition differs). Rows whose k-th value is tied beyond the
    candidates (half-precision logits, banned tokens) take draw_full.

    Only the candidates are divided by the temperature: dividing by a positive number keeps the order, and a
    tie its rounding makes at a row's cut shows at the (kmax + 1)-th value, which is checked; so the top kmax
    raw scores are the reference's candidates, found without a (S, V) division and comparison."""
    settings = [s.settings for s in samplers]
    kmax = max(s.top_k for s in settings)
    take = min(kmax + 1, scores.size(-1))  # one beyond the candidates, to see ties at the cut
    values, ids = row_topk(scores, take)  # (S, take) largest first
    values = values / row_param([max(s.temperature, 1e-6) for s in settings], scores.device)  # (S, take)
    kth = values.gather(-1, torch.tensor([s.top_k - 1 for s in settings], device=scores.device)[:, None])  # (S, 1)
    if take > kmax and bool((values[:, kmax:] >= kth).any()):  # ties at a row's k-th value (or -inf there)
        return draw_full(scores, samplers)  # keep more tokens than the candidates hold: the whole vocabulary
    values, ids = values[:, :kmax], ids[:, :kmax]  # (S, kmax)
    values = values.masked_fill(values < kth, -math.inf)  # (S, kmax) the reference's top-k cut
    ids, order = ids.sort(dim=-1)  # (S, kmax) vocabulary order
    values = values.gather(-1, order)  # (S, kmax)
    warped = warp_rows(values, [s.replace(temperature=1.0, top_k=0) for s in settings])  # (S, kmax)
    picks = sample_rows(warped.softmax(dim=-1), [s.generator for s in samplers])  # (S,) candidate positions
    return ids.gather(-1, picks[:, None]).squeeze(-1)  # (S,)


CANDIDATES = 256  # rows with top_k up to this draw among their top k (draw_among_top_k)


def adjust_rows(samplers: list[Sampler], logits: torch.Tensor) -> torch.Tensor:
    """Sampler.adjust for every row: repetition, presence and frequency penalties, the first step's suppressed
    tokens and the logit bias; (B, V) float32, a new tensor."""
    batch, vocab = logits.shape
    flat = logits.float().flatten().clone()  # (B * V,) row i at [i * V, (i + 1) * V)
    seen = [(i, s.seen, s.settings.repetition_penalty) for i, s in enumerate(samplers)
            if s.seen is not None and s.seen.ids.numel()]
    if seen:
        index = torch.cat([o.ids + i * vocab for i, o, _ in seen])  # (n,)
        penalty = torch.cat([torch.full_like(o.counts, p) for _, o, p in seen])  # (n,) float32
        picked = flat[index]  # (n,)
        flat[index] = torch.where(picked > 0, picked / penalty, picked * penalty)
    counted = [(i, s.counted, s.settings) for i, s in enumerate(samplers)
               if s.counted is not None and s.counted.ids.numel()]
    if counted:
        index = torch.cat([o.ids + i * vocab for i, o, _ in counted])  # (n,)
        presence = torch.cat([torch.full_like(o.counts, st.presence_penalty) for _, o, st in counted])  # (n,)
        frequency = torch.cat([torch.full_like(o.counts, st.frequency_penalty) for _, o, st in counted])  # (n,)
        counts = torch.cat([o.counts for _, o, _ in counted])  # (n,)
        flat.index_add_(0, index, -(presence + frequency * counts))
    suppress = [t + i * vocab for i, s in enumerate(samplers) if s.steps == 0 for t in s.begin_suppress]
    if suppress:
        flat[torch.tensor(suppress, device=flat.device)] = -math.inf
    scores = flat.view(batch, vocab)  # (B, V)
    biased = [i for i, s in enumerate(samplers) if s.bias is not None]
    if biased:
        index = torch.tensor(biased, device=logits.device)  # (b,)
        bias = torch.stack([samplers[i].bias for i in biased])  # (b, V)
        scores[index] = scores.index_select(0, index) + bias
    return scores


def row_param(values: list[float], device: torch.device) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32, device=device)[:, None]  # (S, 1)


def warp_rows(logits: torch.Tensor, settings: list) -> torch.Tensor:
    """warp_logits with each row's own temperature, top-k, top-p, min-p and typical-p; (S, V) float32."""
    device = logits.device
    logits = logits / row_param([max(s.temperature, 1e-6) for s in settings], device)  # (S, V)
    logits = top_k_rows(logits, [s.top_k for s in settings])
    for used, apply, values in ((lambda s: s.top_p < 1.0, top_p_rows, [s.top_p for s in settings]),
                                (lambda s: s.min_p > 0.0, min_p_rows, [s.min_p for s in settings]),
                                (lambda s: s.typical_p < 1.0, typical_rows, [s.typical_p for s in settings])):
        rows = [i for i, s in enumerate(settings) if used(s)]
        if len(rows) == len(settings):  # every row: no gather and scatter
            logits = apply(logits, row_param(values, device))
        elif rows:
            index = torch.tensor(rows, device=device)  # (R,)
            logits[index] = apply(logits.index_select(0, index), row_param([values[i] for i in rows], device))
    return logits


def top_k_rows(logits: torch.Tensor, ks: list[int]) -> torch.Tensor:
    """Per row, keep the k largest logits (k = 0 or k >= V: the row is left alone); (S, V)."""
    vocab = logits.size(-1)
    rows = [i for i, k in enumerate(ks) if 0 < k < vocab]
    if not rows:
        return logits
    every = len(rows) == len(ks)
    index = None if every else torch.tensor(rows, device=logits.device)  # (R,)
    sub = logits if every else logits.index_select(0, index)  # (R, V)
    top = sub.topk(max(ks[i] for i in rows), dim=-1).values  # (R, kmax) largest first
    kth = top.gather(-1, torch.tensor([ks[i] - 1 for i in rows], device=logits.device)[:, None])  # (R, 1)
    if every:
        return sub.masked_fill_(sub < kth, -math.inf)
    logits[index] = sub.masked_fill_(sub < kth, -math.inf)
    return logits


def top_p_rows(logits: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """top_p_filter with one p per row, p (R, 1) < 1."""
    probs = logits.softmax(dim=-1)  # (R, V)
    return logits.masked_fill(~keep_rows_until_mass(probs, probs, p), -math.inf)  # (R, V)


def min_p_rows(logits: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """min_p_filter with one p per row, p (R, 1) > 0."""
    probs = logits.softmax(dim=-1)  # (R, V)
    return logits.masked_fill(probs < p * probs.amax(dim=-1, keepdim=True), -math.inf)  # (R, V)


def typical_rows(logits: torch.Tensor, mass: torch.Tensor) -> torch.Tensor:
    """typical_filter with one mass per row, mass (R, 1) < 1."""
    log_probs = logits.log_softmax(dim=-1)  # (R, V)
    probs = log_probs.exp()  # (R, V)
    entropy = -(probs * log_probs).nansum(dim=-1, keepdim=True)  # (R, 1)
    typicality = -(-log_probs - entropy).abs()  # (R, V)
    return logits.masked_fill(~keep_rows_until_mass(typicality, probs, mass), -math.inf)  # (R, V)


def keep_rows_until_mass(key: torch.Tensor, probs: torch.Tensor, mass: torch.Tensor) -> torch.Tensor:
    """keep_until_mass row by row (each row decides alone whether its top 64 suffice), in two batched passes:
    the rows whose top 64 reach their mass, then the others over the whole vocabulary; (R, V) bool."""
    k = min(64, key.size(-1))
    order = key.topk(k, dim=-1).indices  # (R, k)
    top_probs = probs.gather(-1, order)  # (R, k)
    enough = top_probs.sum(dim=-1) >= mass[:, 0]  # (R,)
    keep = torch.zeros_like(probs, dtype=torch.bool).scatter(-1, order, top_probs.cumsum(-1) - top_probs < mass)
    if k < key.size(-1) and not bool(enough.all()):
        rest = (~enough).nonzero().flatten()  # (r,) rows that need the full sort
        order = key[rest].topk(key.size(-1), dim=-1).indices  # (r, V)
        top_probs = probs[rest].gather(-1, order)  # (r, V)
        full = top_probs.cumsum(dim=-1) - top_probs < mass[rest]  # (r, V)
        keep[rest] = torch.zeros_like(full).scatter(-1, order, full)
    return keep  # (R, V)


def sample_rows(probs: torch.Tensor, generators: list[torch.Generator | None]) -> torch.Tensor:
    """sampling.sample for each row with its own generator: one float64 draw per row, in row order; (S,)."""
    draws = [torch.rand((1,), generator=g, device=probs.device, dtype=torch.float64) for g in generators]
    cdf = probs.double().cumsum(dim=-1)  # (S, V)
    draw = torch.stack(draws)  # (S, 1)
    token = torch.searchsorted(cdf, draw * cdf[:, -1:], right=True)  # (S, 1)
    return token.clamp_(max=probs.size(-1) - 1).squeeze(-1)  # (S,)
