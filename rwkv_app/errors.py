"""Errors the model layer raises. Each message names the file, key or argument at fault."""


class RwkvError(Exception):
    """Base class for every error this package raises on purpose."""


class ConfigError(RwkvError, ValueError):
    """A config.json, or a config field, that cannot describe an RWKV-4 model."""


class CheckpointError(RwkvError):
    """A weight file that is missing, truncated, or does not match the model."""


class HubError(RwkvError):
    """A Hub repository or revision that cannot be resolved (unknown, offline, not cached)."""


class InputError(RwkvError, ValueError):
    """Bad arguments to forward or generate: token ids, state shapes, empty inputs."""
