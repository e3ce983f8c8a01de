"""Errors the model layer raises. Each message names the file, key or argument at fault."""


class RwkvError(Exception):
    """Base class for every error this package raises on purpose."""


class ConfigError(RwkvError, ValueError):
    """A config.json, or a config field, that cannot describe an RWKV-4 model."""


class CheckpointError(RwkvError):
    """A weight file that is missing, truncated, or does not match the model."""


class HubError(RwkvError):
    """A Hub repository or revision that cannot be resolved (unknown, offline, not cached)."""


class NotCachedError(HubError):
    """A checkpoint that is not in the Hub cache while the Hub is out of reach (offline mode or no network).
    The message is for the operator (cache path, switches); `repo_label` names what was asked for."""

    def __init__(self, message: str, repo_label: str):
        super().__init__(message)
        self.repo_label = repo_label


class WrongModelError(RwkvError):
    """A file made for another model than the one running (a session file, a state file of another family).
    `needed` names, for people, the model that opens it ("the RWKV-7 model demo-rwkv7"), so an app can say what
    to load first."""

    def __init__(self, message: str, needed: str):
        super().__init__(message)
        self.needed = needed


class InputError(RwkvError, ValueError):
    """Bad arguments to forward or generate: token ids, state shapes, empty inputs."""


def check_token_range(ids, vocab_size: int, what: str, error: type[Exception] = InputError) -> None:
    """Raise `error` naming the first id of `ids` (a tensor or a sequence of ints) outside [0, vocab_size): the
    one token-id range check, wherever ids come in (forward, the engine, the session tree, tokenizers)."""
    if hasattr(ids, "aminmax"):  # a tensor: one device sync for both ends
        if ids.numel() == 0:
            return
        low, high = (int(v) for v in ids.aminmax())
        bad = low if low < 0 else high if high >= vocab_size else None
    else:
        bad = next((t for t in ids if not 0 <= t < vocab_size), None)
    if bad is not None:
        raise error(f"{what}: {out_of_vocabulary(bad, vocab_size)}")


def out_of_vocabulary(token: int, vocab_size: int) -> str:
    return f"token id {token} is outside the vocabulary [0, {vocab_size})"
