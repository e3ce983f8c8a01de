"""Held-out loss and bits per character, with the model run as an RNN over the whole text (state carried).

    python -m rwkv_app.train.evaluate --model demo-model --text demo-model/heldout-sample.txt

Every token after the first is predicted from all the text before it, so bits per character is the text's
cost under the model: total nats / ln 2 / the characters those tokens spell.
"""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..weights.auto import from_pretrained
from ..models.rwkv4.modeling import RwkvForCausalLM
from ..tokenizers.tokenizer import RwkvTokenizer
from .data import encode_documents, split_documents

EVAL_CHUNK = 1024  # tokens per forward; the state carries across chunks, so the result does not depend on it


@dataclass(frozen=True)
class Evaluation:
    loss: float  # mean cross-entropy per predicted token, in nats
    bits_per_char: float
    tokens: int  # tokens predicted
    chars: int  # characters those tokens spell

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def total_nats(model: RwkvForCausalLM, ids: torch.Tensor, chunk: int = EVAL_CHUNK) -> float:
    """Sum of -log p(ids[t] | ids[:t]) for t >= 1, in float64, running the model chunk by chunk on its state."""
    was_training = model.training
    model.eval()
    state, total = None, 0.0
    ids = ids.to(model.device)
    try:
        for start in range(0, ids.numel() - 1, chunk):
            inputs = ids[start:start + chunk]  # (T,)
            targets = ids[start + 1:start + chunk + 1]  # (T,) or one shorter at the end
            out = model(input_ids=inputs[None], state=state, use_cache=True)
            state = out.state
            logits = out.logits[0, :targets.numel()].float()  # (T, V)
            total += F.cross_entropy(logits, targets, reduction="sum").double().item()
    finally:
        model.train(was_training)
    return total


def evaluate(model: RwkvForCausalLM, tokenizer: RwkvTokenizer, ids: torch.Tensor,
             chunk: int = EVAL_CHUNK) -> Evaluation:
    """Loss and bits per character of token ids `ids` (1-D)."""
    if ids.numel() < 2:
        raise ValueError("evaluation needs at least two tokens")
    nats = total_nats(model, ids, chunk)
    chars = len(tokenizer.decode(ids)) - len(tokenizer.decode(ids[:1]))
    count = ids.numel() - 1
    return Evaluation(loss=nats / count, bits_per_char=nats / math.log(2) / max(chars, 1), tokens=count, chars=chars)


def evaluate_text(model: RwkvForCausalLM, tokenizer: RwkvTokenizer, text: str) -> Evaluation:
    return evaluate(model, tokenizer, encode_documents(tokenizer, split_documents(text)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a checkpoint folder with tokenizer.json")
    parser.add_argument("--text", required=True, type=Path, help="UTF-8 text to score")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = from_pretrained(args.model, dtype="float32")  # either family
    tokenizer = RwkvTokenizer.from_pretrained(args.model)
    result = evaluate_text(model, tokenizer, args.text.read_text(encoding="utf-8"))
    print(json.dumps(result.to_dict(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
