"""An OpenAI-compatible API (/v1) served by the same process as the web app, on the same engine and models.

    from rwkv_app.openai_api import ApiOptions, build_api
    fastapi_app.mount("/v1", build_api(playground, ApiOptions(keys=("secret",))))

Service layer: FastAPI, never gradio. schemas.py checks requests, service.py turns one into engine work,
runner.py runs it (one prefill, n batched continuations), responses.py writes OpenAI's shapes, states.py keeps
each API key's session tree (state_id), routes.py is the HTTP side.
"""
from .options import KEY_ENV, ApiOptions, api_refusal, is_loopback, parse_keys
from .routes import build_api, build_off_api

__all__ = ["ApiOptions", "build_api", "build_off_api", "api_refusal", "is_loopback", "parse_keys", "KEY_ENV"]
