"""One error hierarchy for all services, mapped to one stable JSON body.

    WhisperfleetError (500 internal_error)
    ├── BadRequestError (400 bad_request)                    OpenAI API: a value we don't offer
    │   └── DiarizationUnavailableError (400 diarization_unavailable)
    │                                                        a worker without the speaker models
    ├── UnauthorizedError (401 invalid_api_key)              no or a wrong API key
    │   └── FleetCredentialError (401 invalid_fleet_credential)
    │                                                        an internal call without the fleet
    │                                                        secret (shared/fleet.py)
    ├── ForbiddenError (403 cross_site_request)              a browser page of another site
    ├── NotFoundError (404 not_found)                        no such job (or not the caller's)
    ├── ConflictError (409 conflict)                         a job's result asked for too early
    ├── RateLimitedError (429 rate_limit_exceeded)           too many jobs of one key at once
    ├── InvalidRequestError (422 invalid_request)
    │   ├── MediaUnavailableError (422 media_unavailable)    media host answered 4xx
    │   ├── RangeNotSupportedError (422 range_not_supported) media host ignores Range
    │   ├── CorruptMediaError (422 corrupt_media)            header the file can't hold
    │   ├── InvalidAudioError (422 invalid_audio)            empty / too long clip
    │   └── MediaAddressRefusedError (422 media_address_refused)
    │                                                        a URL to an address not allowed
    │                                                        (shared/media_host/addresses.py)
    ├── PayloadTooLargeError (413 payload_too_large)        upload or body over its cap
    ├── UnsupportedMediaError (415 unsupported_media)        not decodable / no audio stream
    │   └── NestedOpenRefusedError (415 unsupported_media)   a playlist or reference inside the
    │                                                        data (shared/containers.py)
    ├── MediaHostError (502 media_host_error)                media host down or 5xx
    ├── UpstreamError (502 upstream_error)                   a peer service failed
    ├── UpstreamUnavailableError (503 upstream_unavailable)  a peer service is unreachable
    │   ├── OverloadedError (503 overloaded)                 queue full, retry later
    │   └── NotReadyError (503 not_ready)                    model still loading
    ├── UpstreamTimeoutError (504 upstream_timeout)          deadline passed
    ├── BatchFailedError (500 model_error)                   the model raised on a clip
    │                                                        (services/whisper_gpu/batcher.py)
    └── InsufficientStorageError (507 insufficient_storage)  the media store's disk is full

Body (OpenAI's error shape): `{"error": {"message", "type", "code", "param"}}`. A service that
receives such a body from a peer re-raises the same class (`error_from_body`), so the end client
sees the original cause, e.g. "model server unreachable", not a generic 502.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ValidationError


class ErrorDetail(BaseModel):
    message: str
    type: str
    code: str
    param: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class WhisperfleetError(Exception):
    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    type: ClassVar[str] = "server_error"

    def __init__(
        self, message: str, *, param: str | None = None, retry_after_sec: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.retry_after_sec = retry_after_sec

    def body(self) -> ErrorBody:
        return ErrorBody(
            error=ErrorDetail(
                message=self.message, type=self.type, code=self.code, param=self.param
            )
        )

    def headers(self) -> dict[str, str]:
        if self.retry_after_sec is None:
            return {}
        return {"Retry-After": str(max(1, round(self.retry_after_sec)))}


class BadRequestError(WhisperfleetError):
    status_code = 400
    code = "bad_request"
    type = "invalid_request_error"


class UnauthorizedError(WhisperfleetError):
    status_code = 401
    code = "invalid_api_key"
    type = "invalid_request_error"

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "WWW-Authenticate": "Bearer"}


class FleetCredentialError(UnauthorizedError):
    code = "invalid_fleet_credential"


class ForbiddenError(WhisperfleetError):
    status_code = 403
    code = "cross_site_request"
    type = "invalid_request_error"


class NotFoundError(WhisperfleetError):
    status_code = 404
    code = "not_found"
    type = "invalid_request_error"


class ConflictError(WhisperfleetError):
    status_code = 409
    code = "conflict"
    type = "invalid_request_error"


class RateLimitedError(WhisperfleetError):
    status_code = 429
    code = "rate_limit_exceeded"
    type = "requests"


class InvalidRequestError(WhisperfleetError):
    status_code = 422
    code = "invalid_request"
    type = "invalid_request_error"


class MediaUnavailableError(InvalidRequestError):
    code = "media_unavailable"


class RangeNotSupportedError(InvalidRequestError):
    code = "range_not_supported"


class CorruptMediaError(InvalidRequestError):
    code = "corrupt_media"


class InvalidAudioError(InvalidRequestError):
    code = "invalid_audio"


class PayloadTooLargeError(WhisperfleetError):
    status_code = 413
    code = "payload_too_large"
    type = "invalid_request_error"


class UnsupportedMediaError(WhisperfleetError):
    status_code = 415
    code = "unsupported_media"
    type = "invalid_request_error"


class MediaHostError(WhisperfleetError):
    status_code = 502
    code = "media_host_error"
    type = "upstream_error"


class UpstreamError(WhisperfleetError):
    status_code = 502
    code = "upstream_error"
    type = "upstream_error"


class UpstreamUnavailableError(WhisperfleetError):
    status_code = 503
    code = "upstream_unavailable"
    type = "unavailable_error"


class OverloadedError(UpstreamUnavailableError):
    code = "overloaded"


class NotReadyError(UpstreamUnavailableError):
    code = "not_ready"


class UpstreamTimeoutError(WhisperfleetError):
    status_code = 504
    code = "upstream_timeout"
    type = "timeout_error"


class DiarizationUnavailableError(BadRequestError):
    """Diarization asked of a chunk worker that can't do it (no models, or turned off)."""

    code = "diarization_unavailable"


class InsufficientStorageError(WhisperfleetError):
    status_code = 507
    code = "insufficient_storage"


def _all_subclasses(cls: type[WhisperfleetError]) -> list[type[WhisperfleetError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found.extend(_all_subclasses(sub))
    return found


def _class_for(code: str) -> type[WhisperfleetError]:
    """The class of an error code, among every subclass defined so far: some live in other
    modules (`media_host.MediaAddressRefusedError`), defined after this one is imported."""
    by_code = {
        cls.code: cls
        for cls in _all_subclasses(WhisperfleetError)
        if "code" in vars(cls)  # a subclass that keeps its parent's code is not its class
    }
    return by_code.get(code, UpstreamError)


def error_from_body(status_code: int, content: bytes, *, source: str) -> WhisperfleetError:
    """Rebuild the error a peer service sent; `source` names the peer when its body is foreign."""
    retry_after: float | None = None
    try:
        detail = ErrorBody.model_validate_json(content).error
    except ValidationError:
        text = content.decode("utf-8", "replace").strip()[:200] or "(empty body)"
        message = f"{source} answered HTTP {status_code}: {text}"
        if status_code == 503:
            return UpstreamUnavailableError(message)
        if status_code == 504:
            return UpstreamTimeoutError(message)
        return UpstreamError(message)
    cls = _class_for(detail.code)
    if cls is WhisperfleetError:
        cls = UpstreamError
    if issubclass(cls, UpstreamUnavailableError):
        retry_after = 1.0
    return cls(detail.message, param=detail.param, retry_after_sec=retry_after)


FIELD_TO_FIX = "field_to_fix"
"""The context key a check across a model's fields sets to the field it names (the error's
location is the model itself)."""


def validation_error_body(errors: list[Any]) -> WhisperfleetError:
    """A 422 naming the first offending field, e.g. `params.micro_chunk_size_sec`, or
    `params.min_speakers` for a check across fields that names it (`FIELD_TO_FIX`)."""
    messages = []
    first_param: str | None = None
    for error in errors:
        location = [str(part) for part in error.get("loc", ()) if part not in ("body", "query")]
        if isinstance(field := (error.get("ctx") or {}).get(FIELD_TO_FIX), str):
            location.append(field)
        param = ".".join(location) or None
        first_param = first_param or param
        messages.append(f"{param}: {error.get('msg')}" if param else str(error.get("msg")))
    return InvalidRequestError("; ".join(messages) or "invalid request", param=first_param)
