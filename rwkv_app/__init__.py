"""RWKV Playground: an RWKV-4 model with Hugging Face's API, and the services the web app runs on."""
from .config import RwkvConfig
from .errors import CheckpointError, ConfigError, HubError, InputError, RwkvError
from .modeling import RwkvForCausalLM, RwkvModel
from .stopping import StoppingCriteria

__all__ = [
    "RwkvConfig", "RwkvModel", "RwkvForCausalLM", "StoppingCriteria",
    "RwkvError", "ConfigError", "CheckpointError", "HubError", "InputError",
]
