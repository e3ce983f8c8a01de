"""OpenAI-shaped errors: {"error": {"message", "type", "param", "code"}} with the HTTP status OpenAI uses.

Every failure of a /v1 request ends as an ApiError; `as_api_error` maps the package's own errors (bad input,
unknown node, a busy or closed engine, a model that cannot load) onto one.
"""
from __future__ import annotations

from ..engine import EngineBusy, EngineClosed
from ..errors import InputError, RwkvError
from ..services.manager import ModelLoadError
from ..services import QueueFull

INVALID = "invalid_request_error"


class ApiError(Exception):
    def __init__(self, status: int, message: str, type: str = INVALID, param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, INVALID, param, code)


def not_found(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(404, message, INVALID, param, code)


def busy(message: str) -> ApiError:
    return ApiError(429, message, "rate_limit_error", None, "engine_busy")


def as_api_error(err: BaseException) -> ApiError:
    """The ApiError for any exception a request may meet (a bug reads as a 500 server_error)."""
    if isinstance(err, ApiError):
        return err
    if isinstance(err, (EngineBusy, QueueFull)):
        return busy(str(err))
    if isinstance(err, EngineClosed):
        return ApiError(503, f"the server is shutting down: {err}", "server_error", None, "engine_closed")
    if isinstance(err, ModelLoadError):
        return not_found(str(err), "model", "model_not_found")
    if isinstance(err, InputError):
        return bad_request(str(err))
    if isinstance(err, RwkvError):
        return ApiError(500, str(err), "server_error")
    return ApiError(500, f"internal error: {type(err).__name__}: {err}", "server_error")
