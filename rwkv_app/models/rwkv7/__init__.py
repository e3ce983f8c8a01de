"""RWKV-7 "Goose" (x070): config, model, state layout, BlinkDL and flash-linear-attention checkpoint loading."""
from .config import Rwkv7Config
from .modeling import Rwkv7ForCausalLM, Rwkv7Model
from .state import STATE_NAMES, init_state7

__all__ = ["Rwkv7Config", "Rwkv7Model", "Rwkv7ForCausalLM", "STATE_NAMES", "init_state7"]
