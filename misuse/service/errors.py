"""One JSON error shape for the whole API.

Every error response has the body ``{"error": {"status": int, "code": str, "message": str,
"details": list}}``; ``tests/service/test_api.py`` checks it across endpoints.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from misuse.errors import InvalidParameterError, MisuseError, NotFittedError, NotFoundError, ParseError, SchemaError

log = logging.getLogger("misuse.service")

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    500: "internal_error",
    503: "unavailable",
}


class ErrorBody(BaseModel):
    """The inner error object."""

    status: int
    code: str
    message: str
    details: list[Any] = []


class ErrorResponse(BaseModel):
    """The body of every error response."""

    error: ErrorBody


class ApiError(Exception):
    """An error with an HTTP status, raised by route code.

    Parameters
    ----------
    status:
        HTTP status code.
    message:
        What went wrong, naming the thing and the value.
    code:
        Short machine-readable code; derived from the status when omitted.
    """

    def __init__(self, status: int, message: str, code: str | None = None, details: list[Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or _CODES.get(status, "error")
        self.details = details or []


def error_response(
    status: int,
    message: str,
    code: str | None = None,
    details: list[Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """Build a response in the one error shape."""
    body = {
        "error": {
            "status": status,
            "code": code or _CODES.get(status, "error"),
            "message": message,
            "details": details or [],
        }
    }
    return JSONResponse(body, status_code=status, headers=headers)


_WHEN = {
    401: "no bearer token, or an invalid or revoked one",
    403: "the token's role is below the one this route needs",
    413: "the request body is larger than the setting `max_body_bytes`",
    422: "a parameter or the body is invalid (one `details` entry per problem)",
    500: "an unexpected failure (what it was goes to the server log only)",
}


def error_docs(*errors: int | tuple[int, str] | tuple[int, str, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the errors a route answers, all with the one error body.

    Each error is a status with a known meaning (401, 403, 413, 422, 500), ``(status, when)`` or
    ``(status, code, when)`` when the code is not the status's usual one.

    Examples
    --------
    >>> error_docs(401, (404, "no alert with this id"))[404]["description"]
    '`not_found`: no alert with this id'
    """
    out: dict[int | str, dict[str, Any]] = {}
    for e in errors:
        if isinstance(e, int):
            status, code, when = e, _CODES[e], _WHEN[e]
        elif len(e) == 2:
            status, code, when = e[0], _CODES[e[0]], e[1]
        else:
            status, code, when = e
        out[status] = {"model": ErrorResponse, "description": f"`{code}`: {when}"}
    return out


def install(app: FastAPI) -> None:
    """Register handlers so that every error leaves the app in the one shape."""

    async def api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(exc.status, exc.message, exc.code, exc.details, headers)

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return error_response(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    async def validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        details = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()
        ]
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        message = f"{'.'.join(first['loc'])}: {first['msg']}" if first["loc"] else str(first["msg"])
        return error_response(422, message, details=details)

    async def misuse_error(_: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, ParseError | SchemaError | InvalidParameterError):
            return error_response(422, str(exc))
        if isinstance(exc, NotFittedError):
            return error_response(409, str(exc), code="no_model")
        if isinstance(exc, NotFoundError):
            return error_response(404, str(exc))
        # anything else is the server's problem; its message may name server paths, so it goes to the log only
        log.error("unhandled %s: %s", type(exc).__name__, exc)
        return error_response(500, f"internal error ({type(exc).__name__})")

    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, f"internal error ({type(exc).__name__})")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(MisuseError, misuse_error)
    app.add_exception_handler(Exception, unexpected)
