"""Typed streams between services: header, items, footer, or an error frame.

Declare a stream's types once, share the declaration between producer and consumer:

    TYPES = StreamTypes(item=Segment, header=Header, footer=Footer)
    writer = StreamWriter(TYPES)        # producer: models -> bytes, order enforced
    reader = StreamReader(TYPES, body)  # consumer: any async byte iterator -> validated models

Framing is compact and self-delimiting: one kind byte, a 4-byte big-endian payload length, then
the payload (pydantic JSON). Kinds: H header, I item, F footer, E error. A producer that fails
mid-stream sends an E frame (`{"error": {...}}`, the services' error body) instead of just
stopping, so the consumer can tell "failed" from "truncated" and learn why.

Order: header (if declared) first, then items, then footer (if declared); nothing after a footer
or an error. The reader raises `StreamOrderError`, `StreamTruncatedError` (the bytes end inside
a frame, or before a declared footer), `StreamSchemaError` (a payload that doesn't validate), or
`StreamRemoteError` (an error frame, carrying its body).

This module depends on pydantic and the standard library only, so a client can copy it.
"""

from __future__ import annotations

import enum
import json
import struct
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

HeaderT = TypeVar("HeaderT", bound=BaseModel)
ItemT = TypeVar("ItemT", bound=BaseModel)
FooterT = TypeVar("FooterT", bound=BaseModel)
ModelT = TypeVar("ModelT", bound=BaseModel)

_PREFIX = struct.Struct(">cI")
MAX_FRAME_BYTES = 64 * 1024 * 1024
MEDIA_TYPE = "application/x-whisperfleet-stream"


class FrameKind(bytes, enum.Enum):
    HEADER = b"H"
    ITEM = b"I"
    FOOTER = b"F"
    ERROR = b"E"


class StreamError(Exception):
    """Base of every stream failure."""


class StreamOrderError(StreamError):
    pass


class StreamTruncatedError(StreamError):
    pass


class StreamSchemaError(StreamError):
    pass


class StreamRemoteError(StreamError):
    """The producer failed and said why; `body` is its error body (`{"error": {...}}`)."""

    def __init__(self, body: dict[str, Any]) -> None:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        super().__init__(error.get("message", "the producer failed"))
        self.body = body


@dataclass(frozen=True)
class StreamTypes(Generic[ItemT, HeaderT, FooterT]):
    item: type[ItemT]
    header: type[HeaderT] | None = None
    footer: type[FooterT] | None = None


class _State(enum.Enum):
    START = 0
    ITEMS = 1
    DONE = 2


def _frame(kind: FrameKind, payload: bytes) -> bytes:
    return _PREFIX.pack(kind.value, len(payload)) + payload


class StreamWriter(Generic[ItemT, HeaderT, FooterT]):
    """Serialises models to frames, refusing anything out of order."""

    def __init__(self, types: StreamTypes[ItemT, HeaderT, FooterT]) -> None:
        self.types = types
        self._state = _State.START

    def header(self, header: HeaderT) -> bytes:
        if self.types.header is None:
            raise StreamOrderError("this stream declares no header")
        if self._state is not _State.START:
            raise StreamOrderError("the header must come first, once")
        self._state = _State.ITEMS
        return _frame(
            FrameKind.HEADER, self.types.header.model_validate(header).model_dump_json().encode()
        )

    def item(self, item: ItemT) -> bytes:
        self._enter_items()
        return _frame(
            FrameKind.ITEM, self.types.item.model_validate(item).model_dump_json().encode()
        )

    def footer(self, footer: FooterT) -> bytes:
        if self.types.footer is None:
            raise StreamOrderError("this stream declares no footer")
        self._enter_items()
        self._state = _State.DONE
        return _frame(
            FrameKind.FOOTER, self.types.footer.model_validate(footer).model_dump_json().encode()
        )

    def error(self, body: BaseModel | dict[str, Any]) -> bytes:
        if self._state is _State.DONE:
            raise StreamOrderError("the stream has already ended")
        self._state = _State.DONE
        payload = body.model_dump_json() if isinstance(body, BaseModel) else json.dumps(body)
        return _frame(FrameKind.ERROR, payload.encode())

    def _enter_items(self) -> None:
        if self._state is _State.DONE:
            raise StreamOrderError("the stream has already ended")
        if self._state is _State.START and self.types.header is not None:
            raise StreamOrderError("the header must come first")
        self._state = _State.ITEMS


class StreamReader(Generic[ItemT, HeaderT, FooterT]):
    """Validates frames from any async byte iterator, whatever its chunk boundaries.

    reader = StreamReader(TYPES, response.aiter_bytes())
    header = await reader.read_header()
    async for item in reader.items(): ...
    footer = reader.footer   # set once items() is exhausted
    """

    def __init__(
        self, types: StreamTypes[ItemT, HeaderT, FooterT], source: AsyncIterable[bytes]
    ) -> None:
        self.types = types
        self._source = source.__aiter__()
        self._buffer = bytearray()
        self._state = _State.START
        self.header: HeaderT | None = None
        self.footer: FooterT | None = None

    async def read_header(self) -> HeaderT:
        if self.types.header is None:
            raise StreamOrderError("this stream declares no header")
        frame = await self._next_frame()
        assert frame is not None  # only allow_end=True returns None
        kind, payload = frame
        if kind is not FrameKind.HEADER:
            raise StreamOrderError(f"expected a header frame, got {kind.name}")
        self._state = _State.ITEMS
        self.header = self._parse(self.types.header, payload)
        return self.header

    async def items(self) -> AsyncIterator[ItemT]:
        if self._state is _State.START and self.types.header is not None:
            await self.read_header()
        self._state = _State.ITEMS
        while True:
            frame = await self._next_frame(allow_end=self.types.footer is None)
            if frame is None:
                self._state = _State.DONE
                return
            kind, payload = frame
            if kind is FrameKind.ITEM:
                yield self._parse(self.types.item, payload)
            elif kind is FrameKind.FOOTER and self.types.footer is not None:
                self.footer = self._parse(self.types.footer, payload)
                self._state = _State.DONE
                if await self._next_frame(allow_end=True) is not None:
                    raise StreamOrderError("data after the footer")
                return
            else:
                raise StreamOrderError(f"unexpected {kind.name} frame among items")

    async def _fill(self, size: int) -> bool:
        while len(self._buffer) < size:
            try:
                chunk = await self._source.__anext__()
            except StopAsyncIteration:
                return False
            self._buffer.extend(chunk)
        return True

    async def _next_frame(self, allow_end: bool = False) -> tuple[FrameKind, bytes] | None:
        if not await self._fill(_PREFIX.size):
            if not self._buffer and allow_end:
                return None
            raise StreamTruncatedError(
                "stream ended inside a frame" if self._buffer else "stream ended before its footer"
            )
        raw_kind, length = _PREFIX.unpack_from(self._buffer)
        try:
            kind = FrameKind(raw_kind)
        except ValueError:
            raise StreamSchemaError(f"unknown frame kind {raw_kind!r}") from None
        if length > MAX_FRAME_BYTES:
            raise StreamSchemaError(f"frame of {length} bytes exceeds the limit")
        if not await self._fill(_PREFIX.size + length):
            raise StreamTruncatedError("stream ended inside a frame")
        payload = bytes(self._buffer[_PREFIX.size : _PREFIX.size + length])
        del self._buffer[: _PREFIX.size + length]
        if kind is FrameKind.ERROR:
            self._state = _State.DONE
            try:
                body = json.loads(payload)
            except ValueError:
                body = {"error": {"message": payload.decode("utf-8", "replace")}}
            raise StreamRemoteError(body)
        return kind, payload

    @staticmethod
    def _parse(model: type[ModelT], payload: bytes) -> ModelT:
        try:
            return model.model_validate_json(payload)
        except ValidationError as exc:
            raise StreamSchemaError(f"{model.__name__} frame does not validate: {exc}") from exc
