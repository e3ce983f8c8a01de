"""Tokenizers: GPT-NeoX BPE (tokenizer.json), the World vocabulary, and picking the one a checkpoint carries."""
from .tokenizer import RwkvTokenizer
from .tokenizer_select import tokenizer_for

RwkvTokenizer.select = staticmethod(tokenizer_for)  # RwkvTokenizer.from_pretrained picks through the selector
