"""A generated node's per-token probabilities and top alternatives, stored compactly.

As Python tuples of (token id, probability) pairs a 48-token node with 5 alternatives per token takes about
33 KiB (a tuple, an int and a float object per pair); as flat arrays it takes about 3 KiB. The arrays hold
exactly what was given (probabilities as float64, token ids as int32), so reading them back gives equal tuples.
"""
from __future__ import annotations

from array import array
from typing import Iterable, Sequence


class TokenProbs:
    """`probs[i]`: the model's probability of token i; `top(i)`: its alternatives as ((id, prob), ...).

    Alternatives are kept flat: token i's are ids[offsets[i]:offsets[i + 1]] with their probabilities.
    """

    __slots__ = ("_probs", "_ids", "_values", "_offsets")

    def __init__(self, probs: Iterable[float], top: Iterable[Sequence[tuple[int, float]]]):
        self._probs = array("d", probs)  # (n,)
        self._ids, self._values, self._offsets = array("i"), array("d"), array("I", [0])  # (m,), (m,), (n + 1,)
        for alternatives in top:
            for token, prob in alternatives:
                self._ids.append(token)
                self._values.append(prob)
            self._offsets.append(len(self._ids))
        if len(self._offsets) != len(self._probs) + 1:
            raise ValueError(f"{len(self._probs)} probabilities but {len(self._offsets) - 1} lists of alternatives")

    def __len__(self) -> int:
        return len(self._probs)

    def probs(self) -> tuple[float, ...]:
        return tuple(self._probs)

    def prob(self, position: int) -> float:
        return self._probs[position]

    def top(self, position: int) -> tuple[tuple[int, float], ...]:
        begin, end = self._offsets[position], self._offsets[position + 1]
        return tuple(zip(self._ids[begin:end], self._values[begin:end]))

    def tops(self) -> tuple[tuple[tuple[int, float], ...], ...]:
        return tuple(self.top(i) for i in range(len(self)))

    def nbytes(self) -> int:
        """The arrays' payload (what the node's probabilities cost, besides a few fixed headers)."""
        return sum(a.itemsize * len(a) for a in (self._probs, self._ids, self._values, self._offsets))
