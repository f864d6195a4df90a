"""`whisperfleet`: transcribe a file or URL with a Whisperfleet server, or start one locally.

    whisperfleet transcribe talk.mp3 -o talk.srt            upload, watch, write subtitles
    whisperfleet transcribe https://host/talk.mp3 --format vtt --language en
    whisperfleet transcribe call.mp3 --diarize --speakers 2 who spoke when ([A], [B] ...)
    whisperfleet transcribe call.mp3 --speaker Ann=ann.wav  a known voice, labelled by name
    whisperfleet transcribe long.mp4 --detach               queue it, print the job id, exit
    whisperfleet watch JOB_ID -o long.srt                   follow a job (again), write it
    whisperfleet jobs [--status running]                    the server's recent jobs
    whisperfleet serve [--port 8000] [--workers 2]          the whole stack, like `make run`

`transcribe` submits an async job (`POST /v1/jobs`) and follows its events: a progress bar of
seconds transcribed, with an ETA, and the segments as they arrive go to the terminal (stderr);
a dropped connection is picked up where it stopped (`Last-Event-ID`); Ctrl-C cancels the job.
The transcript, in any format of `shared.formats`, goes to `-o` or stdout. With speakers,
each live segment shows its (provisional) speaker, `[A] ...`; the labels are decided over the
whole file at the end, and a line says which changed; the file written has the final ones.
"""

from __future__ import annotations

import argparse
import base64
import json
import mimetypes
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Column, Table

from shared.errors import validation_error_body
from shared.formats import FORMATS, Format
from shared.retries import Retries, RetrySchedule
from shared.schemas import (
    MAX_SPEAKERS,
    JobInfo,
    JobList,
    Segment,
    SpeakerMap,
    StreamFooter,
    StreamProgress,
    TranscribeParams,
)

DEFAULT_SERVER = "http://127.0.0.1:8000"
RECONNECTS = RetrySchedule(attempts=11, max_delay_sec=10.0)
"""A dropped event stream is picked up after its last event, on the schedule of every transfer
(`shared.retries`: 0, 1, 3, 7, then every 10 s), until 11 tries in a row bring no event."""
AUDIO_TYPES = {".wav": "audio/wav", ".mp3": "audio/mpeg", ".mpga": "audio/mpeg",
               ".m4a": "audio/mp4", ".mp4": "audio/mp4", ".aac": "audio/aac",
               ".ogg": "audio/ogg", ".oga": "audio/ogg", ".opus": "audio/ogg",
               ".flac": "audio/flac", ".webm": "audio/webm"}  # fmt: skip
"""A reference clip's type, from its suffix (sent in its data URL)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="whisperfleet", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("transcribe", help="transcribe a file or a media URL")
    run.add_argument("media", help="a local file (uploaded) or an http(s) URL")
    _output_options(run)
    run.add_argument("-l", "--language", help="language code (default: detect per chunk)")
    run.add_argument(
        "--languages",
        metavar="CODES",
        help="detect among these only, e.g. en,de (a file that switches between them)",
    )
    run.add_argument("--translate", action="store_true", help="translate into English")
    run.add_argument("--words", action="store_true", help="word timestamps (verbose_json)")
    run.add_argument("--prompt", help="text that guides spelling and style")
    run.add_argument("--diarize", action="store_true", help="label who speaks: [A], [B], ...")
    run.add_argument(
        "--speakers",
        type=_speaker_count,
        metavar="N",
        help="exactly N speakers (implies --diarize)",
    )
    run.add_argument(
        "--speaker",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="a known speaker: 2-10 s of their voice alone; repeatable (implies --diarize)",
    )
    run.add_argument("--webhook", help="a URL the server POSTs the job to when it ends")
    run.add_argument("--detach", action="store_true", help="print the job id and exit")
    _server_options(run)
    watch = commands.add_parser("watch", help="follow a job and write its transcript")
    watch.add_argument("job_id")
    _output_options(watch)
    watch.add_argument("--words", action="store_true", help="word timestamps (verbose_json)")
    _server_options(watch)
    jobs = commands.add_parser("jobs", help="list recent jobs")
    jobs.add_argument("--status", choices=["queued", "running", "succeeded", "failed",
                                           "cancelled"])  # fmt: skip
    jobs.add_argument("--limit", type=int, default=20)
    _server_options(jobs)
    serve = commands.add_parser("serve", help="start the whole stack locally (like make run)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    if args.command == "serve":
        from services.stack import main as serve_main

        return serve_main(["--port", str(args.port), "--workers", str(args.workers)])
    # soft_wrap: a line is never broken at the terminal's width (scripts grep it, logs keep it).
    console = Console(stderr=True, quiet=getattr(args, "quiet", False), soft_wrap=True)
    errors = Console(stderr=True, soft_wrap=True)  # -q quiets progress, never an error
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    timeout = httpx.Timeout(30.0, read=None)
    with httpx.Client(base_url=args.server, headers=headers, timeout=timeout) as client:
        try:
            if args.command == "jobs":
                return list_jobs(client, args)
            if args.command == "watch":
                _check_output(args.output)
                return follow(client, args.job_id, args, console, cancel_on_interrupt=False)
            return transcribe(client, args, console)
        except CliError as exc:
            errors.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
            return 1
        except httpx.HTTPError as exc:
            errors.print(f"[red]error:[/red] {args.server}: {escape(str(exc))}", highlight=False)
            return 1
        except BrokenPipeError:  # `whisperfleet jobs | head -1`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0


def _output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", type=Path, help="write here (default: stdout)")
    parser.add_argument("-f", "--format", choices=FORMATS, help="default: from -o's suffix, or txt")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress or live segments")


def _server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server",
        default=os.environ.get("WHISPERFLEET_URL", DEFAULT_SERVER),
        help=f"the orchestrator (default: $WHISPERFLEET_URL or {DEFAULT_SERVER})",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("WHISPERFLEET_API_KEY"),
        help="the server's API key (default: $WHISPERFLEET_API_KEY)",
    )


class CliError(Exception):
    pass


class _StreamEnded(CliError):
    """The event stream closed before the job's last event (a server restarting, a proxy)."""


def transcribe(client: httpx.Client, args: argparse.Namespace, console: Console) -> int:
    params: dict[str, Any] = {"word_timestamps": args.words}
    if args.language:
        params["language"] = args.language
    if args.languages:
        params["languages"] = [code.strip() for code in args.languages.split(",") if code.strip()]
    if args.translate:
        params["task"] = "translate"
    if args.prompt:
        params["prompt"] = args.prompt
    params.update(_speaker_params(args))
    _check_params(params)
    _check_output(args.output)  # before the job runs, not after
    info = _submit(client, args.media, params, args.webhook)
    if args.detach:
        print(info.id)
        console.print(f"queued; follow it with: whisperfleet watch {info.id}")
        return 0
    return follow(client, info.id, args, console, cancel_on_interrupt=True)


def _speaker_count(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= MAX_SPEAKERS:
        raise argparse.ArgumentTypeError(f"give a number from 1 to {MAX_SPEAKERS}")
    return int(value)


_FLAGS = {"language": "-l/--language", "languages": "--languages", "prompt": "--prompt",
          "num_speakers": "--speakers",
          "known_speaker_names": "--speaker", "known_speaker_references": "--speaker"}  # fmt: skip


def _check_params(params: dict[str, Any]) -> None:
    """The options checked as the server checks them (TranscribeParams), before a file of
    hours is uploaded only to be refused; the error names the flag."""
    try:
        TranscribeParams.model_validate(params)
    except ValidationError as exc:
        error = validation_error_body(exc.errors())
        field = (error.param or "").split(".")[0]
        flag = _FLAGS.get(field, field)
        reason = (error.message.partition(": ")[2] or error.message).removeprefix("Value error, ")
        raise CliError(f"{flag}: {reason}") from None


def _speaker_params(args: argparse.Namespace) -> dict[str, Any]:
    """Diarization's params; each `--speaker NAME=FILE` read now, so a bad one is an error
    before anything is sent."""
    params: dict[str, Any] = {}
    wants_speakers = getattr(args, "format", None) == Format.DIARIZED_JSON
    if args.diarize or args.speakers or args.speaker or wants_speakers:
        params["diarize"] = True
    if args.speakers:
        params["num_speakers"] = args.speakers
    names, references = [], []
    for given in args.speaker:
        name, _, file = given.partition("=")
        if not name.strip() or not file:
            raise CliError(f"--speaker {given}: give NAME=FILE (a name, then a clip of the voice)")
        names.append(name.strip())
        references.append(_data_url(Path(file), given))
    if names:
        params["known_speaker_names"] = names
        params["known_speaker_references"] = references
    return params


def _data_url(path: Path, given: str) -> str:
    """The clip as a data URL of its audio type (from its suffix)."""
    kind = AUDIO_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or ""
    if not kind.startswith(("audio/", "video/")):
        raise CliError(
            f"--speaker {given}: {path.suffix or 'no suffix'} is not a known audio type "
            f"(use {', '.join(sorted(AUDIO_TYPES))})"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CliError(f"--speaker {given}: can't read {path}: {exc.strerror or exc}") from None
    if not data:
        raise CliError(f"--speaker {given}: {path} is empty")
    return f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}"


def follow(
    client: httpx.Client,
    job_id: str,
    args: argparse.Namespace,
    console: Console,
    cancel_on_interrupt: bool,
) -> int:
    """Follow the job's events to its end, then write its transcript."""
    try:
        _watch(client, job_id, console)
    except KeyboardInterrupt:
        if cancel_on_interrupt:
            client.delete(f"/v1/jobs/{job_id}")
            console.print(f"cancelled {job_id}")
        else:
            console.print(f"stopped watching; the job goes on: whisperfleet watch {job_id}")
        return 130
    info = _job(client, job_id)
    if info.status != "succeeded" or info.result is None:
        message = info.error.message if info.error else f"the job was {info.status.value}"
        raise CliError(message)
    fmt = Format.parse(args.format) if args.format else _format_from(args.output)
    text = _rendered(client, job_id, fmt, words=args.words)
    if args.words and info.result.segments and not any(s.words for s in info.result.segments):
        console.print(f"{job_id} was transcribed without word times: it has none to show")
    if args.output:
        try:
            args.output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise CliError(
                f"-o {args.output}: {exc.strerror or exc}; the transcript is kept on the "
                f"server: whisperfleet watch {job_id} -o FILE"
            ) from None
        console.print(f"wrote {args.output} ({len(info.result.segments)} segments)")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def list_jobs(client: httpx.Client, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.status:
        params["status"] = args.status
    response = client.get("/v1/jobs", params=params)
    if response.status_code != 200:
        raise CliError(_error_message(response))
    rows = []
    for job in JobList.model_validate(response.json()).data:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job.created_at))
        total = job.progress.total_sec
        rows.append([job.id, job.status.value, created, _clock(job.progress.done_sec),
                     _clock(total) if total is not None else ""])  # fmt: skip
    if not sys.stdout.isatty():  # for scripts: tab-separated, one job per line
        sys.stdout.writelines("\t".join(row) + "\n" for row in rows)
        return 0
    # The id whole, whatever the width: it is what `whisperfleet watch` takes.
    widest = max((len(row[0]) for row in rows), default=2)
    table = Table(
        Column("id", no_wrap=True, min_width=widest), "status", "created", "done", "total"
    )
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    return 0


def _submit(
    client: httpx.Client, media: str, params: dict[str, Any], webhook: str | None
) -> JobInfo:
    """POST /v1/jobs: JSON for a URL, multipart for a local file."""
    extra = {"webhook_url": webhook} if webhook else {}
    if media.startswith(("http://", "https://")):
        response = client.post("/v1/jobs", json={"media_url": media, "params": params, **extra})
    else:
        path = Path(media)
        if path.is_dir():
            raise CliError(f"{media} is a folder; give one audio or video file")
        if not path.is_file():
            raise CliError(f"{media}: no such file (give a local file or an http(s) URL)")
        with path.open("rb") as file:
            files = {"file": (path.name, file, "application/octet-stream")}
            data = {"params": json.dumps(params), **extra}
            response = client.post("/v1/jobs", files=files, data=data)
    if response.status_code != 202:
        raise CliError(_error_message(response))
    return JobInfo.model_validate(response.json())


def _job(client: httpx.Client, job_id: str) -> JobInfo:
    response = client.get(f"/v1/jobs/{job_id}")
    if response.status_code != 200:
        raise CliError(_error_message(response))
    return JobInfo.model_validate(response.json())


def _rendered(client: httpx.Client, job_id: str, fmt: Format, *, words: bool) -> str:
    """The job's transcript in `fmt`, rendered by the server: it knows what the job was asked
    (a translation's verbose_json says `translate`, also when another command started it)."""
    params = {"format": fmt.value, "words": "true" if words else "false"}
    response = client.get(f"/v1/jobs/{job_id}", params=params)
    if response.status_code != 200:
        raise CliError(_error_message(response))
    return response.text


def _check_output(output: Path | None) -> None:
    """`-o` names a file that can be written: said before the job, not after it ran."""
    if output is None:
        return
    if output.is_dir():
        raise CliError(f"-o {output} is a folder; give a file name, e.g. {output / 'talk.srt'}")
    folder = output.parent
    if not folder.is_dir():
        raise CliError(f"-o {output}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (output.exists() and not os.access(output, os.W_OK)):
        raise CliError(f"-o {output}: not writable")


def _format_from(output: Path | None) -> Format:
    if output is None:
        return Format.TXT
    by_suffix: dict[str, Format] = {}
    for fmt in Format:
        by_suffix.setdefault(fmt.extension, fmt)  # the first format of a suffix: .json is json
    return by_suffix.get(output.suffix.lstrip(".").lower(), Format.TXT)


def _watch(client: httpx.Client, job_id: str, console: Console) -> None:
    """Show the job's events until its last one, reconnecting after the last event seen."""
    total = _job(client, job_id).progress.total_sec
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    bar: TaskID | None = progress.add_task("transcribing", total=total) if total else None
    last_id: str | None = None
    retries = Retries(RECONNECTS, (httpx.TransportError, _StreamEnded), what="event stream")
    with progress:
        for attempt in retries:
            headers = {"Last-Event-ID": last_id} if last_id is not None else {}
            with attempt:
                with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers) as reply:
                    if reply.status_code != 200:
                        raise CliError(_error_message(reply))
                    for event_id, name, data in _events(reply.iter_lines()):
                        last_id = event_id or last_id
                        retries.progressed()
                        if name == "segment":
                            segment = Segment.model_validate(data)
                            who = f"[{segment.speaker}] " if segment.speaker else ""
                            progress.console.print(
                                f"[dim]{_clock(segment.start_time_sec)} → "
                                f"{_clock(segment.end_time_sec)}[/dim] "
                                + escape(who + segment.text.strip()),
                                highlight=False,
                            )
                        elif name == "speakers":
                            changed = _relabelled(SpeakerMap.model_validate(data))
                            if changed:
                                progress.console.print(escape(changed), highlight=False)
                        elif name == "progress" and bar is not None:
                            done = StreamProgress.model_validate(data).done_sec
                            progress.update(bar, completed=done)
                        elif name == "footer":
                            footer = StreamFooter.model_validate(data)
                            console.print(
                                f"{footer.input_duration_sec:.0f} s of audio in "
                                f"{footer.processing_duration_sec:.1f} s ({footer.speedup:.0f}x), "
                                f"{footer.num_segments} segments"
                                + (f", languages: {', '.join(footer.languages)}"
                                   if footer.languages else "")
                            )  # fmt: skip
                            if footer.incomplete_clips:
                                console.print(
                                    f"{footer.incomplete_clips} micro chunk(s) incomplete: the "
                                    "model server gave up on some of their speech, words may be "
                                    "missing there (`incomplete` in the JSON's macro_chunks)"
                                )
                            return
                        elif name in ("error", "cancelled"):
                            return  # the job's own state says what happened
                raise _StreamEnded(
                    f"the events of {job_id} stopped before the job ended; follow it again: "
                    f"whisperfleet watch {job_id}"
                )


def _relabelled(speakers: SpeakerMap) -> str:
    """One line for the labels the whole file changed ("" when none did)."""
    changed = [f"{old} → {new}" for old, new in speakers.labels.items() if old != new]
    if not changed:
        return ""
    return f"speakers, final labels: {', '.join(changed)} (the file written uses these)"


def _events(lines: Iterator[str]) -> Iterator[tuple[str | None, str, dict[str, Any]]]:
    """(id, event, data) of a Server-Sent Events stream."""
    event_id: str | None = None
    name, data = "message", list[str]()
    for line in lines:
        if not line:
            if data:
                yield event_id, name, json.loads("\n".join(data))
            event_id, name, data = None, "message", []
        elif line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


def _error_message(response: httpx.Response) -> str:
    response.read()
    try:
        error = response.json()["error"]
        message, code = str(error["message"]), error.get("code")
    except (ValueError, KeyError, TypeError, AttributeError):
        message, code = response.text[:200], None
    if code == "invalid_api_key":  # the server's words are for any client; say how, here
        message += " (give --api-key KEY or set WHISPERFLEET_API_KEY)"
    return f"HTTP {response.status_code}: {message}"


def _clock(seconds: float) -> str:
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours:d}:{minutes:02d}:{secs:05.2f}" if hours else f"{minutes:02d}:{secs:05.2f}"


if __name__ == "__main__":
    sys.exit(main())
