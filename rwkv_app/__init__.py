"""RWKV Playground: an RWKV-4 model with Hugging Face's API, and the services the web app runs on."""
from .config import RwkvConfig
from .errors import CheckpointError, ConfigError, HubError, InputError, RwkvError
from .modeling import RwkvForCausalLM, RwkvModel
from .sampling import SamplingSettings
from .stopping import StoppingCriteria
from .tokenizer import RwkvTokenizer

__all__ = [
    "RwkvConfig", "RwkvModel", "RwkvForCausalLM", "StoppingCriteria", "RwkvTokenizer", "SamplingSettings",
    "RwkvError", "ConfigError", "CheckpointError", "HubError", "InputError",
]
