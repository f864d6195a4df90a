"""The CLI's own behaviour, in-process (no server: the failures happen before any request)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.cli import _format_from, main


@pytest.mark.parametrize("columns", ["20", "80", None])
@pytest.mark.parametrize("term", ["xterm", "dumb"])
def test_an_error_line_is_never_wrapped_whatever_the_terminal(
    columns: str | None,
    term: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TERM", term)
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    missing = tmp_path / ("a-rather-long-directory-name-" * 4) / "nope.mp3"
    status = main(["transcribe", str(missing), "--server", "http://127.0.0.1:9"])
    assert status == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"error: {missing}: no such file (give a local file or an http(s) URL)"]


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("a.json", "json"), ("a.srt", "srt"), ("a.vtt", "vtt"), ("a.tsv", "tsv"), ("a.txt", "text"),
     ("a.TXT", "text"), ("a.docx", "txt"), (None, "txt")],
)  # fmt: skip
def test_the_output_files_suffix_picks_the_plain_format(name: str | None, fmt: str) -> None:
    """`.json` is OpenAI's plain json, not verbose_json or diarized_json (which share it)."""
    assert _format_from(Path(name) if name else None) == fmt
