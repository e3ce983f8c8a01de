"""What every tab shares: the per-session state, turning service errors into visible messages, ZeroGPU."""
from __future__ import annotations

import functools
import html
import inspect
import logging
import re

import gradio as gr
from gradio.context import LocalContext

from ..errors import InputError, RwkvError, WrongModelError
from ..services import release_thread_pool
from .errors import public_message, strip_paths
from .inputs import Slider

try:  # Hugging Face ZeroGPU Spaces: GPU work runs inside @spaces.GPU; elsewhere this is a no-op
    import spaces

    gpu = spaces.GPU
except ImportError:  # not on a Space
    def gpu(fn):
        return fn

USER_ERRORS = (RwkvError, ValueError, KeyError, OSError)
MAX_SEED = 2 ** 64 - 1
SEED_ERROR = f"Seed must be a whole number from 0 to {MAX_SEED}"
QUIET = "hidden"  # show_progress of events whose outputs must stay as they were when the input is refused:
# Gradio draws an "Error" badge over every output of a failed event unless its progress display is hidden
log = logging.getLogger("rwkv_app.ui")


class Context:
    """The shared playground plus the per-session gr.State every callback takes as its last input."""

    def __init__(self, playground):
        self.playground = playground
        self.state = gr.State(None, time_to_live=playground.options.session_ttl_s, delete_callback=close_session)
        self.presets = playground.sampling_presets()
        self.reopened: list = []  # events after which another conversation may be open (the Chat tab's panel shows its settings)

    def ensure(self, session, request: gr.Request | None = None):
        """This browser session's UserSession, created on its first action (API clients included) and
        registered under the request's session hash, so `unload` frees it as soon as the browser session ends."""
        if session is not None and not session.closed:
            return session
        client = getattr(request, "session_hash", None)
        return self.playground.session_for(client) if client else self.playground.new_session()

    def unload(self, request: gr.Request) -> None:
        """Gradio's unload event (the tab closed or the client disconnected): free the session now, rather
        than when its gr.State is deleted (an hour later); the state's delete callback stays as a second line."""
        if request is not None and request.session_hash:
            self.playground.client_gone(request.session_hash)


def close_session(session) -> None:
    if session is not None:
        session.close()


def message(err: BaseException) -> str:
    """The error's text for the browser (no server paths); a file made for another model also says what to do."""
    text = public_message(err)
    if isinstance(err, WrongModelError):
        text = (f"{text.rstrip('.')}. To open this file, load {strip_paths(err.needed)} first (Models tab, or the "
                f"/load_model endpoint), then try again")
    return text


def toast(text: str) -> None:
    """A warning toast showing `text` as written: Gradio draws a toast's text as HTML, so a visitor's "<b>x</b>" or
    "a<script>" echoed in a message (a node id, a file or conversation name) would be drawn or dropped."""
    gr.Warning(html.escape(text, quote=False))


MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")


def as_typed(text: str) -> str:
    """A visitor's text for a gr.Markdown line, shown as typed: HTML escaped and Markdown's punctuation
    backslashed (a conversation named "<b>x</b>" or "*x*" was drawn bold in the status line)."""
    return MARKDOWN_PUNCTUATION.sub(r"\\\1", html.escape(text, quote=False))


def refuse(err: BaseException, where: str) -> gr.Error:
    """A visitor's bad input (or an expected failure, such as a model that cannot load): one log line, a warning
    toast in the browser, and a hidden gr.Error so the event stops, outputs unchanged and API clients get the text.
    Unexpected exceptions are not caught here: Gradio logs their traceback (a real fault)."""
    text = message(err)
    log.warning("refused %s: %s", where, text)
    if LocalContext.event_id.get(None) is not None:  # inside a Gradio event: the toast goes to that browser
        toast(text)
    return gr.Error(text, visible=False, print_exception=False)


def _on_user_error(fn, handle):
    """`fn` (a function or a generator function) with USER_ERRORS passed to `handle(err, name)`, whose return
    value (raised if it is an exception, else returned or yielded) ends the call. Afterwards the worker thread
    lets its OpenMP threads go, so the engine's thread keeps the only pool (rwkv_app/core/openmp.py)."""
    def outcome(err):
        result = handle(err, fn.__name__)
        if isinstance(result, BaseException):
            raise result from None
        return result

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def stream(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except USER_ERRORS as err:
                yield outcome(err)
            finally:
                release_thread_pool()
        return stream

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as err:
            return outcome(err)
        finally:
            release_thread_pool()
    return call


def guarded(fn):
    """Service errors become a warning toast and an error for API clients; the session is untouched."""
    return _on_user_error(fn, refuse)


def skip_output(err: BaseException, where: str):
    """A page event's refused input: one log line, a warning toast, and every output left as it was."""
    text = message(err)
    log.warning("refused %s: %s", where, text)
    toast(text)
    return gr.skip()


def warned(fn):
    """For the page's events (not API endpoints): an input error is a warning toast, outputs stay as they were."""
    return _on_user_error(fn, skip_output)


def length_slider(limit: int, value: int, **kwargs) -> gr.Slider:
    """"Max new tokens": the range the server accepts (1 to `limit`), written under the label. Gradio's slider puts
    a typed number outside its range back at the nearest end when the box loses focus; with the range in sight,
    a typed 0 becoming 1 or 9999 becoming the limit is what the visitor was told (an API call outside it is
    refused, naming the range)."""
    return Slider(1, limit, value=max(1, min(value, limit)), step=1, label="Max new tokens",
                     info=f"1 to {limit:,} (this server's limit)", **kwargs)


def seed_value(value):
    """A seed box's value as an int in [0, 2**64); empty means None (a fresh random seed, recorded on the node)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    refused = InputError(f"{SEED_ERROR}, got {str(value).strip():.40}")  # named: 3.7 is never rounded silently
    try:
        seed = int(str(value).strip()) if isinstance(value, str) else value
        if isinstance(seed, float) and seed.is_integer():
            seed = int(seed)
    except ValueError:
        raise refused from None
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise refused
    return seed


def number(value, default=None, what: str = "the value"):
    """A gr.Number's or a slider's value as an int (None stays None); a fraction, NaN, an infinity, a list or a
    word is refused, naming `what`."""
    if value is None or value == "":
        return default
    try:
        whole = int(value)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{what} must be a whole number, got {value!r:.40}") from None
    if isinstance(value, float) and value != whole:
        raise InputError(f"{what} must be a whole number, got {value:g}")
    return whole


def length_value(value):
    """The "Max new tokens" slider's value (see length_slider) as an int; a typed 2.5 is refused by name."""
    return number(value, what="Max new tokens")
