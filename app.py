"""RWKV Playground entry point.

Until the web UI lands this is a command-line check of the model core: it loads a checkpoint (Hub repo id,
local HF directory or BlinkDL .pth), prints what it loaded, and completes --prompt when the checkpoint
ships a tokenizer.json.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from rwkv_app import RwkvError, RwkvForCausalLM


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="RWKV/rwkv-4-169m-pile", help="Hub repo id, local directory or .pth file")
    parser.add_argument("--revision", default=None, help="Hub branch, tag or commit to pin")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default="float32", help="float32, bfloat16 or float16")
    parser.add_argument("--prompt", default="The quick brown fox", help="text to complete (needs tokenizer.json)")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--host", default="127.0.0.1", help="for the web UI (not yet built)")
    parser.add_argument("--port", type=int, default=7860, help="for the web UI (not yet built)")
    parser.add_argument("--share", action="store_true", help="for the web UI (not yet built)")
    return parser.parse_args(argv)


def find_tokenizer(model_source: str, model: RwkvForCausalLM, revision: str | None):
    from tokenizers import Tokenizer

    from rwkv_app.hub import resolve_model_dir

    directory = Path(resolve_model_dir(model_source, revision=revision))
    directory = directory if directory.is_dir() else directory.parent
    path = directory / "tokenizer.json"
    return Tokenizer.from_file(str(path)) if path.exists() else None


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        start = time.perf_counter()
        model = RwkvForCausalLM.from_pretrained(args.model, revision=args.revision, dtype=args.dtype, device=args.device)
        config = model.config
        params = sum(p.numel() for p in model.parameters())
        print(f"loaded {args.model}: {params / 1e6:.1f}M parameters, {config.num_hidden_layers} layers x "
              f"{config.hidden_size}, {model.dtype} on {model.device} in {time.perf_counter() - start:.1f}s")
        tokenizer = find_tokenizer(args.model, model, args.revision)
        if tokenizer is None:
            print("no tokenizer.json beside the weights: skipping the completion")
            return 0
        prompt = torch.tensor([tokenizer.encode(args.prompt).ids], device=model.device)
        tokens = model.generate(prompt, max_new_tokens=args.max_new_tokens)
        print(args.prompt + tokenizer.decode(tokens[0, prompt.size(1):].tolist()))
        return 0
    except RwkvError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
