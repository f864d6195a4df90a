"""One error hierarchy, one body, and errors that survive a hop between services."""

from __future__ import annotations

import pytest

from shared.errors import (
    MediaUnavailableError,
    OverloadedError,
    UnsupportedMediaError,
    UpstreamError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
    WhisperfleetError,
    error_from_body,
)
from shared.media_host import MediaAddressRefusedError


def test_body_has_the_openai_error_shape() -> None:
    body = MediaUnavailableError("gone", param="media_url").body().model_dump()
    assert body == {
        "error": {
            "message": "gone",
            "type": "invalid_request_error",
            "code": "media_unavailable",
            "param": "media_url",
        }
    }


def test_retry_after_header_is_whole_seconds() -> None:
    assert OverloadedError("busy", retry_after_sec=0.2).headers() == {"Retry-After": "1"}
    assert WhisperfleetError("x").headers() == {}


@pytest.mark.parametrize(
    "error",
    [MediaUnavailableError("m"), OverloadedError("o"), UpstreamTimeoutError("t")],
)
def test_a_peers_error_is_rebuilt_as_the_same_class(error: WhisperfleetError) -> None:
    content = error.body().model_dump_json().encode()
    rebuilt = error_from_body(error.status_code, content, source="peer")
    assert type(rebuilt) is type(error)
    assert rebuilt.message == error.message


@pytest.mark.parametrize(
    ("status", "expected"),
    [(503, UpstreamUnavailableError), (504, UpstreamTimeoutError), (500, UpstreamError)],
)
def test_a_foreign_body_becomes_an_upstream_error_naming_the_peer(
    status: int, expected: type[WhisperfleetError]
) -> None:
    error = error_from_body(status, b"<html>oops</html>", source="model server")
    assert type(error) is expected
    assert "model server" in error.message and "oops" in error.message


def test_an_error_class_of_another_module_is_rebuilt_from_a_peers_body() -> None:
    """Regression: a worker's refusal of a media address reached the end client as a 502
    `upstream_error`: the code table was built before media_host defined its class."""
    body = MediaAddressRefusedError("refused", param="media_url").body().model_dump_json()
    error = error_from_body(422, body.encode(), source="chunk worker")
    assert type(error) is MediaAddressRefusedError and error.status_code == 422


def test_a_code_is_rebuilt_as_the_class_that_defines_it_not_a_subclass_sharing_it() -> None:
    """Regression: a peer's `unsupported_media` came back as NestedOpenRefusedError, a subclass
    that keeps its parent's code (same status and message, the wrong class)."""
    from shared.containers import NestedOpenRefusedError

    assert NestedOpenRefusedError.code == UnsupportedMediaError.code
    body = UnsupportedMediaError("no audio stream").body().model_dump_json()
    assert type(error_from_body(415, body.encode(), source="chunk worker")) is UnsupportedMediaError
