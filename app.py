"""RWKV Playground: the Gradio web app (chat, playground tree, compare, state inspector, models, sessions).

    python app.py [--model NAME|REPO|DIR|demo] [--device cpu|cuda] [--dtype ...] [--host H] [--port P] [--share]

With no --model it uses RWKV/rwkv-4-169m-pile when that is cached or the Hub answers, and otherwise starts at
once on the bundled demo model (demo-model/), saying so. `--prompt TEXT` skips the web app and prints one
completion (a quick check of the model core). Visitors choose only among presets/models.yaml unless the
operator passes --allow-any-model. The same server answers OpenAI clients under /v1 (see the README's "Use it
from OpenAI clients"): `--api-key KEY` (or $RWKV_API_KEY, several comma-separated) requires a key; without one
/v1 is served on a loopback --host only, unless `--api-public`; `--no-api` turns it off; with --share the app
runs on Gradio's own launcher, which has no /v1. `--stats` (operator only, off by default) adds a /server_stats API endpoint
that the soak test reads (python -m benchmarks soak). Visitors' conversations are saved in SQLite under --data-dir
(default /data/rwkv-playground when /data is writable, else ~/.cache/rwkv-playground) or in Redis with --store
redis://host:port/db (docs/DEPLOY.md); --session-ttl-days and --visitor-quota-mb bound them. The server caps
glibc's malloc arenas at 2 (`--malloc-arenas N`, or $RWKV_MALLOC_ARENAS; 0 keeps glibc's default) so its memory stays flat under Gradio's
many worker threads.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rwkv_app import RwkvError
from rwkv_app.services.default_model import OFFLINE_HINT, choose_default_model
from rwkv_app.errors import HubError
from rwkv_app.services.malloc import (DEFAULT_ARENAS, DEFAULT_HEAP_BLOCK_MB, ENV, default_arenas, keep_large_blocks,
                                      limit_arenas)

ROOT = Path(__file__).resolve().parent


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None,
                        help="preset name, Hub repo id, local directory, .pth file, or 'demo' for the bundled demo "
                             "model (default: RWKV/rwkv-4-169m-pile when cached or reachable, else the demo model)")
    parser.add_argument("--revision", default=None, help="Hub branch, tag or commit to pin (with --prompt)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--dtype", default=None, help="float32, bfloat16, float16, or int8 (int8 weights, bfloat16 "
                        "matmuls; CPU only) (default: per device)")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0 for every interface)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="also serve through a public gradio.live link")
    parser.add_argument("--allow-any-model", action="store_true",
                        help="let visitors load any Hub repo id or server directory (off: presets only)")
    parser.add_argument("--max-upload-mb", type=float, default=64.0, help="largest session file accepted")
    parser.add_argument("--max-new-tokens", type=int, default=512, help="most tokens one request may generate")
    parser.add_argument("--max-queue", type=int, default=32, help="generations that may wait for the engine")
    parser.add_argument("--session-state-mb", type=float, default=64.0,
                        help="kept RNN states per visitor; beyond it the least recently used are dropped (and "
                             "recomputed by one forward when needed)")
    parser.add_argument("--data-dir", default=None,
                        help="where conversations are saved (SQLite; default: /data/rwkv-playground when /data is "
                             "writable, as on a Space with persistent storage, else ~/.cache/rwkv-playground)")
    parser.add_argument("--store", default=None,
                        help="redis://host:port/db: keep conversations in Redis, shared by several replicas "
                             "(default: SQLite in --data-dir)")
    parser.add_argument("--session-ttl-days", type=float, default=30.0,
                        help="saved conversations unused this long are deleted")
    parser.add_argument("--visitor-quota-mb", type=float, default=100.0,
                        help="storage each visitor's saved conversations may take")
    parser.add_argument("--stats", action="store_true",
                        help="operator only: add a /server_stats API endpoint (live sessions, engine counters, "
                             "memory) that the soak test reads; off by default, so visitors never see it")
    parser.add_argument("--malloc-arenas", type=int, default=default_arenas(),
                        help="cap glibc's malloc arenas so the server's memory stays flat under many threads "
                             f"(default {DEFAULT_ARENAS}, or ${ENV}; 0 leaves glibc's default of 8 per core)")
    parser.add_argument("--malloc-heap-mb", type=int, default=DEFAULT_HEAP_BLOCK_MB,
                        help="serve memory blocks up to this size from the heap, so a batch's tensors reuse memory "
                             f"instead of faulting in fresh pages every step (default {DEFAULT_HEAP_BLOCK_MB}; 0 "
                             "leaves glibc's adaptive threshold of at most 32)")
    parser.add_argument("--api-key", default=None,
                        help="require 'Authorization: Bearer KEY' on the OpenAI-compatible /v1 API (several keys "
                             "comma-separated; default $RWKV_API_KEY); each key sees only its own states")
    parser.add_argument("--api-public", action="store_true",
                        help="serve /v1 without a key on a non-loopback --host (off: keyless /v1 is loopback only)")
    parser.add_argument("--no-api", action="store_true", help="do not serve the OpenAI-compatible /v1 API")
    parser.add_argument("--api-state-ttl", type=float, default=3600.0,
                        help="seconds an API client's unused state is kept before it expires")
    parser.add_argument("--prompt", default=None, help="print one completion of this text and exit (no web app)")
    return parser.parse_args(argv)


def complete_once(source: str, args) -> int:
    """The command-line check: load, complete --prompt, print."""
    from rwkv_app.services.manager import ModelManager

    manager = ModelManager()
    with manager.use(source, revision=args.revision, device=args.device or "cpu", dtype=args.dtype or "float32") as m:
        print(f"loaded {m.key.describe()}")
        if m.tokenizer is None:
            print("no tokenizer.json beside the weights: skipping the completion")
            return 0
        import torch

        prompt = torch.tensor([m.tokenizer.encode(args.prompt)], device=m.model.device)
        tokens = m.model.generate(prompt, max_new_tokens=min(args.max_new_tokens, 256))
        print(args.prompt + m.tokenizer.decode(tokens[0, prompt.size(1):].tolist()))
    return 0


def build(args, source: str, message: str = ""):
    """The playground service with its default model loaded, and the Blocks app on it."""
    from rwkv_app.services import Playground, PlaygroundOptions
    from rwkv_app.ui import build_app

    options = PlaygroundOptions(device=args.device, dtype=args.dtype, allow_any_model=args.allow_any_model,
                                max_upload_mb=args.max_upload_mb, max_new_tokens=args.max_new_tokens,
                                max_queue=args.max_queue, session_state_mb=args.session_state_mb)
    playground = Playground(options, store=session_store(args))
    loaded = playground.start(source)
    print(f"loaded {loaded.key.describe()}", flush=True)
    return playground, build_app(playground, message)


def session_store(args):
    """Where visitors' conversations are saved: Redis with --store, else SQLite in --data-dir."""
    from rwkv_app.services.stores import default_data_dir, open_store

    spec = args.store or str(args.data_dir or default_data_dir())
    store = open_store(spec, ttl_s=args.session_ttl_days * 86400, quota_bytes=int(args.visitor_quota_mb * 2 ** 20))
    where = spec if args.store else f"SQLite in {spec}"
    print(f"conversations are saved in {where.split('@')[-1]} for {args.session_ttl_days:g} days", flush=True)
    return store


def api_options(args):
    """(ApiOptions, None) when /v1 is served, else (None, why not)."""
    from rwkv_app.openai_api import ApiOptions, api_refusal, parse_keys

    if args.no_api:
        return None, "the OpenAI-compatible /v1 API is off (--no-api)"
    if args.share:
        return None, ("--share runs the app on Gradio's own launcher, which cannot serve the /v1 API: it is off. "
                      "Drop --share (and put the server behind your own tunnel) to have both")
    options = ApiOptions(keys=parse_keys(args.api_key), public=args.api_public, state_ttl_s=args.api_state_ttl)
    refusal = api_refusal(args.host, options)
    return (None, refusal) if refusal else (options, None)


def mounted_app(args, playground, demo, options, refusal: str | None = None):
    """A FastAPI app serving /v1 (or, without `options`, an OpenAI error there saying why not: `refusal`) and, at /,
    the Gradio app with the flags `demo.launch` would get."""
    import gradio as gr
    from fastapi import FastAPI

    from rwkv_app.openai_api import build_api, build_off_api
    from rwkv_app.ui.builder import CSS, THEME

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/v1", build_api(playground, options) if options is not None else build_off_api(refusal or "off"))
    return gr.mount_gradio_app(app, demo, path="/", server_name=args.host, server_port=args.port, theme=THEME,
                               css=CSS, show_error=False, max_file_size=int(args.max_upload_mb * 2 ** 20))


def main(argv=None) -> int:
    args = parse_args(argv)
    arenas = limit_arenas(args.malloc_arenas) + "; " + keep_large_blocks(args.malloc_heap_mb)  # before any thread
    try:
        choice = choose_default_model(args.model)
        if choice.message:
            print(choice.message, flush=True)
        if args.prompt is not None:
            return complete_once(choice.source, args)
        print(arenas, flush=True)
        from rwkv_app.ui.builder import CSS, THEME

        playground, demo = build(args, choice.source, choice.banner)
        if args.stats:
            from rwkv_app.ui.stats import add_stats_endpoint

            add_stats_endpoint(demo, playground)
        demo.queue(default_concurrency_limit=4)
        options, refusal = api_options(args)
        if options is None:
            print(refusal, flush=True)
        if args.share:  # Gradio's own launcher makes the share link
            demo.launch(server_name=args.host, server_port=args.port, share=True, theme=THEME, css=CSS,
                        max_file_size=int(args.max_upload_mb * 2 ** 20))  # bytes: Gradio's "0.5mb" parser fails
            return 0
        serve(mounted_app(args, playground, demo, options, refusal), args.host, args.port)
        return 0
    except RwkvError as err:
        print(f"error: {err}", file=sys.stderr)
        if isinstance(err, HubError):
            print(OFFLINE_HINT[0].upper() + OFFLINE_HINT[1:] + ".", file=sys.stderr)
        return 2


def serve(app, host: str, port: int) -> None:
    """Run the mounted app on uvicorn; "Running on ..." is printed once the socket listens (scripts wait for it)."""
    import threading
    import time

    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))

    def announce():
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if server.started:
            print(f"Running on http://{host}:{port} (OpenAI-compatible API at /v1)", flush=True)

    threading.Thread(target=announce, daemon=True).start()
    server.run()


if __name__ == "__main__":
    sys.exit(main())
