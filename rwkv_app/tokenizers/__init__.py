"""Tokenizers: GPT-NeoX BPE (tokenizer.json), the World vocabulary, and picking the one a checkpoint carries."""
