"""Parsing and checking the JSON of /v1/completions and /v1/chat/completions into one GenRequest.

Each check names the parameter at fault (OpenAI's `param`); a parameter this server does not know is refused,
as OpenAI refuses one, rather than silently ignored. Extensions: `state_id` (continue from a kept state),
`top_k`, `min_p`, `repetition_penalty`.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from .errors import bad_request

MAX_N = 8  # choices of one request (the session tree's compare limit)
MAX_STOPS = 4
COMPLETION_DEFAULT_TOKENS = 16  # OpenAI's default for /v1/completions
ROLES = ("system", "developer", "user", "assistant")
COMMON = {"model", "max_tokens", "temperature", "top_p", "n", "stream", "stream_options", "stop", "seed",
          "presence_penalty", "frequency_penalty", "logit_bias", "user", "state_id", "top_k", "min_p",
          "repetition_penalty"}
COMPLETION_FIELDS = COMMON | {"prompt", "logprobs", "echo", "suffix", "best_of"}
CHAT_FIELDS = COMMON | {"messages", "logprobs", "top_logprobs", "max_completion_tokens", "response_format"}
# OpenAI chat parameters this server knows but cannot honour: refused as unsupported, not as unknown
UNSUPPORTED_CHAT = {"tools": "tool calling", "tool_choice": "tool calling", "parallel_tool_calls": "tool calling",
                    "functions": "function calling", "function_call": "function calling", "audio": "audio output",
                    "modalities": "other output modalities", "prediction": "predicted outputs"}


@dataclass(frozen=True)
class GenRequest:
    chat: bool
    model: str
    prompt: str | list[int] | None = None  # completions: text or token ids ("" with a state_id: regenerate)
    messages: tuple[dict, ...] = ()  # chat: {"role", "content"} with content a string
    max_tokens: int | None = None  # None: the server's cap (chat) / 16 (completions)
    n: int = 1
    stream: bool = False
    include_usage: bool = False
    stop: tuple[str, ...] = ()
    seed: int | None = None
    top_logprobs: int | None = None  # None: no logprobs
    state_id: str | None = None
    sampling: dict[str, Any] = field(default_factory=dict)  # SamplingSettings fields


def parse_json(body: bytes) -> dict:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise bad_request(f"the request body is not valid JSON: {err}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise bad_request("the request body must be a JSON object")
    return data


def number(data: dict, name: str, default: float, low: float, high: float) -> float:
    value = data.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or not low <= value <= high:
        raise bad_request(f"{name} must be a number in [{low:g}, {high:g}], got {value!r}", name)
    return float(value)


def integer(data: dict, name: str, low: int, high: int | None = None) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        limit = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise bad_request(f"{name} must be an integer {limit}, got {value!r}", name)
    return value


def flag(data: dict, name: str) -> bool:
    value = data.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad_request(f"{name} must be true or false, got {value!r}", name)
    return value


def stops(value) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or len(items) > MAX_STOPS or not all(isinstance(s, str) and s for s in items):
        raise bad_request(f"stop must be a non-empty string or a list of at most {MAX_STOPS} non-empty strings, "
                          f"got {value!r:.80}", "stop")
    return tuple(items)


def logit_bias(value) -> dict[int, float]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request("logit_bias must map token ids to numbers in [-100, 100]", "logit_bias")
    bias = {}
    for key, amount in value.items():
        if not str(key).isdigit() or isinstance(amount, bool) or not isinstance(amount, (int, float)) \
                or not -100 <= amount <= 100:
            raise bad_request(f"logit_bias: {key!r} -> {amount!r} is not token id -> number in [-100, 100]",
                              "logit_bias")
        bias[int(key)] = float(amount)
    return bias


def sampling(data: dict) -> dict[str, Any]:
    """SamplingSettings fields from OpenAI's parameters (temperature 0: greedy)."""
    temperature = number(data, "temperature", 1.0, 0.0, 2.0)
    settings = {"do_sample": temperature > 0, "temperature": temperature,
                "top_p": number(data, "top_p", 1.0, 0.0, 1.0) or 1.0,
                "presence_penalty": number(data, "presence_penalty", 0.0, -2.0, 2.0),
                "frequency_penalty": number(data, "frequency_penalty", 0.0, -2.0, 2.0),
                "top_k": integer(data, "top_k", 0) or 0, "min_p": number(data, "min_p", 0.0, 0.0, 1.0),
                "repetition_penalty": number(data, "repetition_penalty", 1.0, 0.01, 10.0),
                "logit_bias": logit_bias(data.get("logit_bias"))}
    return settings


def check_fields(data: dict, known: set[str]) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise bad_request(f"unrecognized request argument supplied: {unknown[0]}", unknown[0],
                          "unknown_parameter")


def common(data: dict, chat: bool) -> dict[str, Any]:
    model = data.get("model")
    if not isinstance(model, str) or not model.strip():
        raise bad_request("model is required: the name of a model from GET /v1/models", "model")
    state_id = data.get("state_id")
    if state_id is not None and not isinstance(state_id, str):
        raise bad_request(f"state_id must be a string, got {state_id!r:.40}", "state_id")
    options = data.get("stream_options")
    if options is not None and (not isinstance(options, dict) or set(options) - {"include_usage"}):
        raise bad_request("stream_options may only hold include_usage", "stream_options")
    stream = flag(data, "stream")
    if options and not stream:
        raise bad_request("stream_options is only allowed with stream: true", "stream_options")
    return {"chat": chat, "model": model.strip(), "n": integer(data, "n", 1, MAX_N) or 1, "stream": stream,
            "include_usage": bool(options and flag(options, "include_usage")), "stop": stops(data.get("stop")),
            "seed": integer(data, "seed", 0, 2 ** 63 - 1), "state_id": state_id, "sampling": sampling(data)}


def parse_completion(data: dict) -> GenRequest:
    check_fields(data, COMPLETION_FIELDS)
    if flag(data, "echo"):
        raise bad_request("echo is not supported by this server", "echo")
    if data.get("suffix") is not None:
        raise bad_request("suffix is not supported by this server (RWKV has no fill-in-the-middle)", "suffix")
    fields = common(data, chat=False)
    if data.get("best_of") not in (None, fields["n"]):
        raise bad_request("best_of is not supported by this server (use n)", "best_of")
    max_tokens = integer(data, "max_tokens", 1)
    return GenRequest(prompt=prompt_of(data.get("prompt"), fields["state_id"]),
                      max_tokens=COMPLETION_DEFAULT_TOKENS if max_tokens is None else max_tokens,
                      top_logprobs=integer(data, "logprobs", 0, 5), **fields)


def prompt_of(value, state_id) -> str | list[int]:
    """A string, a list of token ids, or a one-item list of either (one prompt per request)."""
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], (str, list)):
        value = value[0]
    if value is None:
        value = ""
    if isinstance(value, list) and value and all(isinstance(t, int) and not isinstance(t, bool) for t in value):
        return value
    if not isinstance(value, str):
        raise bad_request("prompt must be a string or a list of token ids (one prompt per request)", "prompt")
    if not value and state_id is None:
        raise bad_request("prompt is empty: give some text (or a state_id to continue from)", "prompt")
    return value


def parse_chat(data: dict) -> GenRequest:
    for name, feature in UNSUPPORTED_CHAT.items():
        if data.get(name) is not None:
            raise bad_request(f"{name} is not supported by this server: RWKV chat here has no {feature}", name,
                              "unsupported_parameter")
    check_fields(data, CHAT_FIELDS)
    response_format = data.get("response_format")
    if response_format is not None and response_format != {"type": "text"}:
        raise bad_request("response_format: only {\"type\": \"text\"} is supported by this server (no JSON mode)",
                          "response_format", "unsupported_parameter")
    fields = common(data, chat=True)
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages must be a non-empty list of {role, content}", "messages")
    parsed = tuple(message_of(m, i) for i, m in enumerate(messages))
    if parsed[-1]["role"] != "user":
        raise bad_request("the last message must be the user's: the model answers it", "messages")
    want = flag(data, "logprobs")
    top = integer(data, "top_logprobs", 0, 20)
    if top is not None and not want:
        raise bad_request("top_logprobs needs logprobs: true", "top_logprobs")
    max_tokens = integer(data, "max_completion_tokens", 1)
    max_tokens = integer(data, "max_tokens", 1) if max_tokens is None else max_tokens
    return GenRequest(messages=parsed, max_tokens=max_tokens, top_logprobs=(top or 0) if want else None, **fields)


def message_of(message, index: int) -> dict:
    param = f"messages[{index}]"
    if not isinstance(message, dict) or message.get("role") not in ROLES:
        raise bad_request(f"{param} must be an object with role one of {', '.join(ROLES)}", param)
    content = message.get("content")
    if isinstance(content, list):  # content parts: only text parts
        if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                   for p in content):
            raise bad_request(f"{param}.content: only text parts are supported", f"{param}.content")
        content = "".join(p["text"] for p in content)
    if not isinstance(content, str):
        raise bad_request(f"{param}.content must be a string", f"{param}.content")
    role = "system" if message["role"] == "developer" else message["role"]
    return {"role": role, "content": content}
