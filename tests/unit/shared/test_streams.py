"""Typed stream framing: round trips, order, truncation, split frames, error frames."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import pytest
from pydantic import BaseModel

from shared.errors import OverloadedError
from shared.streams import (
    StreamOrderError,
    StreamReader,
    StreamRemoteError,
    StreamSchemaError,
    StreamTruncatedError,
    StreamTypes,
    StreamWriter,
)


class Head(BaseModel):
    name: str


class Item(BaseModel):
    n: int


class Foot(BaseModel):
    total: int


FULL: StreamTypes[Item, Head, Foot] = StreamTypes(item=Item, header=Head, footer=Foot)
ITEMS_ONLY: StreamTypes[Item, BaseModel, BaseModel] = StreamTypes(item=Item)


async def chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def source(parts: Iterable[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def full_stream(count: int = 3) -> bytes:
    writer = StreamWriter(FULL)
    frames = [writer.header(Head(name="h"))]
    frames += [writer.item(Item(n=i)) for i in range(count)]
    frames.append(writer.footer(Foot(total=count)))
    return b"".join(frames)


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 5, 7, 64, 10_000])
async def test_round_trip_survives_any_chunk_boundaries(chunk_size: int) -> None:
    reader = StreamReader(FULL, chunks(full_stream(), chunk_size))
    assert (await reader.read_header()).name == "h"
    assert [item.n async for item in reader.items()] == [0, 1, 2]
    assert reader.footer == Foot(total=3)


async def test_items_reads_an_unread_header_itself() -> None:
    reader = StreamReader(FULL, source([full_stream(2)]))
    assert [item.n async for item in reader.items()] == [0, 1]
    assert reader.header == Head(name="h")


async def test_stream_without_header_or_footer_ends_cleanly() -> None:
    writer = StreamWriter(ITEMS_ONLY)
    data = writer.item(Item(n=1)) + writer.item(Item(n=2))
    assert [i.n async for i in StreamReader(ITEMS_ONLY, source([data])).items()] == [1, 2]


def test_writer_refuses_items_before_the_header() -> None:
    with pytest.raises(StreamOrderError, match="header must come first"):
        StreamWriter(FULL).item(Item(n=1))


def test_writer_refuses_anything_after_the_footer() -> None:
    writer = StreamWriter(FULL)
    writer.header(Head(name="h"))
    writer.footer(Foot(total=0))
    with pytest.raises(StreamOrderError, match="already ended"):
        writer.item(Item(n=1))
    with pytest.raises(StreamOrderError):
        writer.error({"error": {"message": "late"}})


def test_writer_refuses_a_second_header_and_undeclared_parts() -> None:
    writer = StreamWriter(FULL)
    writer.header(Head(name="h"))
    with pytest.raises(StreamOrderError):
        writer.header(Head(name="again"))
    with pytest.raises(StreamOrderError, match="no footer"):
        StreamWriter(ITEMS_ONLY).footer(Foot(total=1))


async def test_missing_footer_is_truncation() -> None:
    data = full_stream()
    without_footer = data[: data.rindex(b"F")]
    reader = StreamReader(FULL, source([without_footer]))
    with pytest.raises(StreamTruncatedError, match="before its footer"):
        [item async for item in reader.items()]


@pytest.mark.parametrize("cut", [1, 3, 6, 9])
async def test_bytes_ending_inside_a_frame_are_truncation(cut: int) -> None:
    data = full_stream()
    reader = StreamReader(FULL, source([data[: len(data) - cut]]))
    with pytest.raises(StreamTruncatedError):
        [item async for item in reader.items()]


async def test_reader_rejects_out_of_order_frames() -> None:
    items_first = StreamWriter(ITEMS_ONLY).item(Item(n=1))
    with pytest.raises(StreamOrderError, match="expected a header"):
        await StreamReader(FULL, source([items_first])).read_header()
    header = StreamWriter(FULL).header(Head(name="h"))
    reader = StreamReader(FULL, source([header + header]))
    with pytest.raises(StreamOrderError, match="HEADER"):
        [item async for item in reader.items()]


async def test_data_after_the_footer_is_an_order_error() -> None:
    extra = StreamWriter(ITEMS_ONLY).item(Item(n=9))
    reader = StreamReader(FULL, source([full_stream(1) + extra]))
    with pytest.raises(StreamOrderError, match="after the footer"):
        [item async for item in reader.items()]


async def test_a_payload_of_the_wrong_schema_is_a_schema_error() -> None:
    wrong = StreamWriter(StreamTypes(item=Head)).item(Head(name="not an item"))
    with pytest.raises(StreamSchemaError, match="Item frame"):
        [i async for i in StreamReader(ITEMS_ONLY, source([wrong])).items()]


async def test_unknown_frame_kind_is_a_schema_error() -> None:
    with pytest.raises(StreamSchemaError, match="unknown frame kind"):
        [i async for i in StreamReader(ITEMS_ONLY, source([b"Z\x00\x00\x00\x00"])).items()]


async def test_error_frame_mid_stream_carries_the_producers_error() -> None:
    writer = StreamWriter(FULL)
    data = (
        writer.header(Head(name="h"))
        + writer.item(Item(n=0))
        + writer.error(OverloadedError("model queue full").body())
    )
    reader = StreamReader(FULL, chunks(data, 4))
    received = []
    with pytest.raises(StreamRemoteError, match="model queue full") as caught:
        async for item in reader.items():
            received.append(item.n)
    assert received == [0]
    assert caught.value.body["error"]["code"] == "overloaded"
