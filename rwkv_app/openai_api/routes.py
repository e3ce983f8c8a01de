"""The /v1 routes: a FastAPI app (mounted under /v1 beside the Gradio app) with OpenAI's endpoints and the
state extensions. Every error is an OpenAI error object with its HTTP status.

    GET  /v1/models                 the served model, the presets and the bundled demos
    GET  /v1/models/{id}            one of them (404 for another name)
    POST /v1/completions            prompt -> text (stream: true for server-sent events)
    POST /v1/chat/completions       messages -> reply, in the model family's chat format
    GET  /v1/states/{id}            a kept state's metadata (its node in the key's session tree)
    DELETE /v1/states/{id}          delete it and everything continued from it
    GET  /v1/states/{id}/file       its state as a state file (safetensors)
"""
from __future__ import annotations

import hmac
import json
import logging

from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from ..errors import RwkvError
from . import responses as shapes
from .chat_template import shown_reply
from .errors import ApiError, as_api_error
from .runner import Finished, generate, start
from .schemas import parse_chat, parse_completion, parse_json
from .service import ApiService

log = logging.getLogger(__name__)


def build_api(playground, options) -> FastAPI:
    """The /v1 app on the playground's models and engines (mount it: `app.mount("/v1", build_api(...))`)."""
    api = FastAPI(title="RWKV Playground: OpenAI-compatible API", docs_url=None, redoc_url=None, openapi_url=None)
    api.state.service = ApiService(playground, options)
    api.add_exception_handler(ApiError, refused)
    api.add_exception_handler(HTTPException, http_error)
    api.add_exception_handler(RwkvError, refused)  # the package's own errors (bad input, busy, cannot load)
    api.add_exception_handler(Exception, lambda request, err: error_response(as_api_error(err)))  # a bug: traced
    api.add_api_route("/models", list_models, methods=["GET"])
    api.add_api_route("/models/{model_id:path}", get_model, methods=["GET"])
    api.add_api_route("/completions", completions, methods=["POST"])
    api.add_api_route("/chat/completions", chat_completions, methods=["POST"])
    api.add_api_route("/states/{state_id}", get_state, methods=["GET"])
    api.add_api_route("/states/{state_id}", delete_state, methods=["DELETE"])
    api.add_api_route("/states/{state_id}/file", state_file, methods=["GET"])
    return api


def build_off_api(reason: str) -> FastAPI:
    """What /v1 answers when the server does not serve the API (`--no-api`, a public host without a key): an
    OpenAI error, `reason` (app.py's api_options says why), for every path and method, instead of a bare 404."""
    off = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    async def answer(request: Request, path: str = "") -> JSONResponse:
        return error_response(ApiError(404, reason, code="api_off"))

    off.add_api_route("/{path:path}", answer, methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
    return off


def error_response(err: ApiError) -> JSONResponse:
    return JSONResponse(err.body(), err.status)


def refused(request: Request, err: Exception) -> JSONResponse:
    """A refused request (bad input, a busy engine, a model that cannot load): the OpenAI error and one line in the
    server log. Only bugs reach the catch-all `Exception` handler, whose answer Starlette re-raises to be logged
    with its traceback."""
    answer = as_api_error(err)
    log.warning("refused %s %s: %s", request.method, request.url.path, answer.message)
    return error_response(answer)


def http_error(request: Request, err: HTTPException) -> JSONResponse:
    code = "not_found" if err.status_code == 404 else None
    return error_response(ApiError(err.status_code, f"{request.method} {request.url.path}: {err.detail}",
                                   code=code))


def client_key(request: Request) -> str:
    """The caller's API key ("" when the server asks for none); 401 for a missing or wrong one."""
    keys = request.app.state.service.options.keys
    if not keys:
        return ""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip().encode()
    if scheme.lower() == "bearer":
        for key in keys:
            if hmac.compare_digest(token, key.encode()):
                return key
    raise ApiError(401, "Incorrect API key provided: send 'Authorization: Bearer <key>' with a key this server "
                        "accepts", code="invalid_api_key")


async def read_json(request: Request) -> dict:
    limit = request.app.state.service.options.max_body_bytes
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise ApiError(413, f"the request body is {int(length):,} bytes; this server takes at most {limit:,}")
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise ApiError(413, f"the request body is over {limit:,} bytes")
    return parse_json(bytes(body))


def model_card(name: str) -> dict:
    return {"id": name, "object": "model", "created": 0, "owned_by": "rwkv-playground"}


async def list_models(request: Request):
    service, _ = request.app.state.service, client_key(request)
    return {"object": "list", "data": [model_card(name) for name in service.model_names()]}


async def get_model(model_id: str, request: Request):
    """OpenAI's "retrieve model" (`client.models.retrieve(name)`): a name GET /v1/models lists."""
    service, _ = request.app.state.service, client_key(request)
    if model_id not in service.model_names():
        raise service.unknown_model(model_id)
    return model_card(model_id)


async def get_state(state_id: str, request: Request):
    key = client_key(request)
    return await to_thread.run_sync(request.app.state.service.states.describe, key, state_id)


async def delete_state(state_id: str, request: Request):
    key = client_key(request)
    return await to_thread.run_sync(request.app.state.service.states.delete, key, state_id)


async def state_file(state_id: str, request: Request):
    key = client_key(request)
    data = await to_thread.run_sync(request.app.state.service.states.state_file, key, state_id)
    return Response(data, media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{state_id}.safetensors"'})


async def completions(request: Request):
    key = client_key(request)
    return await run(request, key, parse_completion(await read_json(request)))


async def chat_completions(request: Request):
    key = client_key(request)
    return await run(request, key, parse_chat(await read_json(request)))


async def run(request: Request, key: str, parsed):
    service = request.app.state.service
    job = await to_thread.run_sync(service.prepare, parsed, key)
    started = await start(job, service.states, request.is_disconnected)
    events = generate(job, service.states, started, None if parsed.stream else request.is_disconnected)
    logprobs = None
    if parsed.top_logprobs is not None:
        logprobs = shapes.Logprobs(job.api_tree.tree.tokenizer, parsed.top_logprobs)
    rid = shapes.new_id(parsed.chat)
    if parsed.stream:
        return StreamingResponse(stream(job, rid, events, logprobs), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    return await whole(job, rid, events, logprobs)


async def whole(job, rid: str, events, logprobs) -> dict:
    chat, n = job.request.chat, len(job.settings)
    tokens, choices = [[] for _ in range(n)], [None] * n
    async for item in events:
        if isinstance(item, Finished):
            event, index = item.event, item.index
            lp = None if logprobs is None else (logprobs.chat(tokens[index]) if chat
                                                else logprobs.completion(tokens[index]))
            text = shown_reply(event.text or "") if chat else event.text or ""
            choices[index] = shapes.whole_choice(chat, index, text, shapes.finish_reason(event.reason), lp,
                                                 item.state_id)
        else:
            tokens[item[0]].append(item[1])
    counts = shapes.usage(len(job.prompt_ids), sum(len(t) for t in tokens))
    return shapes.whole_response(job, rid, choices, counts)


def sse(data) -> str:
    return f"data: {json.dumps(data) if not isinstance(data, str) else data}\n\n"


async def stream(job, rid: str, events, logprobs):
    """Server-sent events in OpenAI's chunk format, ending with `data: [DONE]`; an error after the stream
    started comes as one `data: {"error": ...}` event."""
    chat, n = job.request.chat, len(job.settings)
    generated, offsets = [0] * n, [0] * n
    opened = [not chat] * n  # whether a chat reply has shown text yet (its first text loses the leading space)

    def shown(index: int, delta: str | None) -> str | None:
        if delta and not opened[index]:
            opened[index] = True
            return shown_reply(delta)
        return delta

    if chat:
        for index in range(n):
            yield sse(shapes.chunk(job, rid, index, "", role=True))
    try:
        async for item in events:
            if isinstance(item, Finished):
                reason = shapes.finish_reason(item.event.reason)
                yield sse(shapes.chunk(job, rid, item.index, shown(item.index, item.event.delta) or None, None,
                                       reason, item.state_id))
                continue
            index, event = item
            generated[index] += 1
            lp = None
            if logprobs is not None:
                lp = logprobs.chat([event]) if chat else logprobs.completion([event], offsets[index])
            offsets[index] += len(event.delta or "")
            yield sse(shapes.chunk(job, rid, index, shown(index, event.delta) or "", lp))
    except ApiError as err:
        yield sse(err.body())
    if job.request.include_usage:
        yield sse(shapes.usage_chunk(job, rid, shapes.usage(len(job.prompt_ids), sum(generated))))
    yield sse("[DONE]")
