"""Running a prepared request on the shared engine, as an async stream of choice events.

One prefill: the new tokens go through the engine once (max_new_tokens=0, batched with everyone's prefill),
and the state after them is kept as the prompt's node. Then n generations start from that same (state, logits)
(an RNN forks for free), all batched in the engine's decode step with every other API client and browser.
Each finished choice becomes a node under the prompt's node (through state_tree.grow.Growth, as every
generation of the tree does); its id is the choice's `state_id`.

A stream that is abandoned (the client went away: the async generator is closed or cancelled) cancels every
engine handle of the request at once, so the engine frees their rows at its next step.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

from anyio import to_thread

from ..engine import ErrorFinish
from ..core.generation import FinishEvent, TokenEvent
from ..state_tree.continuation import Row
from ..state_tree.grow import Growth
from .errors import ApiError, as_api_error
from .service import Prepared

POLL_S = 0.005
DISCONNECT_CHECK_S = 0.25


@dataclass
class Finished:
    """A choice is done: `event` is the engine's FinishEvent, `state_id` the node it became."""

    index: int
    event: FinishEvent
    state_id: str | None


async def wait_finish(handle, is_disconnected=None) -> FinishEvent:
    """The FinishEvent of a prefill-only request (no TokenEvents come)."""
    waited = 0.0
    while True:
        try:
            event = handle.next_event(timeout=0)
        except TimeoutError:
            await asyncio.sleep(POLL_S)
            waited += POLL_S
            if is_disconnected is not None and waited >= DISCONNECT_CHECK_S:
                waited = 0.0
                if await is_disconnected():
                    handle.cancel()
                    raise asyncio.CancelledError
            continue
        if isinstance(event, FinishEvent):
            return event


async def prefill(job: Prepared, is_disconnected=None) -> tuple[str, list, object, list[int]]:
    """Take the new tokens in (one engine prefill) and keep their node; returns (node, state, logits, context)."""
    if not job.prompt_ids:
        return job.parent, job.state, job.logits, job.context
    handle = job.engine.submit(job.prompt_ids, state=job.state, context=job.context or None, max_new_tokens=0)
    try:
        event = await wait_finish(handle, is_disconnected)
    finally:
        handle.cancel()  # a no-op once finished
    if isinstance(event, ErrorFinish) or event.state is None:
        raise ApiError(500, f"prefill failed: {getattr(event, 'error', event.reason)}", "server_error")

    def keep() -> str:
        with job.api_tree.lock:
            tree = job.api_tree.tree
            tree.node(job.parent)  # still there (not deleted meanwhile)
            node = tree.add(job.parent, job.prompt_role, job.prompt_ids, job.prompt_text)
            tree.store.put(node.id, event.state, event.logits)
            return node.id

    node = await to_thread.run_sync(keep)
    return node, event.state, event.logits, job.context + job.prompt_ids


@dataclass
class Started:
    parent: str  # the prompt's node: the choices go under it
    handles: list
    growth: Growth  # the choices' rows, becoming nodes under `parent`

    def cancel(self) -> None:
        for handle in self.handles:
            handle.cancel()


async def start(job: Prepared, registry, is_disconnected=None) -> Started:
    """Prefill, then queue the n choices; raises (an ApiError) before anything is streamed."""
    parent, state, logits, context = await prefill(job, is_disconnected)
    registry.touch(job.api_tree, parent)
    tree = job.api_tree.tree
    started = Started(parent, [], Growth(tree, parent, [], job.reply_role))
    try:
        for index, settings in enumerate(job.settings):
            started.growth.rows.append(Row(settings, None, tree.model, tree.identity.model_id))
            started.handles.append(job.engine.submit(sampling=settings, state=state, logits=logits, context=context,
                                                     top_alternatives=job.top_alternatives, row=index))
    except BaseException as err:
        started.cancel()
        raise as_api_error(err) from err
    return started


async def generate(job: Prepared, registry, started: Started, is_disconnected=None):
    """Yield (index, TokenEvent) and Finished items, choices interleaved as the engine steps; leaving early
    (closed, cancelled, failed) cancels every choice still running."""
    try:
        async for item in events(job, registry, started.handles, started.growth, is_disconnected):
            yield item
    except BaseException as err:
        started.cancel()
        if isinstance(err, (asyncio.CancelledError, GeneratorExit)):
            raise
        raise as_api_error(err) from err


async def events(job: Prepared, registry, handles: list, growth: Growth, is_disconnected):
    live, waited = set(range(len(handles))), 0.0
    while live:
        got = False
        for index in sorted(live):
            try:
                event = handles[index].next_event(timeout=0)
            except TimeoutError:
                continue
            got = True
            if isinstance(event, TokenEvent):
                growth.feed(event)
                yield index, event
            elif isinstance(event, FinishEvent):
                live.discard(index)
                yield Finished(index, event, await to_thread.run_sync(record, job, registry, growth, event))
        if not got:
            await asyncio.sleep(POLL_S)
            waited += POLL_S
            if is_disconnected is not None and waited >= DISCONNECT_CHECK_S:
                waited = 0.0
                if await is_disconnected():
                    raise asyncio.CancelledError


def record(job: Prepared, registry, growth: Growth, event: FinishEvent) -> str | None:
    """The finished choice as a node under the prompt's node (its state kept); its id, or None on failure."""
    if isinstance(event, ErrorFinish):
        raise ApiError(500, f"generation failed: {event.error}", "server_error")
    with job.api_tree.lock:
        if growth.parent not in job.api_tree.tree.nodes:
            return None
        node = growth.finish(event)
    if node is not None:
        registry.touch(job.api_tree, node)
    return node
