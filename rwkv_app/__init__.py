"""RWKV Playground: RWKV-4 and RWKV-7 models with Hugging Face's API, and the services the web app runs on."""
from .models.rwkv4.config import RwkvConfig
from .errors import CheckpointError, ConfigError, HubError, InputError, RwkvError
from .models.rwkv4.modeling import RwkvForCausalLM, RwkvModel
from .core.sampling import SamplingSettings
from .core.stopping import StoppingCriteria
from .tokenizers.tokenizer import RwkvTokenizer
from .models.rwkv7 import Rwkv7Config, Rwkv7ForCausalLM, Rwkv7Model
from .weights.auto import from_pretrained

__all__ = [
    "RwkvConfig", "RwkvModel", "RwkvForCausalLM", "StoppingCriteria", "RwkvTokenizer", "SamplingSettings",
    "RwkvError", "ConfigError", "CheckpointError", "HubError", "InputError",
    "Rwkv7Config", "Rwkv7Model", "Rwkv7ForCausalLM", "from_pretrained",
]
