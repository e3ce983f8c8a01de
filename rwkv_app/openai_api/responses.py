"""OpenAI's response shapes: completions and chat completions, whole or as stream chunks, with logprobs,
usage and finish reasons; plus this server's `state_id` on each choice (and on the response, for choice 0)."""
from __future__ import annotations

import math
import secrets
import time

from ..engine import CANCELLED
from ..core.generation import LENGTH

LOGPROB_FLOOR = -9999.0  # OpenAI's value for a probability that underflows


def new_id(chat: bool) -> str:
    return ("chatcmpl-" if chat else "cmpl-") + secrets.token_hex(12)


def finish_reason(reason: str) -> str:
    """eos, stop strings and criteria read as "stop"; the length cap as "length"."""
    return "length" if reason == LENGTH else ("cancelled" if reason == CANCELLED else "stop")


def logprob(p: float) -> float:
    return math.log(p) if p > 0 else LOGPROB_FLOOR


class Logprobs:
    """Per-token logprobs in either shape, from TokenEvents (their `prob` and `top` are the model's own)."""

    def __init__(self, tokenizer, top: int):
        self.tokenizer, self.top = tokenizer, top

    def text(self, token: int) -> str:
        return self.tokenizer.decode([token])

    def completion(self, events, offset: int = 0) -> dict:
        tokens = [self.text(e.token) for e in events]
        offsets, at = [], offset
        for token in tokens:
            offsets.append(at)
            at += len(token)
        return {"tokens": tokens, "token_logprobs": [logprob(e.prob) for e in events],
                "top_logprobs": [{self.text(t): logprob(p) for t, p in e.top[:self.top]} for e in events],
                "text_offset": offsets}

    def chat(self, events) -> dict:
        def entry(token: int, p: float) -> dict:
            text = self.text(token)
            return {"token": text, "logprob": logprob(p), "bytes": list(text.encode("utf-8"))}

        return {"content": [{**entry(e.token, e.prob), "top_logprobs": [entry(t, p) for t, p in e.top[:self.top]]}
                            for e in events], "refusal": None}


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def envelope(chat: bool, rid: str, model: str, chunk: bool) -> dict:
    kind = ("chat.completion" if chat else "text_completion") + (".chunk" if chat and chunk else "")
    return {"id": rid, "object": kind, "created": int(time.time()), "model": model}


def whole_response(job, rid: str, choices: list[dict], usage_counts: dict) -> dict:
    body = {**envelope(job.request.chat, rid, job.model_name, False), "choices": choices, "usage": usage_counts,
            "system_fingerprint": None}
    body["state_id"] = choices[0].get("state_id") if choices else None
    return body


def whole_choice(chat: bool, index: int, text: str, reason: str, logprobs: dict | None, state_id) -> dict:
    if chat:
        return {"index": index, "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": logprobs, "finish_reason": reason, "state_id": state_id}
    return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": reason, "state_id": state_id}


def chunk(job, rid: str, index: int, text: str | None, logprobs: dict | None = None, reason: str | None = None,
          state_id: str | None = None, role: bool = False) -> dict:
    if job.request.chat:
        delta = {"role": "assistant", "content": text or ""} if role else ({} if text is None else {"content": text})
        choice = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": reason}
    else:
        choice = {"index": index, "text": text or "", "logprobs": logprobs, "finish_reason": reason}
    if state_id is not None:
        choice["state_id"] = state_id
    return {**envelope(job.request.chat, rid, job.model_name, True), "choices": [choice]}


def usage_chunk(job, rid: str, usage_counts: dict) -> dict:
    return {**envelope(job.request.chat, rid, job.model_name, True), "choices": [], "usage": usage_counts}
