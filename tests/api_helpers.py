"""Shared by the /v1 API tests: the real app (app.mounted_app: Gradio at /, the API at /v1) served by uvicorn
on a free loopback port in a thread, on the bundled demo model."""
import threading
import time

import app as app_module

from .app_helpers import free_port, tiny_playground

KEYS = ("key-one", "key-two")


class Served:
    def __init__(self, playground, service, server, thread, url):
        self.playground, self.service, self.server, self.thread, self.url = playground, service, server, thread, url

    def engine_stats(self) -> dict:
        """The counters of the served model's engine (a test may have loaded another model beside it)."""
        served = f"{self.playground.default_source} ("
        (stats,) = [s for name, s in self.playground.stats()["engines"].items() if name.startswith(served)]
        return stats

    def close(self):
        self.server.should_exit = True
        self.thread.join(10)
        self.playground.close()


def serve(argv=(), **options) -> Served:
    import uvicorn
    from rwkv_app.ui import build_app

    port = free_port()
    args = app_module.parse_args(["--model", "demo", "--port", str(port), *argv])
    playground = tiny_playground(app_module.choose_default_model(args.model).source, **options)  # as main() does
    loaded = playground.acquire_default()
    playground.engine_for(loaded)  # made now, so its counters can be read before the first request
    playground.manager.release(loaded)
    demo = build_app(playground)
    demo.queue(default_concurrency_limit=4)
    api_options, refusal = app_module.api_options(args)
    assert refusal is None, refusal
    fastapi_app = app_module.mounted_app(args, playground, demo, api_options)
    (mounted,) = [r.app for r in fastapi_app.routes if getattr(r, "path", None) == "/v1"]
    server = uvicorn.Server(uvicorn.Config(fastapi_app, host="127.0.0.1", port=port, log_level="warning",
                                          timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    return Served(playground, mounted.state.service, server, thread, f"http://127.0.0.1:{port}")
