"""Train a small RWKV-4 from scratch on a text file with this project's own model (`python -m rwkv_app.train`).

data.py: byte-level BPE tokenizer, token ids, random windows, held-out split. loop.py: TrainConfig, Trainer, the
AdamW loop (`fit`), export. checkpoint.py: resumable checkpoints (safetensors + JSON). evaluate.py: held-out loss
and bits per character. janeaustenr.py: the demo model's corpus, read from a Debian package. Nothing is imported
here, so each module also runs as `python -m rwkv_app.train.<module>`.
"""
