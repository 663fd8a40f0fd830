"""What ``/v1/classify`` answers besides 200, and the schema that says so: ``ApiError`` (a status and a
one-line message naming the flag or the file), the request body's and the answers' schemas, and the
app's exception handlers, every error a JSON ``{"error", "status"[, "filename"]}``."""
# no ``from __future__ import annotations`` in this module: pydantic reads the schemas' annotations

from typing import Any

ERROR_RESPONSES = {
    400: "an image that cannot be decoded (truncated, corrupt, a decompression bomb), named by `filename`",
    408: "the request body stopped arriving (--body-timeout) or its headers did not come (--header-timeout)",
    413: "a body over --max-bytes, more decoded pixels than --max-request-pixels",
    415: "a content type other than an image or multipart/form-data, or a file that is not an image",
    422: "a malformed request: top_k below 1, no 'file' field, more than --max-files of them (the schema's "
    "maxItems), an empty body",
    503: "busy: the decoding budget (--max-pixels-in-flight) stayed full, or the connection limit was reached",
}


class ApiError(Exception):
    def __init__(self, status: int, message: str, filename: "str | None" = None) -> None:
        super().__init__(message)
        self.status, self.message, self.filename = status, message, filename


class BodyStalled(Exception):
    """A request body that stopped arriving (``--body-timeout``)."""


class BodyTooLarge(Exception):
    """The body passed --max-bytes while it was being read."""


def too_large(max_bytes: int) -> str:
    return f"request body over the {max_bytes:,}-byte limit (--max-bytes)"


def error_body(status: int, message: str, filename: "str | None" = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": message, "status": status}
    if filename is not None:
        body["filename"] = filename
    return body


def install_handlers(app: Any, body_timeout: float, max_bytes: int) -> None:
    """Every exception the app can raise answered as JSON, in one line."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    def error(status: int, message: str, filename: "str | None" = None) -> JSONResponse:
        return JSONResponse(error_body(status, message, filename), status_code=status)

    async def api_error(request: Any, e: ApiError) -> JSONResponse:
        return error(e.status, e.message, e.filename)

    async def body_stalled(request: Any, e: BodyStalled) -> JSONResponse:
        r = error(408, f"the request body stopped arriving (no byte for {body_timeout:g} s; --body-timeout)")
        r.headers["connection"] = "close"
        return r

    async def body_too_large(request: Any, e: BodyTooLarge) -> JSONResponse:
        return error(413, too_large(max_bytes))

    async def invalid(request: Any, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x not in ("query", "body"))
        return error(422, f"malformed request: {where + ': ' if where else ''}{first.get('msg', 'invalid')}")

    async def http(request: Any, e: StarletteHTTPException) -> JSONResponse:
        r = error(e.status_code, str(e.detail))
        r.headers.update(e.headers or {})  # a 405's Allow (RFC 9110 requires it)
        return r

    for exc, handler in (
        (ApiError, api_error),
        (BodyStalled, body_stalled),
        (BodyTooLarge, body_too_large),
        (RequestValidationError, invalid),
        (StarletteHTTPException, http),
    ):
        app.add_exception_handler(exc, handler)


def classify_body(max_files: int, max_bytes: int) -> dict[str, Any]:
    """The request body of /v1/classify as OpenAPI says it: multipart 'file' fields (1 to --max-files
    images) or one raw image, never empty (422). --max-bytes (413) is the description's: JSON Schema's
    maxLength counts characters, and API testers read it so of binary data."""
    binary = {
        "type": "string",
        "format": "binary",
        "minLength": 1,
        "description": f"an image file's bytes; a body over {max_bytes:,} bytes gets 413 (--max-bytes)",
    }
    return {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "array", "items": binary, "minItems": 1, "maxItems": max_files}},
                }
            },
            "image/png": {"schema": binary},
            "image/jpeg": {"schema": binary},
            "application/octet-stream": {"schema": binary},
        },
    }


def api_schemas() -> dict[str, Any]:
    """The pydantic models the OpenAPI schema describes the answers with (pydantic comes with FastAPI)."""
    from pydantic import BaseModel, ConfigDict, Field

    class Error(BaseModel):
        error: str = Field(description="what went wrong, one line, naming the flag or the file")
        status: int
        filename: str | None = Field(None, description="the file the error is about, when there is one")

    class Health(BaseModel):
        status: str

    class Prediction(BaseModel):
        label: str
        index: int
        prob: float = Field(ge=0.0, le=1.0)

    class Result(BaseModel):
        filename: str
        top: list[Prediction]
        ms: float

    class Classification(BaseModel):
        model: str
        results: list[Result]

    class ModelInfo(BaseModel):
        model_config = ConfigDict(extra="allow", protected_namespaces=())
        name: str
        num_classes: int
        classes: list[str]
        backend: str

    return {"Error": Error, "Health": Health, "Classification": Classification, "ModelInfo": ModelInfo}
