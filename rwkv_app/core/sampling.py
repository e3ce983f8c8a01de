"""Choosing the next token: the settings, small typed logit transforms, and a per-generation `Sampler`.

The order, as in Hugging Face's generate with ChatRWKV's penalties added:
  logits -> repetition penalty (HF) -> presence/frequency penalties (ChatRWKV, decaying counts)
         -> logit bias and bans -> argmax (greedy)
                                 | temperature -> top-k -> top-p -> min-p -> typical-p -> sample
The transforms work on (..., V) logits; a `Sampler` handles one sequence (one row), so a generation
samples the same tokens whether it runs alone or batched with others.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from dataclasses import replace as dataclass_replace
from typing import Any, Iterable, Mapping

import torch

from ..errors import InputError, out_of_vocabulary
from .wide_topk import row_topk


class SettingsError(InputError):
    """A sampling setting that is unknown, of the wrong type, or out of range; `key` names it."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key
        self.reason = message


@dataclass(frozen=True)
class SamplingSettings:
    """The one set of defaults (greedy, no filters, no penalties); presets are deltas over it."""

    do_sample: bool = False  # False, or temperature == 0: greedy (argmax after penalties and bias)
    temperature: float = 1.0
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1: off
    min_p: float = 0.0  # 0: off
    typical_p: float = 1.0  # 1: off
    repetition_penalty: float = 1.0  # HF: over prompt + generated tokens; 1: off
    presence_penalty: float = 0.0  # ChatRWKV alpha_presence, over generated tokens
    frequency_penalty: float = 0.0  # ChatRWKV alpha_frequency
    penalty_decay: float = 1.0  # ChatRWKV: every step the counts are multiplied by this
    banned_tokens: tuple[int, ...] = ()
    begin_suppress_tokens: tuple[int, ...] = ()  # HF's: banned at the first generated token only
    logit_bias: dict[int, float] = field(default_factory=dict)
    seed: int | None = None  # None: drawn from torch's global generator (so torch.manual_seed applies)
    max_new_tokens: int = 20  # Hugging Face's default length
    stop: tuple[str, ...] = ()  # stop strings; the text is cut before them

    def __post_init__(self) -> None:
        for name, value in normalize(self).items():
            object.__setattr__(self, name, value)
        for name, (ok, expected) in CHECKS.items():
            if not ok(getattr(self, name)):
                raise SettingsError(name, f"expected {expected}, got {getattr(self, name)!r}")

    @property
    def greedy(self) -> bool:
        return not self.do_sample or self.temperature == 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SamplingSettings:
        return cls().replace(**data)

    def replace(self, **changes: Any) -> SamplingSettings:
        """A copy with `changes` applied; an unknown key is an error naming it."""
        unknown = sorted(set(changes) - set(FIELD_NAMES))
        if unknown:
            raise SettingsError(unknown[0], f"unknown sampling setting (known: {', '.join(FIELD_NAMES)})")
        return dataclass_replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "banned_tokens": list(self.banned_tokens),
                "begin_suppress_tokens": list(self.begin_suppress_tokens), "stop": list(self.stop)}


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


CHECKS = {
    "do_sample": (lambda v: isinstance(v, bool), "true or false"),
    "temperature": (lambda v: is_number(v) and 0 <= v < math.inf, "a number >= 0 (0: greedy)"),
    "top_k": (lambda v: is_count(v) and v >= 0, "an integer >= 0 (0: off)"),
    "top_p": (lambda v: is_number(v) and 0 < v <= 1, "a number in (0, 1]"),
    "min_p": (lambda v: is_number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "typical_p": (lambda v: is_number(v) and 0 < v <= 1, "a number in (0, 1]"),
    "repetition_penalty": (lambda v: is_number(v) and 0 < v < math.inf, "a number > 0 (1: off)"),
    "presence_penalty": (lambda v: is_number(v) and abs(v) < math.inf, "a finite number"),
    "frequency_penalty": (lambda v: is_number(v) and abs(v) < math.inf, "a finite number"),
    "penalty_decay": (lambda v: is_number(v) and 0 < v <= 1, "a number in (0, 1]"),
    "banned_tokens": (lambda v: all(is_count(t) and t >= 0 for t in v), "a list of token ids >= 0"),
    "begin_suppress_tokens": (lambda v: all(is_count(t) and t >= 0 for t in v), "a list of token ids >= 0"),
    "logit_bias": (lambda v: all(is_count(t) and t >= 0 and is_number(b) for t, b in v.items()),
                   "a mapping of token id >= 0 -> number"),
    "seed": (lambda v: v is None or (is_count(v) and 0 <= v < 2 ** 64), "null or an integer in [0, 2**64)"),
    "max_new_tokens": (lambda v: is_count(v) and v >= 1, "an integer >= 1"),
    "stop": (lambda v: all(isinstance(s, str) and s for s in v), "a list of non-empty strings"),
}
FIELD_NAMES = tuple(CHECKS)


def normalize(settings: SamplingSettings) -> dict[str, Any]:
    """Lists from YAML/JSON become tuples, a single stop string a 1-tuple, "187" bias keys ints."""
    def as_tuple(value: Any) -> Any:
        if isinstance(value, str):
            return (value,)
        return tuple(value) if isinstance(value, (list, tuple)) else value

    bias = settings.logit_bias
    if not isinstance(bias, Mapping):
        raise SettingsError("logit_bias", f"expected a mapping of token id -> number, got {bias!r}")
    bias = {int(k) if isinstance(k, str) and k.strip().isdigit() else k: v for k, v in bias.items()}
    for name in ("banned_tokens", "begin_suppress_tokens"):
        if not isinstance(getattr(settings, name), (list, tuple)):
            raise SettingsError(name, f"expected a list of token ids, got {getattr(settings, name)!r}")
    if not isinstance(settings.stop, (str, list, tuple)):
        raise SettingsError("stop", f"expected a list of strings, got {settings.stop!r}")
    return {"banned_tokens": as_tuple(settings.banned_tokens), "stop": as_tuple(settings.stop),
            "begin_suppress_tokens": as_tuple(settings.begin_suppress_tokens),
            "logit_bias": dict(bias)}


# ---- penalties: a (V,) row and the (n,) distinct tokens met so far ----------------------------------
def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """HF's: the logit of each token in `seen` (n,) is divided by `penalty` when positive, multiplied when negative."""
    picked = logits.gather(-1, seen)  # (n,)
    return logits.scatter(-1, seen, torch.where(picked > 0, picked / penalty, picked * penalty))  # (V,)


def apply_presence_frequency(logits: torch.Tensor, tokens: torch.Tensor, counts: torch.Tensor, presence: float,
                             frequency: float) -> torch.Tensor:
    """ChatRWKV's: each counted token's logit -= presence + frequency * its (decayed) count."""
    return logits.index_add(-1, tokens, -(presence + frequency * counts))  # (V,)


def apply_penalties(logits: torch.Tensor, seen: Occurrences | None, counted: Occurrences | None,
                    settings: SamplingSettings) -> torch.Tensor:
    if seen is not None and seen.ids.numel():
        logits = apply_repetition_penalty(logits, seen.ids, settings.repetition_penalty)  # (V,)
    if counted is not None and counted.ids.numel():
        logits = apply_presence_frequency(logits, counted.ids, counted.counts, settings.presence_penalty,
                                          settings.frequency_penalty)  # (V,)
    return logits


class Occurrences:
    """Distinct tokens met so far and a count for each, kept sparse: (n,) ids and (n,) counts.

    A penalty then touches n entries instead of the whole vocabulary, like ChatRWKV's `occurrence` dict.
    """

    def __init__(self, device: torch.device):
        self.slot: dict[int, int] = {}
        self.ids = torch.zeros(0, dtype=torch.long, device=device)  # (n,)
        self.counts = torch.zeros(0, dtype=torch.float32, device=device)  # (n,)

    def add(self, token: int) -> None:
        if token in self.slot:
            self.counts[self.slot[token]] += 1.0
            return
        self.slot[token] = len(self.slot)
        self.ids = torch.cat([self.ids, self.ids.new_tensor([token])])  # (n + 1,)
        self.counts = torch.cat([self.counts, self.counts.new_ones(1)])  # (n + 1,)

    def decay(self, factor: float) -> None:
        if factor != 1.0:
            self.counts.mul_(factor)

    def dense(self, vocab_size: int) -> torch.Tensor:
        """(V,) counts, zero for tokens never met."""
        return self.counts.new_zeros(vocab_size).index_add(0, self.ids, self.counts)


# ---- logit transforms: (..., V) in, (..., V) out ---------------------------------------------------
def bias_vector(settings: SamplingSettings, vocab_size: int, device: torch.device | str) -> torch.Tensor | None:
    """(V,) additive bias with banned tokens at -inf; None when there is neither bias nor ban."""
    if not settings.logit_bias and not settings.banned_tokens:
        return None
    bad = [t for t in (*settings.logit_bias, *settings.banned_tokens) if t >= vocab_size]
    if bad:
        raise SettingsError("logit_bias" if bad[0] in settings.logit_bias else "banned_tokens",
                            out_of_vocabulary(bad[0], vocab_size))
    bias = torch.zeros(vocab_size, dtype=torch.float32)  # (V,)
    for token, value in settings.logit_bias.items():
        bias[token] = float(value)
    bias[list(settings.banned_tokens)] = -math.inf
    if bool(torch.isneginf(bias).all()):
        raise SettingsError("banned_tokens", "every token in the vocabulary is banned")
    return bias.to(device)


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    if k <= 0 or k >= logits.size(-1):
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (..., 1)
    return logits.masked_fill(logits < kth, -math.inf)  # (..., V)


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probability reaches `p` (always at least one)."""
    if p >= 1.0:
        return logits
    probs = logits.softmax(dim=-1)  # (..., V)
    return logits.masked_fill(~keep_until_mass(probs, probs, p), -math.inf)  # (..., V)


def min_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Drop tokens less likely than `p` times the most likely one."""
    if p <= 0.0:
        return logits
    probs = logits.softmax(dim=-1)  # (..., V)
    return logits.masked_fill(probs < p * probs.amax(dim=-1, keepdim=True), -math.inf)  # (..., V)


def typical_filter(logits: torch.Tensor, mass: float) -> torch.Tensor:
    """Locally typical sampling: keep the tokens whose surprise is closest to the entropy, up to `mass`."""
    if mass >= 1.0:
        return logits
    log_probs = logits.log_softmax(dim=-1)  # (..., V)
    probs = log_probs.exp()  # (..., V)
    entropy = -(probs * log_probs).nansum(dim=-1, keepdim=True)  # (..., 1)
    typicality = -(-log_probs - entropy).abs()  # (..., V) higher: more typical
    return logits.masked_fill(~keep_until_mass(typicality, probs, mass), -math.inf)  # (..., V)


def keep_until_mass(key: torch.Tensor, probs: torch.Tensor, mass: float) -> torch.Tensor:
    """(..., V) bool: taking tokens by `key`, highest first, keep each while the mass before it is below `mass`.

    A full sort of 50k entries costs milliseconds on a CPU, so look at the top 64 by key first and sort
    everything only when they do not reach `mass` (a trained model's next-token distribution rarely needs it).
    """
    for k in (min(64, key.size(-1)), key.size(-1)):
        order = key.topk(k, dim=-1).indices  # (..., k) highest key first
        top_probs = probs.gather(-1, order)  # (..., k)
        if k == key.size(-1) or bool((top_probs.sum(dim=-1) >= mass).all()):
            break
    keep = top_probs.cumsum(dim=-1) - top_probs < mass  # (..., k) the mass before it is below `mass`
    return torch.zeros_like(probs, dtype=torch.bool).scatter(-1, order, keep)  # (..., V)


def warp_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                min_p: float = 0.0, typical_p: float = 1.0) -> torch.Tensor:
    """Temperature, then the truncations in HF's order; (..., V) float32 logits, -inf where cut."""
    logits = logits.float() / max(temperature, 1e-6)  # (..., V)
    logits = top_k_filter(logits, top_k)
    logits = top_p_filter(logits, top_p)
    logits = min_p_filter(logits, min_p)
    return typical_filter(logits, typical_p)  # (..., V)


def logits_to_probs(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                    min_p: float = 0.0, typical_p: float = 1.0) -> torch.Tensor:
    """Temperature, then the truncations in HF's order; (..., V) float32 probabilities summing to 1."""
    return warp_logits(logits, temperature, top_k, top_p, min_p, typical_p).softmax(dim=-1)  # (..., V)


def sample(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token id per row of (..., V) probabilities -> (...,), by inverting the cumulative distribution
    at one uniform draw per row (torch.multinomial is ten times slower on a CPU for a 50k vocabulary)."""
    cdf = probs.double().cumsum(dim=-1)  # (..., V)
    draw = torch.rand(probs.shape[:-1] + (1,), generator=generator, device=probs.device,
                      dtype=torch.float64)  # (..., 1)
    token = torch.searchsorted(cdf, draw * cdf[..., -1:], right=True)  # (..., 1) first index whose cdf passes the draw
    return token.clamp_(max=probs.size(-1) - 1).squeeze(-1)  # (...,)


def token_probs(logits: torch.Tensor, tokens: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The model's own probabilities (softmax of raw logits): of `tokens` (B,), and the top k (B, k) ids/probs."""
    probs = logits.float().softmax(dim=-1)  # (B, V)
    chosen = probs.gather(-1, tokens[:, None]).squeeze(-1)  # (B,)
    values, indices = row_topk(probs, min(k, probs.size(-1)))  # (B, k)
    return chosen, indices, values


def fresh_seed() -> int:
    """A seed drawn from torch's global generator: torch.manual_seed(...) makes unseeded runs repeat too."""
    return int(torch.randint(0, 2 ** 62, (1,)).item())


class Sampler:
    """One sequence's sampling: its settings, its random generator, its penalty history.

    `choose(logits)` picks the next token from a (V,) row; `observe(token)` records it. Presence and
    frequency penalties count generated tokens only, as in ChatRWKV, and never count tokens marked in
    `exempt_from_penalty` (V,) (whitespace and digits; ChatRWKV's chat.py counts every token, its rwkv
    package skips these for the frequency part only); the repetition penalty covers the prompt too, as in HF.
    """

    def __init__(self, settings: SamplingSettings, vocab_size: int, prompt_ids: Iterable[int] = (),
                 exempt_from_penalty: torch.Tensor | None = None, device: torch.device | str = "cpu"):
        self.settings, self.vocab_size, self.device = settings, vocab_size, torch.device(device)
        self.seed = settings.seed if settings.seed is not None else (None if settings.greedy else fresh_seed())
        self.generator = None if settings.greedy else torch.Generator(self.device).manual_seed(self.seed)
        self.bias = bias_vector(settings, vocab_size, self.device)  # (V,) or None
        self.begin_suppress = suppress_list(settings.begin_suppress_tokens, vocab_size)
        self.steps = 0  # tokens observed so far
        self.seen = self.counted = None
        if settings.repetition_penalty != 1.0:
            self.seen = Occurrences(self.device)
            for token in dict.fromkeys(int(t) for t in prompt_ids):
                self.seen.add(token)
        if settings.presence_penalty != 0.0 or settings.frequency_penalty != 0.0:
            self.counted = Occurrences(self.device)
            self.exempt = exempt_ids(exempt_from_penalty, vocab_size)

    def adjust(self, logits: torch.Tensor) -> torch.Tensor:
        """Penalties and bias applied to a (V,) row of raw logits, in float32."""
        logits = apply_penalties(logits.float(), self.seen, self.counted, self.settings)  # (V,)
        if self.steps == 0 and self.begin_suppress:
            logits = logits.index_fill(0, torch.tensor(self.begin_suppress, device=logits.device), -math.inf)  # (V,)
        return logits if self.bias is None else logits + self.bias  # (V,)

    def choose(self, logits: torch.Tensor) -> torch.Tensor:
        """The next token for this sequence, a 0-d LongTensor on the logits' device."""
        return self.pick(self.process(logits))  # ()

    def process(self, logits: torch.Tensor) -> torch.Tensor:
        """(V,) raw logits -> the scores the token is picked from (HF's processed `scores`): penalties and bias,
        then, when sampling, temperature and truncation (-inf where cut)."""
        adjusted = self.adjust(logits)  # (V,)
        if self.settings.greedy:
            return adjusted
        s = self.settings
        return warp_logits(adjusted, s.temperature, s.top_k, s.top_p, s.min_p, s.typical_p)  # (V,)

    def pick(self, scores: torch.Tensor) -> torch.Tensor:
        """The token from processed (V,) scores: their argmax when greedy, else a draw from their softmax."""
        if self.settings.greedy:
            return scores.argmax(dim=-1)  # ()
        return sample(scores.softmax(dim=-1), self.generator)  # ()

    def observe(self, token: int) -> None:
        """Record a generated token: decay the counts, then count it (unless exempt)."""
        self.steps += 1
        if self.seen is not None and token not in self.seen.slot:
            self.seen.add(token)
        if self.counted is not None:
            self.counted.decay(self.settings.penalty_decay)
            if token not in self.exempt:
                self.counted.add(token)


def suppress_list(tokens: tuple[int, ...], vocab_size: int) -> list[int]:
    bad = [t for t in tokens if t >= vocab_size]
    if bad:
        raise SettingsError("begin_suppress_tokens", out_of_vocabulary(bad[0], vocab_size))
    return list(tokens)


def exempt_ids(mask: torch.Tensor | None, vocab_size: int) -> frozenset[int]:
    if mask is None:
        return frozenset()
    if tuple(mask.shape) != (vocab_size,) or mask.dtype != torch.bool:
        raise InputError(f"exempt_from_penalty must be a bool tensor of shape ({vocab_size},), "
                         f"got {mask.dtype} {tuple(mask.shape)}")
    return frozenset(torch.nonzero(mask).flatten().tolist())
