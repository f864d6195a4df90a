"""The CLI's own behaviour, in-process (no server: the failures happen before any request)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.cli import _format_from, main
from shared.formats import render
from shared.retries import RetrySchedule
from shared.schemas import TranscribeOutput


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


# -- speakers ---------------------------------------------------------------------------------

CALL = "https://media.example/call.mp3"  # never fetched: the server is scripted


def labelled(start: float, text: str, speaker: str) -> dict[str, Any]:
    return {"start_time_sec": start, "end_time_sec": start + 1.0, "text": text,
            "language": "english", "bcp47_key": "en", "speaker": speaker}  # fmt: skip


def sse(event_id: int, name: str, data: dict[str, Any]) -> str:
    return f"id: {event_id}\nevent: {name}\ndata: {json.dumps(data)}\n\n"


class ScriptedServer:
    """`/v1/jobs` as a diarized job answers it: segments streamed with provisional labels, a
    `speakers` event, and a result with the final ones. Records what the CLI sent."""

    def __init__(self, labels: dict[str, str], said: tuple[str, ...] = (" Hello.", " Hi.")) -> None:
        self.labels = labels
        self.submitted: list[dict[str, Any]] = []
        pairs = zip(said, labels, strict=True)
        self.streamed = [labelled(float(i), text, who) for i, (text, who) in enumerate(pairs)]
        final = [{**s, "speaker": labels[s["speaker"]]} for s in self.streamed]
        self.result = {"segments": final, "input_duration_sec": 2.0,
                       "processing_duration_sec": 1.0, "speedup": 2.0,
                       "speakers": list(dict.fromkeys(labels.values()))}  # fmt: skip
        self.footer: dict[str, Any] = {"input_duration_sec": 2.0, "speedup": 2.0,
                                       "processing_duration_sec": 1.0, "num_segments": 2,
                                       "languages": ["en"]}  # fmt: skip

    def job(self, status: str) -> dict[str, Any]:
        job = {"id": "job_1", "status": status, "created_at": 0.0,
               "progress": {"done_sec": 0.0, "total_sec": 2.0}}  # fmt: skip
        return {**job, "result": self.result} if status == "succeeded" else job

    def rendered(self, query: httpx.QueryParams) -> str:
        """As the jobs route renders: with the task the job was submitted with."""
        task = self.submitted[-1]["params"].get("task", "transcribe")
        output = TranscribeOutput.model_validate(self.result)
        return render(output, query["format"], task=task, words=query.get("words") == "true")

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path == "/v1/jobs":
            self.submitted.append(json.loads(request.content))
            return httpx.Response(202, json=self.job("queued"))
        if request.url.path == "/v1/jobs/job_1/events":
            body = (
                sse(0, "segment", self.streamed[0])
                + sse(1, "segment", self.streamed[1])
                + sse(2, "speakers", {"labels": self.labels,
                                      "speakers": list(dict.fromkeys(self.labels.values()))})
                + sse(3, "footer", self.footer)
            )  # fmt: skip
            return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})
        if request.url.path == "/v1/jobs/job_1" and "format" in request.url.params:
            return httpx.Response(200, text=self.rendered(request.url.params))
        if request.url.path == "/v1/jobs/job_1":
            return httpx.Response(200, json=self.job("succeeded" if self.submitted else "queued"))
        return httpx.Response(404, json={"error": {"message": "no such route"}})


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Callable[..., ScriptedServer]:
    def install(labels: dict[str, str], *said: str) -> ScriptedServer:
        server = ScriptedServer(labels, *([said] if said else []))
        client = httpx.Client

        def scripted_client(**kwargs: Any) -> httpx.Client:
            return client(transport=httpx.MockTransport(server.handle), **kwargs)

        monkeypatch.setattr("services.cli.httpx.Client", scripted_client)
        return server

    return install


def test_speakers_are_asked_for_with_each_known_voice_as_a_data_url(
    scripted: Callable[..., ScriptedServer], tmp_path: Path
) -> None:
    server = scripted({"A": "Ann", "B": "B"})
    (tmp_path / "ann.wav").write_bytes(b"RIFF-ann")
    (tmp_path / "bo.OPUS").write_bytes(b"OggS-bo")
    ann, bo = f"Ann={tmp_path / 'ann.wav'}", f"Bo Li={tmp_path / 'bo.OPUS'}"
    status = main(["transcribe", CALL, "-q", "--speakers", "2", "--speaker", ann, "--speaker", bo])
    assert status == 0
    (body,) = server.submitted
    params = body["params"]
    assert params["diarize"] is True and params["num_speakers"] == 2
    assert params["known_speaker_names"] == ["Ann", "Bo Li"]
    assert params["known_speaker_references"] == [
        "data:audio/wav;base64," + base64.b64encode(b"RIFF-ann").decode(),
        "data:audio/ogg;base64," + base64.b64encode(b"OggS-bo").decode(),
    ]


def test_diarize_alone_asks_for_speakers_and_nothing_else(
    scripted: Callable[..., ScriptedServer],
) -> None:
    server = scripted({"A": "A", "B": "B"})
    assert main(["transcribe", CALL, "-q", "--diarize"]) == 0
    params = server.submitted[0]["params"]
    assert params["diarize"] is True
    assert not {"num_speakers", "known_speaker_names"} & set(params)


def test_the_diarized_json_format_asks_for_speakers_by_itself(
    scripted: Callable[..., ScriptedServer], capsys: pytest.CaptureFixture[str]
) -> None:
    server = scripted({"A": "Ann", "B": "B"})
    assert main(["transcribe", CALL, "-q", "-f", "diarized_json"]) == 0
    assert server.submitted[0]["params"]["diarize"] is True
    body = json.loads(capsys.readouterr().out)
    assert [s["speaker"] for s in body["segments"]] == ["Ann", "B"]


@pytest.mark.parametrize(
    ("speaker", "message"),
    [
        ("Ann={dir}/missing.wav", "can't read {dir}/missing.wav: No such file or directory"),
        ("Ann={dir}/folder.wav", "can't read {dir}/folder.wav: Is a directory"),
        ("Ann={dir}/empty.wav", "{dir}/empty.wav is empty"),
        ("Ann={dir}/notes.txt", ".txt is not a known audio type (use .aac, .flac, "),
        ("Ann={dir}/ann", "no suffix is not a known audio type"),
        ("Ann", "give NAME=FILE"),
        ("={dir}/ann.wav", "give NAME=FILE"),
    ],
)
def test_a_bad_speaker_clip_is_one_error_line_before_anything_is_sent(
    scripted: Callable[..., ScriptedServer],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    speaker: str,
    message: str,
) -> None:
    server = scripted({"A": "A", "B": "B"})
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "ann.wav").write_bytes(b"RIFF")
    (tmp_path / "ann").write_bytes(b"RIFF")
    (tmp_path / "folder.wav").mkdir()
    given = speaker.format(dir=tmp_path)
    assert main(["transcribe", CALL, "--speaker", given]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: --speaker {given}: {message.format(dir=tmp_path)}"), line
    assert server.submitted == []


@pytest.mark.parametrize(
    ("flags", "said"),
    [(["-l", "xx"], "-l/--language: unknown language code 'xx'"),
     (["--prompt", "word " * 300], "--prompt: String should have at most 1000 characters"),
     (["--languages", "en,xx"], "--languages: unknown language code 'xx'"),
     (["-l", "en", "--languages", "en,de"], "--languages: give language (one language")],
)  # fmt: skip
def test_an_option_the_server_would_refuse_is_an_error_before_anything_is_sent(
    scripted: Callable[..., ScriptedServer],
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    said: str,
) -> None:
    server = scripted({"A": "A", "B": "B"})
    assert main(["transcribe", CALL, *flags]) == 1
    assert server.submitted == []
    assert capsys.readouterr().err.startswith(f"error: {said}")


def test_languages_to_detect_among_are_sent_as_a_list(
    scripted: Callable[..., ScriptedServer],
) -> None:
    server = scripted({"A": "A", "B": "B"})
    assert main(["transcribe", CALL, "--languages", "en, de"]) == 0
    assert server.submitted[-1]["params"]["languages"] == ["en", "de"]


@pytest.mark.parametrize("count", ["0", "33", "two"])
def test_a_speaker_count_out_of_range_is_refused_by_the_parser(
    count: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["transcribe", CALL, "--speakers", count])
    assert "give a number from 1 to 32" in capsys.readouterr().err


def test_watching_shows_each_speaker_then_the_relabelling_and_writes_the_final_labels(
    scripted: Callable[..., ScriptedServer],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    scripted({"A": "Ann", "B": "A"})
    out = tmp_path / "call.srt"
    assert main(["transcribe", CALL, "--diarize", "-o", str(out)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[:3] == [
        "00:00.00 → 00:01.00 [A] Hello.",
        "00:01.00 → 00:02.00 [B] Hi.",
        "speakers, final labels: A → Ann, B → A (the file written uses these)",
    ]
    assert out.read_text() == (
        "1\n00:00:00,000 --> 00:00:01,000\n[Ann] Hello.\n\n"
        "2\n00:00:01,000 --> 00:00:02,000\n[A] Hi.\n"
    )


def test_watching_a_translation_renders_it_as_one_whatever_command_started_it(
    scripted: Callable[..., ScriptedServer], capsys: pytest.CaptureFixture[str]
) -> None:
    """`watch` has no --translate: the server, which keeps the job's request, renders it."""
    scripted({"A": "A", "B": "B"})
    assert main(["transcribe", CALL, "--translate", "--detach"]) == 0
    capsys.readouterr()
    assert main(["watch", "job_1", "-f", "verbose_json"]) == 0
    assert json.loads(capsys.readouterr().out)["task"] == "translate"


def test_labels_the_whole_file_kept_print_no_relabelling_line(
    scripted: Callable[..., ScriptedServer], capsys: pytest.CaptureFixture[str]
) -> None:
    scripted({"A": "A", "B": "B"})
    assert main(["transcribe", CALL, "--diarize"]) == 0
    captured = capsys.readouterr()
    assert not any("final labels" in line for line in captured.err.splitlines())
    assert captured.out == "[A] Hello.\n[B] Hi.\n"


def test_incomplete_micro_chunks_are_said_after_the_totals(
    scripted: Callable[..., ScriptedServer], capsys: pytest.CaptureFixture[str]
) -> None:
    server = scripted({"A": "A", "B": "B"})
    assert main(["transcribe", CALL]) == 0
    assert "incomplete" not in capsys.readouterr().err
    server.footer["incomplete_clips"] = 2
    assert main(["transcribe", CALL]) == 0
    assert "2 micro chunk(s) incomplete" in capsys.readouterr().err


def test_a_segment_that_looks_like_markup_is_printed_as_it_is(
    scripted: Callable[..., ScriptedServer], capsys: pytest.CaptureFixture[str]
) -> None:
    """Rich reads `[bold]` as a style and `[/Music]` as a closing tag (an error): a label or
    a transcript may hold either."""
    scripted({"bold": "bold", "B": "B"}, " [/Music] hi", " Hi.")
    assert main(["transcribe", CALL, "--diarize"]) == 0
    assert "00:00.00 → 00:01.00 [bold] [/Music] hi" in capsys.readouterr().err.splitlines()


# -- a dropped event stream -------------------------------------------------------------------


class DroppingServer(ScriptedServer):
    """Sends at most `per_connection` events on each events request (from after Last-Event-ID),
    then cuts the connection (`cut`) or ends the stream as if the job went on."""

    def __init__(self, per_connection: int, cut: bool = True) -> None:
        super().__init__({"A": "A", "B": "B"})
        self.per_connection = per_connection
        self.cut = cut
        self.resumed_after: list[str | None] = []

    def rendered(self, query: httpx.QueryParams) -> str:
        """As the jobs route renders: with the task the job was submitted with."""
        task = self.submitted[-1]["params"].get("task", "transcribe")
        output = TranscribeOutput.model_validate(self.result)
        return render(output, query["format"], task=task, words=query.get("words") == "true")

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != "/v1/jobs/job_1/events":
            return super().handle(request)
        last = request.headers.get("last-event-id")
        self.resumed_after.append(last)
        events = super().handle(request).text.split("\n\n")[:-1]
        start = 0 if last is None else int(last) + 1
        sent = [event + "\n\n" for event in events[start : start + self.per_connection]]
        server = self

        class Events(httpx.SyncByteStream):
            def __iter__(self) -> Iterator[bytes]:
                yield from (event.encode() for event in sent)
                if server.cut:
                    raise httpx.ReadError("connection reset by peer")

        headers = {"content-type": "text/event-stream"}
        return httpx.Response(200, stream=Events(), headers=headers)


@pytest.fixture
def dropping(monkeypatch: pytest.MonkeyPatch) -> Callable[..., DroppingServer]:
    monkeypatch.setattr("services.cli.RECONNECTS", RetrySchedule(2, unit_sec=0.0))

    def install(per_connection: int, cut: bool = True) -> DroppingServer:
        server = DroppingServer(per_connection, cut)
        client = httpx.Client

        def scripted_client(**kwargs: Any) -> httpx.Client:
            return client(transport=httpx.MockTransport(server.handle), **kwargs)

        monkeypatch.setattr("services.cli.httpx.Client", scripted_client)
        return server

    return install


@pytest.mark.parametrize("cut", [True, False], ids=["cut", "ended"])
def test_a_stream_that_drops_after_every_event_is_followed_to_the_end(
    dropping: Callable[..., DroppingServer], capsys: pytest.CaptureFixture[str], cut: bool
) -> None:
    """Two tries in a row allowed, four connections needed: each brought an event, so the
    count starts again (`shared.retries`); each picks up after the last event seen."""
    server = dropping(1, cut)
    assert main(["transcribe", CALL]) == 0
    assert server.resumed_after == [None, "0", "1", "2"]
    captured = capsys.readouterr()
    assert captured.err.splitlines()[:2] == [  # each live segment once
        "00:00.00 → 00:01.00 [A] Hello.",
        "00:01.00 → 00:02.00 [B] Hi.",
    ]
    assert captured.out == "[A] Hello.\n[B] Hi.\n"


def test_a_stream_that_brings_nothing_is_given_up_after_the_tries_in_a_row(
    dropping: Callable[..., DroppingServer], capsys: pytest.CaptureFixture[str]
) -> None:
    server = dropping(0, cut=False)
    assert main(["transcribe", CALL]) == 1
    assert server.resumed_after == [None, None]
    error = capsys.readouterr().err.strip()
    assert error == (
        "error: the events of job_1 stopped before the job ended; follow it again: "
        "whisperfleet watch job_1"
    )


def test_quiet_silences_progress_never_an_error(
    scripted: Callable[..., ScriptedServer], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scripted({"A": "A", "B": "B"})
    missing = f"Ann={tmp_path / 'missing.wav'}"
    assert main(["transcribe", CALL, "-q", "--speaker", missing]) == 1
    assert "can't read" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("output", "message"),
    [("{dir}", "is a folder"), ("{dir}/no/such/x.srt", "does not exist")],
)
def test_an_output_that_cant_be_written_is_refused_before_the_job_runs(
    scripted: Callable[..., ScriptedServer],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    output: str,
    message: str,
) -> None:
    server = scripted({"A": "A", "B": "B"})
    assert main(["transcribe", CALL, "-q", "-o", output.format(dir=tmp_path)]) == 1
    assert message in capsys.readouterr().err
    assert server.submitted == []  # nothing was transcribed for nothing


def test_a_folder_given_as_the_media_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["transcribe", str(tmp_path), "--server", "http://127.0.0.1:9"]) == 1
    assert "is a folder" in capsys.readouterr().err


def test_the_jobs_table_shows_whole_ids_on_an_80_column_terminal(
    scripted: Callable[..., ScriptedServer],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = scripted({"A": "A", "B": "B"})
    job_id = "job_c2b0772c32c6ae1f0d9e8b7a6c5d4e3f"
    listing = {"object": "list", "data": [{**server.job("succeeded"), "id": job_id,
                                           "result": None}], "has_more": False}  # fmt: skip
    handle = server.handle
    server.handle = lambda request: (  # type: ignore[method-assign]
        httpx.Response(200, json=listing) if request.url.path == "/v1/jobs" else handle(request)
    )
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    assert main(["jobs"]) == 0
    assert job_id in capsys.readouterr().out


def test_a_missing_api_key_says_how_to_give_one(
    scripted: Callable[..., ScriptedServer], capsys: pytest.CaptureFixture[str]
) -> None:
    server = scripted({"A": "A", "B": "B"})
    refusal = {"error": {"message": "send 'Authorization: Bearer <key>'", "type": "x",
                         "code": "invalid_api_key", "param": None}}  # fmt: skip
    server.handle = lambda request: httpx.Response(401, json=refusal)  # type: ignore[method-assign]
    assert main(["jobs"]) == 1
    assert "--api-key" in capsys.readouterr().err
