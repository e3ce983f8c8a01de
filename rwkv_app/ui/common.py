"""What every tab shares: the per-session state, turning service errors into visible messages, ZeroGPU."""
from __future__ import annotations

import functools
import inspect

import gradio as gr

from ..errors import InputError, RwkvError
from .errors import public_message

try:  # Hugging Face ZeroGPU Spaces: GPU work runs inside @spaces.GPU; elsewhere this is a no-op
    import spaces

    gpu = spaces.GPU
except ImportError:  # not on a Space
    def gpu(fn):
        return fn

USER_ERRORS = (RwkvError, ValueError, KeyError, OSError)


class Context:
    """The shared playground plus the per-session gr.State every callback takes as its last input."""

    def __init__(self, playground):
        self.playground = playground
        self.state = gr.State(None, time_to_live=playground.options.session_ttl_s, delete_callback=close_session)
        self.presets = playground.sampling_presets()

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
    return public_message(err)  # no server paths in what the browser sees


def guarded(fn):
    """Service errors become a visible gr.Error; the session itself is untouched and keeps working."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def stream(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except USER_ERRORS as err:
                raise gr.Error(message(err)) from None
        return stream

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as err:
            raise gr.Error(message(err)) from None
    return call


def number(value, default=None):
    """A gr.Number's value as an int (None stays None)."""
    if value is None or value == "":
        return default
    try:
        return int(value)  # a float is truncated; NaN, infinities, lists and words are refused
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"expected a whole number, got {value!r:.40}") from None
