"""`whisperfleet`: transcribe a file or URL with a Whisperfleet server, or start one locally.

    whisperfleet transcribe talk.mp3 -o talk.srt            upload, watch, write subtitles
    whisperfleet transcribe https://host/talk.mp3 --format vtt --language en
    whisperfleet serve [--port 8000] [--workers 2]          the whole stack, like `make run`

`transcribe` streams the job (`/v1/transcribe/stream`): a progress bar of seconds transcribed,
with an ETA, and the segments as they arrive go to the terminal (stderr); the transcript, in
any format of `shared.formats`, goes to `-o` or stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from shared.formats import EXTENSIONS, FORMATS, render
from shared.schemas import (
    Segment,
    StreamFooter,
    StreamHeader,
    StreamProgress,
    TranscribeOutput,
)

DEFAULT_SERVER = "http://127.0.0.1:8000"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="whisperfleet", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("transcribe", help="transcribe a file or a media URL")
    run.add_argument("media", help="a local file (uploaded) or an http(s) URL")
    run.add_argument("-o", "--output", type=Path, help="write here (default: stdout)")
    run.add_argument("-f", "--format", choices=FORMATS, help="default: from -o's suffix, or txt")
    run.add_argument("-l", "--language", help="language code (default: detect per chunk)")
    run.add_argument("--translate", action="store_true", help="translate into English")
    run.add_argument("--words", action="store_true", help="word timestamps (verbose_json)")
    run.add_argument("--prompt", help="text that guides spelling and style")
    run.add_argument(
        "--server",
        default=os.environ.get("WHISPERFLEET_URL", DEFAULT_SERVER),
        help=f"the orchestrator (default: $WHISPERFLEET_URL or {DEFAULT_SERVER})",
    )
    run.add_argument("-q", "--quiet", action="store_true", help="no progress or live segments")
    serve = commands.add_parser("serve", help="start the whole stack locally (like make run)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    if args.command == "serve":
        from services.stack import main as serve_main

        return serve_main(["--port", str(args.port), "--workers", str(args.workers)])
    return transcribe(args)


def transcribe(args: argparse.Namespace) -> int:
    console = Console(stderr=True, quiet=args.quiet)
    fmt = args.format or _format_from(args.output)
    params: dict[str, Any] = {"word_timestamps": args.words}
    if args.language:
        params["language"] = args.language
    if args.translate:
        params["task"] = "translate"
    if args.prompt:
        params["prompt"] = args.prompt
    try:
        output = _stream(args.server, args.media, params, console)
    except CliError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        return 1
    text = render(output, fmt, task=params.get("task", "transcribe"), words=args.words)
    if args.output:
        args.output.write_text(text, encoding="utf-8")
        console.print(f"wrote {args.output} ({len(output.segments)} segments)")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


class CliError(Exception):
    pass


def _format_from(output: Path | None) -> str:
    if output is None:
        return "txt"
    by_suffix = {ext: fmt for fmt, ext in EXTENSIONS.items() if fmt not in ("text", "verbose_json")}
    return by_suffix.get(output.suffix.lstrip(".").lower(), "txt")


def _stream(server: str, media: str, params: dict[str, Any], console: Console) -> TranscribeOutput:
    url = f"{server.rstrip('/')}/v1/transcribe/stream"
    timeout = httpx.Timeout(30.0, read=None)
    segments: list[Segment] = []
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    with _request(url, media, params, timeout) as response, progress:
        if response.status_code != 200:
            raise CliError(_error_message(response))
        bar = None  # shown once the header says how long the media is
        for name, data in _events(response.iter_lines()):
            if name == "header":
                header = StreamHeader.model_validate(data)
                bar = progress.add_task("transcribing", total=header.input_duration_sec)
            elif name == "segment":
                segment = Segment.model_validate(data)
                segments.append(segment)
                progress.console.print(
                    f"[dim]{_clock(segment.start_time_sec)} → {_clock(segment.end_time_sec)}"
                    f"[/dim] {segment.text.strip()}",
                    highlight=False,
                )
            elif name == "progress" and bar is not None:
                progress.update(bar, completed=StreamProgress.model_validate(data).done_sec)
            elif name == "error":
                raise CliError(data.get("error", {}).get("message", "the job failed"))
            elif name == "footer":
                footer = StreamFooter.model_validate(data)
                console.print(
                    f"{footer.input_duration_sec:.0f} s of audio in "
                    f"{footer.processing_duration_sec:.1f} s ({footer.speedup:.0f}x), "
                    f"{footer.num_segments} segments, languages: {', '.join(footer.languages)}"
                )
                return TranscribeOutput(
                    segments=segments,
                    input_duration_sec=footer.input_duration_sec,
                    processing_duration_sec=footer.processing_duration_sec,
                    speedup=footer.speedup,
                )
    raise CliError("the server closed the stream before the transcript was complete")


def _request(url: str, media: str, params: dict[str, Any], timeout: httpx.Timeout) -> Any:
    """The streaming request: JSON for a URL, multipart for a local file."""
    if media.startswith(("http://", "https://")):
        body = {"media_url": media, "params": params}
        return httpx.stream("POST", url, json=body, timeout=timeout)
    path = Path(media)
    if not path.is_file():
        raise CliError(f"{media}: no such file (give a local file or an http(s) URL)")
    files = {"file": (path.name, path.open("rb"), "application/octet-stream")}
    data = {"params": json.dumps(params)}
    return httpx.stream("POST", url, files=files, data=data, timeout=timeout)


def _events(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    name, data = "message", list[str]()
    for line in lines:
        if not line:
            if data:
                yield name, json.loads("\n".join(data))
            name, data = "message", []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


def _error_message(response: httpx.Response) -> str:
    response.read()
    try:
        message = str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        message = response.text[:200]
    return f"HTTP {response.status_code}: {message}"


def _clock(seconds: float) -> str:
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours:d}:{minutes:02d}:{secs:05.2f}" if hours else f"{minutes:02d}:{secs:05.2f}"


if __name__ == "__main__":
    sys.exit(main())
