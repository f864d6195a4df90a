"""Unit tests do no I/O beyond reading committed files and writing under tmp_path: no socket is
bound or connected, no process started and no model loaded (Whisper, the Silero VAD, the speaker
networks; tests/integration and tests/e2e do that). A test that tries fails here, naming what it
tried, instead of passing slowly on one machine."""

from __future__ import annotations

import socket
import subprocess
from typing import Any, NoReturn

import faster_whisper
import faster_whisper.vad
import pytest


def _refuse(what: str) -> Any:
    def refused(*args: object, **kwargs: object) -> NoReturn:
        raise AssertionError(f"a unit test tried to {what}: it belongs in tests/integration")

    return refused


@pytest.fixture(autouse=True)
def no_io(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "bind", _refuse("bind a socket"))
    monkeypatch.setattr(socket.socket, "connect", _refuse("connect a socket"))
    monkeypatch.setattr(socket.socket, "connect_ex", _refuse("connect a socket"))
    monkeypatch.setattr(subprocess.Popen, "__init__", _refuse("start a process"))
    monkeypatch.setattr(faster_whisper.WhisperModel, "__init__", _refuse("load a Whisper model"))
    monkeypatch.setattr(faster_whisper.vad, "get_vad_model", _refuse("load the VAD model"))
    monkeypatch.setattr(
        "shared.diarization.models.load_speaker_models", _refuse("load the speaker networks")
    )
