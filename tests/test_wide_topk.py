"""rwkv_app/core/wide_topk.py against torch.argmax and torch.topk: random rows, ties, -inf and NaN, every width."""
import pytest
import torch

from rwkv_app.core.wide_topk import BLOCK, row_argmax, row_topk

WIDTHS = [100, 4096, 5000, 50277, 65536]


def rows(width: int, kind: str, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed + width)
    if kind == "ties":  # few distinct values: maxima repeat across blocks and within them
        return torch.randint(-3, 4, (6, width), generator=generator).float()
    x = torch.randn(6, width, generator=generator) * 3  # (6, V)
    if kind == "special":
        x[0, ::7] = -torch.inf  # banned tokens
        x[1, -1] = 50.0  # the max in the tail (V % BLOCK values after the last whole block)
        x[2, width // 2] = torch.nan
        x[3, -1] = torch.nan  # a NaN in the tail only
        x[4] = -torch.inf
    return x


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("kind", ["random", "ties", "special"])
def test_row_argmax_is_torch_argmax(width, kind):
    x = rows(width, kind)
    assert torch.equal(row_argmax(x), x.argmax(dim=-1))


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("k", [1, 5, 41, 257])
@pytest.mark.parametrize("kind", ["random", "ties", "special"])
def test_row_topk_is_torch_topk(width, k, kind):
    x = rows(width, kind, seed=k)
    if k > width:
        return
    values, indices = row_topk(x, k)
    expected = x.topk(k, dim=-1)
    torch.testing.assert_close(values, expected.values, rtol=0, atol=0, equal_nan=True)
    if kind == "random":
        assert torch.equal(indices, expected.indices)  # distinct values: the very same indices
    picked = x.gather(-1, indices)  # (6, k) what the indices point at
    same = (picked == values) | (picked.isnan() & values.isnan())
    assert bool(same.all()) and all(len(set(row)) == k for row in indices.tolist())


def test_one_and_two_rows_match_too():
    for count in (1, 2):
        x = rows(50277, "special")[:count]
        assert torch.equal(row_argmax(x), x.argmax(dim=-1)) and 50277 % BLOCK
        torch.testing.assert_close(row_topk(x, 5)[0], x.topk(5, dim=-1).values, rtol=0, atol=0, equal_nan=True)
