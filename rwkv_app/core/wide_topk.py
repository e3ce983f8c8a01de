"""argmax and top-k along a wide last dimension (logits over a 50-65k vocabulary) through block maxima.

torch's CPU argmax and topk walk each (V,) row element by element: 0.36 and 0.57 ms for 16 x 50277 floats here,
a few percent of a 16-row decode step, while amax is vectorised (0.03 ms). So: the maxima of blocks of BLOCK
values (amax), the best blocks by their maxima (a topk over V / BLOCK values), then argmax / topk over those
blocks' values alone, with the last V % BLOCK values always among the candidates. The k largest values of a row
lie in the k blocks with the largest maxima, so the values are torch's exactly; so are the indices wherever
values differ (ties: argmax gives the first maximal index, as torch's; topk's order among equal values is
unspecified, as torch's). NaN counts as the largest value, as in torch. Tested against torch.argmax and
torch.topk (tests/test_wide_topk.py).
"""
from __future__ import annotations

import torch

BLOCK = 64
MIN_WIDTH = 4096  # narrower rows go straight to torch (the blocks would not pay)
MIN_ARGMAX_ROWS = 3  # as do argmaxes of fewer rows (measured at V = 50277: equal at 2 rows, 3x faster at 16)


def _pays(x: torch.Tensor) -> bool:
    """Whether the blocks beat torch's own: wide 2-D rows on the CPU (a GPU's argmax and topk run in parallel
    already, and each block op would be one more kernel launch)."""
    return x.dim() == 2 and x.size(-1) >= MIN_WIDTH and x.device.type == "cpu"


def _blocks(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(S, V) -> (its first V - V % BLOCK values as (S, V // BLOCK, BLOCK) blocks, where the tail starts)."""
    full = x.size(-1) - x.size(-1) % BLOCK
    return x[:, :full].reshape(x.size(0), -1, BLOCK), full  # (S, NB, BLOCK)


def row_argmax(x: torch.Tensor) -> torch.Tensor:
    """torch.argmax(x, dim=-1) for a 2-D (S, V) x: (S,) long, the first maximal index of each row."""
    if not _pays(x) or x.size(0) < MIN_ARGMAX_ROWS:
        return x.argmax(dim=-1)
    blocks, full = _blocks(x)  # (S, NB, BLOCK)
    best = blocks.amax(dim=-1).argmax(dim=-1)  # (S,) the first block holding the row's max (amax keeps NaN)
    values = blocks.gather(1, best[:, None, None].expand(-1, 1, BLOCK)).squeeze(1)  # (S, BLOCK)
    index = best * BLOCK + values.argmax(dim=-1)  # (S,)
    if full == x.size(-1):
        return index
    tail_max, tail_index = x[:, full:].max(dim=-1)  # (S,) each
    block_max = values.amax(dim=-1)  # (S,)
    tail_wins = (tail_max > block_max) | (tail_max.isnan() & ~block_max.isnan())  # (S,) strictly: first wins ties
    return torch.where(tail_wins, full + tail_index, index)  # (S,)


def row_topk(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """torch.topk(x, k, dim=-1) for a 2-D (S, V) x: (values (S, k) largest first, indices (S, k) long)."""
    vocab = x.size(-1)
    if not _pays(x) or 4 * k * BLOCK > vocab:
        return x.topk(k, dim=-1)
    blocks, full = _blocks(x)  # (S, NB, BLOCK)
    chosen = blocks.amax(dim=-1).topk(k, dim=-1).indices  # (S, k) the blocks with the k largest maxima
    offsets = torch.arange(BLOCK, device=x.device)  # (BLOCK,)
    candidates = blocks.gather(1, chosen[..., None].expand(-1, -1, BLOCK)).flatten(1)  # (S, k * BLOCK)
    where = (chosen[..., None] * BLOCK + offsets).flatten(1)  # (S, k * BLOCK) their indices in x
    if full < vocab:
        candidates = torch.cat([candidates, x[:, full:]], dim=-1)  # (S, k * BLOCK + tail)
        tail = torch.arange(full, vocab, device=x.device).expand(x.size(0), -1)  # (S, tail)
        where = torch.cat([where, tail], dim=-1)
    values, picks = candidates.topk(k, dim=-1)  # (S, k)
    return values, where.gather(-1, picks)  # (S, k) each
