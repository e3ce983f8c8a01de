"""One soak user's calls to the app through gradio_client: a streamed call timed update by update, a call
cancelled mid-stream (Job.cancel(), what a client's Stop does), and a call whose connection is dropped
mid-stream (what a closed tab does), plus how an app error is told apart from an expected refusal."""
from __future__ import annotations

import time
from dataclasses import dataclass

import httpx

POLL_S = 0.005
CALL_TIMEOUT_S = 300.0
REFUSALS = ("busy",)  # an app error saying one of these is the server refusing work on purpose, not a failure


@dataclass
class Sample:
    """One streamed call: time to its first generated text, and its streamed updates after that."""

    api_name: str
    ttft: float | None  # seconds from submit to the first update carrying generated text
    updates: int  # updates that changed the generated text (the server sends one per token)
    stream_s: float  # from the first such update to the last

    @property
    def rate(self) -> float | None:
        return (self.updates - 1) / self.stream_s if self.updates > 1 and self.stream_s > 0 else None


def is_refusal(message: str) -> bool:
    return any(word in message.lower() for word in REFUSALS)


def generated_text(output) -> str:
    """The generated part of an endpoint's output: a text, the last chat message's text, or compare's columns."""
    if isinstance(output, str):
        return output
    if isinstance(output, (list, tuple)) and output and isinstance(output[-1], dict):  # chat messages
        content = output[-1].get("content", "") if output[-1].get("role") == "assistant" else ""
        return content if isinstance(content, str) else "".join(p.get("text", "") for p in content)
    if isinstance(output, (list, tuple)):  # compare: one text per column
        return "\x00".join(x for x in output if isinstance(x, str))
    return ""


def stream(client, api_name: str, *args) -> tuple[object, Sample]:
    """Submit, watch the updates arrive, return the final output and the timing (raises the app's error)."""
    start = time.perf_counter()
    job = client.submit(*args, api_name=api_name)
    seen, first, last, changes, text = 0, None, None, 0, ""
    while True:
        done = job.done()
        outputs = job.outputs()
        for output in outputs[seen:]:
            now = time.perf_counter()
            new = generated_text(output)
            if new.strip("\x00") and new != text:
                first = first or now
                last, changes, text = now, changes + 1, new
        seen = len(outputs)
        if done:
            break
        if time.perf_counter() - start > CALL_TIMEOUT_S:
            job.cancel()
            raise TimeoutError(f"{api_name} did not finish within {CALL_TIMEOUT_S:.0f} s")
        time.sleep(POLL_S)
    result = job.result()
    return result, Sample(api_name, None if first is None else first - start, changes,
                          0.0 if first is None else last - first)


def cancel_mid_stream(client, api_name: str, args: tuple, after_updates: int) -> int:
    """Submit a streamed call and Job.cancel() it once `after_updates` updates arrived; the updates seen."""
    job = client.submit(*args, api_name=api_name)
    start = time.perf_counter()
    while not job.done() and len(job.outputs()) < after_updates:
        if time.perf_counter() - start > CALL_TIMEOUT_S:
            break
        time.sleep(POLL_S)
    seen = len(job.outputs())
    job.cancel()
    wait_done(job)
    return seen


def wait_done(job, timeout_s: float = 30.0) -> None:
    """Until the cancelled job's future settles (its outcome, cancelled or an error, is the cancel's)."""
    deadline = time.monotonic() + timeout_s
    while not job.done() and time.monotonic() < deadline:
        time.sleep(POLL_S)


def raw_payload(client, api_name: str, args: tuple) -> dict:
    """What gradio_client posts to join the queue: the endpoint's function index and every input, each
    gr.State as None (the server keeps the session's state), from the config the client fetched."""
    name = api_name.lstrip("/")
    dependency = next((d for d in client.config["dependencies"] if d.get("api_name") == name), None)
    if dependency is None:
        raise KeyError(f"the app has no endpoint {api_name}")
    kinds = {c["id"]: c.get("type") for c in client.config["components"]}
    values = iter(args)
    data = [None if kinds.get(i) == "state" else next(values) for i in dependency["inputs"]]
    return {"data": data, "fn_index": dependency["id"], "session_hash": client.session_hash, "event_data": None,
            "trigger_id": None}


def drop_mid_stream(client, api_name: str, args: tuple, after_updates: int) -> int:
    """Start a streamed call on the client's session over a raw SSE connection, read `after_updates` updates,
    then drop the connection and close the client (its heartbeat too): a browser tab closed mid-stream.
    Returns the updates seen. The caller must not use the client afterwards."""
    joined = httpx.post(client.sse_data_url, json=raw_payload(client, api_name, args), timeout=30)
    joined.raise_for_status()
    seen = 0
    with httpx.stream("GET", client.sse_url, params={"session_hash": client.session_hash},
                      timeout=httpx.Timeout(30.0)) as response:
        for line in response.iter_lines():
            if '"process_generating"' in line:
                seen += 1
            if seen >= after_updates or '"process_completed"' in line:
                break
    client.close()
    return seen
