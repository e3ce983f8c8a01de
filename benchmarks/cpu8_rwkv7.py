"""The RWKV-7 half of `python -m benchmarks cpu8`, run in its own process (BlinkDL's package switches to
RWKV-7 for the whole process at import): 0.1B shape, random weights; prints one JSON object.

    python -m benchmarks.cpu8_rwkv7 [--repeats 3] [--threads N]
"""
from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from rwkv_app.models.cpu_dtype import cpu_default_dtype
from rwkv_app.models.quantize import quantize_model
from .cpu8 import (CHUNKED_WKV, PER_OP, TORCH_INT8, Cpu8Settings, engine_rates, greedy_matches, greedy_prompts, log,
                   per_op, with_chunked_wkv)
from .rwkv7 import Rwkv7BenchSettings, build, decode_ours, decode_theirs
from .memory import use_app_malloc
from .timing import interleaved


@torch.no_grad()
def measure_rwkv7(s: Cpu8Settings) -> dict:
    shape = Rwkv7BenchSettings()
    with tempfile.TemporaryDirectory() as tmp:
        f32, theirs = build(shape, Path(tmp))
        int8 = quantize_model(copy.deepcopy(f32))
        int8_torch = quantize_model(copy.deepcopy(f32), kernel=False)
        int8_ops = per_op(int8)
        default = cpu_default_dtype()["dtype"]
        fast = int8 if default == "int8" else f32
        prompt = torch.randint(0, shape.vocab_size, (1, s.prefill_len), generator=torch.Generator().manual_seed(0))
        tokens = prompt[0].tolist()
        log("RWKV-7 prefill")
        prefill = interleaved({"default": lambda: fast(prompt, logits_to_keep=1),
                               CHUNKED_WKV: lambda: with_chunked_wkv(fast, prompt),
                               "float32": lambda: f32(prompt, logits_to_keep=1),
                               "rwkv fp32": lambda: theirs.forward(tokens, None)}, s.repeats)
        log("RWKV-7 decode")
        models = {"int8": int8, PER_OP: int8_ops, TORCH_INT8: int8_torch, "float32": f32}
        starts = {name: model(prompt[:, :16]).state for name, model in models.items()}
        theirs_start = theirs.forward(tokens[:16], None)[1]
        n = s.decode_tokens
        runs = {name: (lambda m=model, name=name: decode_ours(m, starts[name], tokens, n))
                for name, model in models.items()}
        runs["rwkv fp32"] = lambda: decode_theirs(theirs, theirs_start, tokens, n)
        decode = interleaved(runs, s.repeats)
    out = {"default_dtype": default,
           "prefill": {k: s.prefill_len / v for k, v in prefill.items()},
           "decode": {k: n / v for k, v in decode.items()},
           "greedy_match": greedy_matches(f32, {"int8": int8}, greedy_prompts(s, shape.vocab_size),
                                          s.greedy_tokens)}
    try:
        out["engine"] = engine_rates(fast, s, shape.vocab_size)
        if fast is int8:
            out["engine_per_op"] = engine_rates(int8_ops, s, shape.vocab_size, labels=("greedy",))
            out["engine_torch_int8"] = engine_rates(int8_torch, s, shape.vocab_size, labels=("greedy",))
    except RuntimeError as err:  # the engine's family interface may not cover RWKV-7 yet
        out["engine_error"] = str(err)[:160]
    return out


def run_child(s: Cpu8Settings, threads: int) -> dict:
    """measure_rwkv7 in a fresh interpreter; its JSON result."""
    command = [sys.executable, "-m", "benchmarks.cpu8_rwkv7", "--repeats", str(s.repeats), "--threads",
               str(threads)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    if done.returncode != 0:
        raise RuntimeError(f"the RWKV-7 benchmark failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cpu8_rwkv7", description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    log(use_app_malloc())
    torch.set_num_threads(args.threads)
    print(json.dumps(measure_rwkv7(Cpu8Settings(repeats=args.repeats))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
