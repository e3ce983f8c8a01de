"""Generation for the playground, run through the shared Engine: a node's kept state and logits go in, the
finished (or stopped) continuation comes back as a new node of the session tree.

The session tree generates with the model's own decode loop; here the same continuation is submitted to the
engine instead (state=, logits=, context= as the tree keeps them), so every user's generation shares one
batched decode forward per step and a queue with a size limit. The handles' events go into the tree through
state_tree.grow.Growth, as the library's own generation does, so the node reads exactly like one the tree
generated itself.

A stream that ends early (its generator closed: the browser went away or Gradio cancelled the event; or a
row failed) cancels every engine request of its job at once, so the engine frees their slots within one
step, and keeps what was streamed so far as nodes, as the Stop button does.
"""
from __future__ import annotations

import time
from contextlib import closing
from dataclasses import dataclass, field
from typing import Iterator

from ..engine import EngineBusy, ErrorFinish
from ..errors import RwkvError
from ..core.generation import FinishEvent, TokenEvent
from ..state_tree import SessionError
from ..state_tree.continuation import Branch, Row, resolve_row
from ..state_tree.grow import Growth

POLL_S = 0.05
UPDATE_S = 1 / 15  # the most often a stream yields: a person reads ~15-20 updates a second, and every yield is a
# message to the browser (4 columns x 512 tokens unthrottled were ~2,000 messages that froze the tab)
IDLE_YIELD_S = 0.25  # with no token for this long (queued, or a slow step), yield the text unchanged: a
# generator can only be closed (the client went away, Gradio cancelled the event) while it is suspended
STOP_WAIT_S = 1.0  # Stop (in the stream's own thread): the most it waits for the engine to retire a stopped row
# (its next step), so the row's node keeps its state; without it (or when the stream is closed) the tokens
# delivered are kept, without a state


class QueueFull(RwkvError):
    """The shared engine's queue is full: the UI says so and the user tries again."""


@dataclass
class Job:
    """The generations one user action started; `cancel()` stops them all (the Stop button).
    `nodes`: once the stream has ended (however it ended), the node each row added (None: nothing kept)."""

    handles: list = field(default_factory=list)
    stopped: bool = False
    nodes: list = field(default_factory=list)

    def cancel(self) -> None:
        self.stopped = True
        for handle in self.handles:
            handle.cancel()


def submit_rows(engine, tree, parent: str, branches: list[Branch], job: Job) -> list[Row]:
    """Resolve the branches (settings checked now) and queue one engine request per branch."""
    rows = [resolve_row(tree, branch) for branch in branches]
    state, logits = tree.state_at(parent)  # 5 x (1, C, L), (V,): copies, the tree's own stay untouched
    if logits is None:
        raise SessionError("nothing to continue at the root: give some text first")
    context = tree.path_tokens(parent)
    try:
        for index, row in enumerate(rows):
            job.handles.append(engine.submit(sampling=row.settings, state=state, logits=logits, context=context,
                                             top_alternatives=tree.top_alternatives, row=index))
    except EngineBusy as err:
        job.cancel()
        raise QueueFull(f"The server is busy ({err}). Please try again in a moment.") from None
    except BaseException:
        job.cancel()
        raise
    return rows


def stream_ticks(engine, tree, parent: str, branches: list[Branch], role: str, job: Job,
                 interval: float = UPDATE_S) -> Iterator[dict[int, str]]:
    """Yield {row index: text so far} for the rows that changed, at most once per `interval` seconds (and when a
    row finishes; an unchanged row after IDLE_YIELD_S with no token, so the stream can be closed); when it ends,
    `job.nodes` holds the new nodes in branch order. Closed early or failed: the job's requests are cancelled
    and the rows streamed so far are kept."""
    growth = Growth(tree, parent, submit_rows(engine, tree, parent, branches, job), role)
    texts = [""] * len(growth.rows)
    live = list(range(len(growth.rows)))
    dirty: set[int] = set()
    last_yield = -float("inf")  # the first token goes out at once (and Gradio can cancel the stream from then on)
    try:
        while live and not job.stopped:  # Stop: end now; the rows streamed so far are kept (finally)
            finished = False
            for index in list(live):
                event = next_event(job.handles[index], POLL_S / len(live))
                if isinstance(event, TokenEvent):
                    growth.feed(event)
                    texts[index] += event.delta or ""
                    dirty.add(index)
                elif isinstance(event, FinishEvent):
                    live.remove(index)
                    texts[index] = finish_row(growth, event) or texts[index]
                    dirty.add(index)
                    finished = True
            now = time.monotonic()
            if finished or now - last_yield >= (interval if dirty else IDLE_YIELD_S):
                last_yield = now
                changed = dirty or {live[0] if live else 0}
                dirty = set()
                yield {index: texts[index] for index in sorted(changed)}
        if live:  # Stop: keep what the rows streamed (tokens already delivered included), then show it
            abandon(job, growth, live, STOP_WAIT_S)
            dirty.update(live)
            texts = [tree.node(node).text if node else text for node, text in zip(growth.nodes, texts)]
            live = []
        if dirty or last_yield == -float("inf"):  # the last tokens reach the browser; a stream always yields
            yield {index: texts[index] for index in sorted(dirty or range(len(texts)))}
    finally:
        if live:
            abandon(job, growth, live)
        growth.in_branch_order()
        job.nodes = growth.nodes
        job.handles = []  # let the handles go: a finished one holds its final state and logits


def stream_rows(engine, tree, parent: str, branches: list[Branch], role: str, job: Job,
                interval: float = UPDATE_S) -> Iterator[tuple[int, str]]:
    """Yield (row index, text so far) per changed row, throttled as stream_ticks is (every stream of the app,
    chat included, goes through it)."""
    with closing(stream_ticks(engine, tree, parent, branches, role, job, interval)) as ticks:
        for tick in ticks:
            yield from tick.items()


def stream_texts(engine, tree, parent: str, branches: list[Branch], role: str, job: Job,
                 interval: float = UPDATE_S) -> Iterator[list[str]]:
    """Every row's text once per tick (the compare view: one update carries all its columns)."""
    texts = [""] * len(branches)
    with closing(stream_ticks(engine, tree, parent, branches, role, job, interval)) as ticks:
        for tick in ticks:
            for index, text in tick.items():
                texts[index] = text
            yield list(texts)


def abandon(job: Job, growth: Growth, live: list[int], wait: float = 0.0) -> None:
    """The stream ended before these rows finished: cancel every request of the job (the engine retires them
    at its next step) and keep what they streamed. Waits at most `wait` seconds for their FinishEvents (0 when
    closed: it may run on Gradio's event loop)."""
    job.cancel()
    deadline = time.monotonic() + wait
    for index in live:
        event = drain(job.handles[index], growth, deadline)
        if isinstance(event, FinishEvent) and not isinstance(event, ErrorFinish):
            finish_row(growth, event)
    growth.keep_partial(live)


def drain(handle, growth: Growth, deadline: float) -> FinishEvent | None:
    """Take the events delivered until `deadline` (tokens go to the row); the FinishEvent if it has come."""
    while True:
        try:
            event = handle.next_event(timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            return None
        if isinstance(event, FinishEvent):
            return event
        growth.feed(event)


def next_event(handle, timeout: float = POLL_S):
    try:
        return handle.next_event(timeout=timeout)
    except TimeoutError:
        return None


def finish_row(growth: Growth, event: FinishEvent) -> str:
    """Add the row's node and return its text ("" when nothing was kept); a failed row raises."""
    if isinstance(event, ErrorFinish):
        raise RwkvError(f"generation failed: {event.error}")
    node = growth.finish(event)
    return growth.tree.node(node).text if node else ""
