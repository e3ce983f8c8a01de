"""`python -m rwkv_app.train --text CORPUS --out DIR [--family rwkv4|rwkv7] [...]`: train a small RWKV-4 or
RWKV-7 from scratch on a text file.

Writes DIR/tokenizer.json at once, DIR/checkpoint/ every --checkpoint-every steps (resume with
`--out DIR --resume`: same schedule position, optimizer and RNG states), DIR/train_log.jsonl at each evaluation,
and at the end the model as a Hub checkpoint: DIR/config.json, model.safetensors (in --save-dtype),
tokenizer.json, and training.json with the settings, time and final held-out loss and bits per character.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ..errors import RwkvError
from .checkpoint import CHECKPOINT_DIR
from .families import FAMILIES
from .loop import RUNTIME_FIELDS, TrainConfig, Trainer, fit

DEFAULTS = TrainConfig(text="", out="")
HELP = {
    "heldout": "held-out text file (default: the last --heldout-fraction of --text)",
    "context": "tokens per training window", "warmup": "linear warm-up steps", "lr": "peak learning rate",
    "min_lr": "learning rate at the end of the cosine decay", "grad_clip": "max gradient norm",
    "eval_tokens": "held-out tokens scored at each periodic evaluation (the final one scores all)",
    "save_dtype": "dtype of the exported weights (float32, float16, bfloat16)",
    "threads": "torch CPU threads (default: all cores)",
    "stop_after": "stop after this many steps in this run (with a checkpoint; resume later)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rwkv_app.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", help="UTF-8 corpus; documents separated by <|endoftext|>")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--resume", action="store_true", help="continue the run checkpointed in --out")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    parser.add_argument("--family", choices=FAMILIES, default=DEFAULTS.family,
                        help=f"model family to train (default: {DEFAULTS.family})")
    parser.add_argument("--tie-embeddings", action="store_true", help="the head shares the embedding matrix")
    for item in dataclasses.fields(TrainConfig):
        if item.name in ("text", "out", "family", "progress", "betas", "tie_embeddings"):
            continue
        default = getattr(DEFAULTS, item.name)
        kind = float if "float" in str(item.type) else int if "int" in str(item.type) else str
        described = HELP.get(item.name, item.name.replace("_", " "))
        parser.add_argument("--" + item.name.replace("_", "-"), type=kind, default=default,
                            help=described if default is None else f"{described} (default: {default})")
    return parser


def make_trainer(args: argparse.Namespace) -> Trainer:
    out = Path(args.out)
    if args.resume:
        return Trainer.resume(out, **{name: getattr(args, name) for name in RUNTIME_FIELDS})
    if (out / CHECKPOINT_DIR).exists():
        raise RwkvError(f"{out} already holds a training run: pass --resume to continue it, or choose another --out")
    if not args.text:
        raise RwkvError("--text is required for a new run")
    values = {item.name: getattr(args, item.name) for item in dataclasses.fields(TrainConfig) if item.name != "betas"}
    return Trainer(TrainConfig(**values))


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = fit(make_trainer(args))
    except (RwkvError, OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if result is None:
        print(f"stopped; continue with: python -m rwkv_app.train --out {args.out} --resume", file=sys.stderr)
        return 0
    heldout = result["heldout"]
    print(f"done: {result['steps']} steps in {result['train_seconds'] / 60:.1f} min; held-out loss "
          f"{heldout['loss']:.4f}, {heldout['bits_per_char']:.3f} bits/char over {heldout['chars']} characters; "
          f"model in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
