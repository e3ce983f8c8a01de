"""`python -m rwkv_app generate --model ... --prompt ... [--preset ...]`: the engine without the browser.

Loads through the model manager (preset name, Hub repo id or local path; download progress on stderr),
streams the completion to stdout as it is generated, and reports speed and finish reason on stderr.
`--model FILE.pth` takes a BlinkDL checkpoint lying anywhere (RWKV-4 or RWKV-7; an RWKV-7 uses the bundled World
vocabulary unless a vocabulary file or tokenizer.json lies beside it). `--state FILE` starts from a state file
(an RWKV-Runner / RWKV-PEFT `time_state` file for RWKV-7, or one this playground exported; see
rwkv_app/models/state_files.py) instead of the empty state; the prompt then continues from it.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import TextIO

from .errors import RwkvError
from .core.generation import FinishEvent, TokenEvent
from .services.manager import ModelManager
from .models.state_files import load_state_file
from .core.presets import list_sampling_presets, load_sampling_preset
from .core.sampling import SamplingSettings

SETTING_FLAGS = {  # flag -> (SamplingSettings field, type)
    "--temperature": ("temperature", float), "--top-p": ("top_p", float), "--top-k": ("top_k", int),
    "--min-p": ("min_p", float), "--repetition-penalty": ("repetition_penalty", float),
    "--presence-penalty": ("presence_penalty", float), "--frequency-penalty": ("frequency_penalty", float),
    "--max-new-tokens": ("max_new_tokens", int), "--seed": ("seed", int),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rwkv_app", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="complete a prompt, streaming to stdout")
    gen.add_argument("--model", required=True, help="preset name (presets/models.yaml), Hub repo id or local path")
    gen.add_argument("--revision", default=None, help="Hub branch, tag or commit")
    gen.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    gen.add_argument("--dtype", default=None, help="float32, bfloat16, float16, or int8 (int8 weights, bfloat16 "
                     "matmuls; CPU only) (default: by device)")
    gen.add_argument("--state", default=None, help="start from this state file (.pth, .safetensors or .state)")
    gen.add_argument("--prompt", required=True, help="the text to continue; '-' reads it from stdin")
    gen.add_argument("--preset", default="balanced",
                     help=f"sampling preset name or .yaml path ({', '.join(list_sampling_presets())})")
    gen.add_argument("--stop", action="append", default=None, help="stop string (repeatable)")
    gen.add_argument("--greedy", action="store_true", help="always take the most likely token")
    for flag, (field, kind) in SETTING_FLAGS.items():
        gen.add_argument(flag, dest=field, type=kind, default=None, help=f"override the preset's {field}")
    return parser


def settings_from_args(args: argparse.Namespace) -> SamplingSettings:
    settings = load_sampling_preset(args.preset)
    changes = {field: getattr(args, field) for field, _ in SETTING_FLAGS.values() if getattr(args, field) is not None}
    if args.stop is not None:
        changes["stop"] = tuple(args.stop)
    if args.greedy:
        changes["do_sample"] = False
    return settings.replace(**changes)


def print_progress(stage: str, fraction: float | None, detail: str, err: TextIO = sys.stderr) -> None:
    percent = "" if fraction is None else f" {fraction * 100:5.1f}%"
    print(f"[{stage}{percent}] {detail}", file=err, flush=True)


def run_generate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    settings = settings_from_args(args)
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    manager = ModelManager()
    with manager.use(args.model, args.revision, args.device, args.dtype,
                     progress=lambda *a: print_progress(*a, err=err)) as loaded:
        if loaded.tokenizer is None:
            raise RwkvError(f"{loaded.key.source} ships no tokenizer.json, so text cannot be encoded")
        state = None if args.state is None else load_state_file(args.state, loaded.model)
        out.write(prompt)
        out.flush()
        start, count, finish = time.perf_counter(), 0, None
        for event in loaded.model.stream_generate(prompt, sampling=settings, tokenizer=loaded.tokenizer,
                                                  state=state):
            if isinstance(event, TokenEvent):
                count += 1
            if isinstance(event, FinishEvent):
                finish = event
            if event.delta:
                out.write(event.delta)
                out.flush()
        seconds = time.perf_counter() - start
    out.write("\n")
    print(f"[done] {count} tokens in {seconds:.2f}s ({count / max(seconds, 1e-9):.1f} tok/s), "
          f"finished by {finish.reason}, seed {finish.seed}", file=err)
    return 0


def main(argv=None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run_generate(args, out, err)
    except RwkvError as error:
        print(f"error: {error}", file=err)
        return 2
