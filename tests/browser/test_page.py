"""The page at `/` in headless Chromium against the real stack.

One transcription of 200 s of speech, cut small (30 s per worker, 5 s clips) so it streams for a
few seconds, is driven through the page once per module (`live_run`); a MutationObserver installed
before the click records when segment rows appear and when the page reaches its final state. The
raw event stream Chromium received is parsed here independently, so the page is checked against
what the server sent, not against itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from services.stack import LocalStack
from shared import formats
from shared.languages import LANGUAGE_NAMES
from shared.schemas import Segment, TranscribeOutput
from tests.conftest import load_manifest
from tests.support import required
from tests.support.media_server import MediaServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SMALL_CHUNKS = {"micro": "10", "macro": "60"}


@pytest.fixture(scope="module", autouse=True)
def chromium() -> Path:
    """Skips the module without Chromium, or fails it where CI requires it (support/required)."""
    if not CHROMIUM.exists():
        required.unavailable(
            required.CHROMIUM, "Debian's Chromium (/usr/bin/chromium)", "apt-get install chromium"
        )
    return CHROMIUM


# Records, from before the click, every change of the segment list and of the page's state.
RECORDER = """() => {
  const app = document.getElementById("app");
  const list = document.getElementById("segments");
  const status = document.getElementById("status");
  const progress = document.getElementById("progress");
  const log = { renders: [], doneAt: null };
  window.__log = log;
  new MutationObserver(() => {
    log.renders.push({
      t: performance.now(),
      count: list.children.length,
      state: app.dataset.state,
      footerShown: "numSegments" in status.dataset,
      progress: progress.value,
    });
  }).observe(list, { childList: true });
  new MutationObserver(() => {
    if (app.dataset.state === "done" && log.doneAt === null) log.doneAt = performance.now();
  }).observe(app, { attributes: true, attributeFilter: ["data-state"] });
}"""


@dataclass
class LiveRun:
    page: Page
    renders: list[dict[str, Any]]
    done_at: float
    events: list[tuple[str, dict[str, Any]]]

    def data(self, name: str) -> list[dict[str, Any]]:
        return [data for event, data in self.events if event == name]

    @property
    def segments(self) -> list[dict[str, Any]]:
        return self.data("segment")

    @property
    def footer(self) -> dict[str, Any]:
        (footer,) = self.data("footer")
        return footer


def parse_sse(body: str) -> list[tuple[str, dict[str, Any]]]:
    """(event, data) pairs of a complete event stream; comments (pings) skipped."""
    events = []
    for block in re.split(r"\r\n\r\n|\n\n|\r\r", body):
        name, data = "message", []
        for line in re.split(r"\r\n|\n|\r", block):
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
        if data:
            events.append((name, json.loads("\n".join(data))))
    return events


def words(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


script_errors: list[str] = []
"""Uncaught exceptions in the page's script, from every page of this module."""


@pytest.fixture(autouse=True)
def no_script_errors() -> Iterator[None]:
    yield
    errors = script_errors.copy()
    script_errors.clear()
    assert not errors, errors


def open_page(browser: Browser, stack: LocalStack) -> Page:
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=stack.url)
    page = context.new_page()
    page.on("pageerror", lambda error: script_errors.append(str(error)))
    page.goto(f"{stack.url}/")
    page.wait_for_function("window.whisperfleet !== undefined")
    return page


def start_job(page: Page, media_url: str, **chunks: str) -> None:
    page.fill("#media-url", media_url)
    if chunks:
        page.click("#advanced summary")
        page.fill("#micro-chunk", chunks["micro"])
        page.fill("#macro-chunk", chunks["macro"])
    page.click("#transcribe")


@pytest.fixture
def page(browser: Browser, stack: LocalStack) -> Iterator[Page]:
    page = open_page(browser, stack)
    try:
        yield page
    finally:
        page.context.close()


@pytest.fixture(scope="module")
def live_run(browser: Browser, stack: LocalStack, media_server: MediaServer) -> Iterator[LiveRun]:
    page = open_page(browser, stack)
    page.evaluate(RECORDER)
    with page.expect_response("**/v1/jobs/*/events") as response_info:
        start_job(page, media_server.url("speech_200s.mp3"), **SMALL_CHUNKS)
    page.wait_for_selector("#app[data-state=done]", timeout=60_000)
    log = page.evaluate("window.__log")
    body = response_info.value.text()
    try:
        yield LiveRun(page, log["renders"], log["doneAt"], parse_sse(body))
    finally:
        page.context.close()


def test_segments_appear_while_the_job_is_still_running(live_run: LiveRun) -> None:
    renders = live_run.renders
    first = next(render for render in renders if render["count"] > 0)
    final_count = len(live_run.segments)
    assert first["state"] == "running" and not first["footerShown"], first
    assert first["count"] < final_count / 4, (first, final_count)
    assert first["t"] < live_run.done_at
    # Rows arrive in many separate renders while running, not all at once at the end.
    counts_while_running = {r["count"] for r in renders if r["state"] == "running"}
    assert len(counts_while_running) >= 5, counts_while_running


def test_progress_bar_reaches_100_percent_at_the_end(live_run: LiveRun) -> None:
    page = live_run.page
    first = next(render for render in live_run.renders if render["count"] > 0)
    assert first["progress"] < 100
    assert page.eval_on_selector("#progress", "p => p.value") == 100
    assert page.text_content("#progress-label") == "100%"


def test_page_shows_every_streamed_segment_in_order_with_the_footer_totals(
    live_run: LiveRun,
) -> None:
    page = live_run.page
    footer = live_run.footer
    streamed = live_run.segments
    assert streamed and footer["num_segments"] == len(streamed)
    rows = page.eval_on_selector_all(
        "#segments li",
        """rows => rows.map(r => ({
            start: Number(r.dataset.start),
            end: Number(r.dataset.end),
            text: r.querySelector(".segment-text").textContent,
        }))""",
    )
    assert len(rows) == footer["num_segments"]
    for row, segment in zip(rows, streamed, strict=True):
        assert row["start"] == segment["start_time_sec"]
        assert row["end"] == segment["end_time_sec"]
        assert words(row["text"]) == words(segment["text"])
    (header,) = live_run.data("header")
    status = page.text_content("#status") or ""
    assert f"{footer['num_segments']} segments" in status
    assert f"{len(header['macro_chunks'])} chunks" in status
    assert f"{footer['speedup']:.1f}× real time" in status
    # Each language by its English name, as /static/languages.json gives it, in the footer's
    # order (the random model's languages are many and arbitrary: each must still be named).
    names = [
        LANGUAGE_NAMES[code][:1].upper() + LANGUAGE_NAMES[code][1:] for code in footer["languages"]
    ]
    assert names, "a transcript with segments has a language"
    noun = "languages" if len(names) > 1 else "language"
    assert f"{noun}: {', '.join(names) or 'none'}" in status


SRT_TIMES = re.compile(r"^(\d{2}):(\d{2}):(\d{2}),(\d{3}) --> (\d{2}):(\d{2}):(\d{2}),(\d{3})$")
VTT_TIMES = re.compile(r"^(\d{2}):(\d{2}):(\d{2})\.(\d{3}) --> (\d{2}):(\d{2}):(\d{2})\.(\d{3})$")


def download(page: Page, button: str) -> tuple[str, str]:
    with page.expect_download() as download_info:
        page.click(button)
    download = download_info.value
    return download.suggested_filename, Path(download.path()).read_text(encoding="utf-8")


def streamed_output(run: LiveRun) -> TranscribeOutput:
    footer = run.footer
    return TranscribeOutput(
        segments=[Segment.model_validate(s) for s in run.segments],
        input_duration_sec=footer["input_duration_sec"],
        processing_duration_sec=footer["processing_duration_sec"],
        speedup=footer["speedup"],
    )


def check_cues(blocks: list[list[str]], timing: re.Pattern[str]) -> None:
    """Cue timing lines in order; at most two lines of 42 characters (a word longer than that
    stands alone); at most 7 s, unless the cue is a single word."""
    assert blocks
    previous_start = 0
    for cue in blocks:
        match = timing.match(cue[0])
        assert match, cue
        h1, m1, s1, ms1, h2, m2, s2, ms2 = map(int, match.groups())
        assert m1 < 60 and s1 < 60 and m2 < 60 and s2 < 60, cue
        start = ((h1 * 60 + m1) * 60 + s1) * 1000 + ms1
        end = ((h2 * 60 + m2) * 60 + s2) * 1000 + ms2
        assert previous_start <= start <= end, cue
        lines = cue[1:]
        assert 1 <= len(lines) <= 2, cue
        assert all(len(line) <= 42 or " " not in line for line in lines), cue
        assert end - start <= 7000 or len(" ".join(lines).split()) == 1, cue
        previous_start = start


def test_srt_download_is_the_servers_srt_of_the_streamed_segments(live_run: LiveRun) -> None:
    name, content = download(live_run.page, "#download-srt")
    assert name == "speech_200s.srt"
    assert content == formats.render(streamed_output(live_run), "srt")
    blocks = [block.split("\n") for block in content.strip("\n").split("\n\n")]
    assert [block[0] for block in blocks] == [str(i) for i in range(1, len(blocks) + 1)]
    check_cues([block[1:] for block in blocks], SRT_TIMES)


def test_vtt_download_is_the_servers_webvtt_of_the_streamed_segments(live_run: LiveRun) -> None:
    name, content = download(live_run.page, "#download-vtt")
    assert name == "speech_200s.vtt"
    assert content == formats.render(streamed_output(live_run), "vtt")
    blocks = [block.split("\n") for block in content.strip("\n").split("\n\n")]
    assert blocks[0] == ["WEBVTT"]
    check_cues(blocks[1:], VTT_TIMES)


def test_txt_download_and_copy_hold_one_line_per_segment(live_run: LiveRun) -> None:
    expected = "".join(f"{words(s['text'])}\n" for s in live_run.segments if words(s["text"]))
    name, content = download(live_run.page, "#download-txt")
    assert name == "speech_200s.txt"
    assert content == expected == formats.render(streamed_output(live_run), "txt")
    live_run.page.click("#copy")
    live_run.page.wait_for_function("document.getElementById('copy').textContent === 'Copied'")
    assert live_run.page.evaluate("navigator.clipboard.readText()") == expected


def test_a_chosen_file_is_uploaded_and_transcribed(page: Page, media_dir: Path) -> None:
    page.set_input_files("#media-file", str(media_dir / "speech_40s.cbr.mp3"))
    assert "speech_40s.cbr.mp3" in page.inner_text("#file-chosen")
    with (
        page.expect_request("**/v1/jobs") as submitted,
        page.expect_response("**/v1/jobs/*/events") as response_info,
    ):
        page.click("#transcribe")
    page.wait_for_selector("#app[data-state=done]", timeout=60_000)
    assert submitted.value.headers["content-type"].startswith("multipart/form-data")
    events = parse_sse(response_info.value.text())
    footer = [data for name, data in events if name == "footer"]
    duration = load_manifest("speech_40s.json")["duration_sec"]
    assert footer and footer[0]["input_duration_sec"] == pytest.approx(duration, abs=0.1)
    rows = page.locator("#segments li").count()
    assert rows == len([1 for name, _ in events if name == "segment"]) > 0
    name, _ = download(page, "#download-srt")
    assert name == "speech_40s.cbr.srt"


def test_a_dropped_file_is_taken_like_a_chosen_one(page: Page, media_dir: Path) -> None:
    data = (media_dir / "speech_40s.opus").read_bytes()
    page.evaluate(
        """(bytes) => {
          const file = new File([new Uint8Array(bytes)], "dropped.opus", {type: "audio/ogg"});
          const transfer = new DataTransfer();
          transfer.items.add(file);
          const zone = document.getElementById("drop-zone");
          zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: transfer, bubbles: true}));
          zone.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true}));
        }""",
        list(data),
    )
    assert "dropped.opus" in page.inner_text("#file-chosen")
    assert page.evaluate("document.getElementById('media-file').files[0].name") == "dropped.opus"


@pytest.mark.parametrize("route", ["missing", "norange"])
def test_bad_url_shows_the_servers_error_message(
    page: Page, stack: LocalStack, media_server: MediaServer, route: str
) -> None:
    url = media_server.url("speech_40s.wav", route=route)
    response = httpx.post(f"{stack.url}/v1/jobs", json={"media_url": url}, timeout=30)
    assert response.status_code == 422
    error = response.json()["error"]

    start_job(page, url)
    page.wait_for_selector("#app[data-state=error]", timeout=30_000)
    assert page.is_visible("#error")
    assert page.text_content("#error-message") == error["message"]
    assert error["code"] in (page.text_content("#error-detail") or "")
    assert page.eval_on_selector_all("#segments li", "rows => rows.length") == 0
    assert page.is_enabled("#transcribe") and page.is_disabled("#cancel")


def sse(event_id: int, name: str, data: dict[str, Any]) -> str:
    return f"id: {event_id}\r\nevent: {name}\r\ndata: {json.dumps(data)}\r\n\r\n"


def test_error_event_mid_stream_shows_its_message_and_keeps_the_segments(page: Page) -> None:
    segment = {"end_time_sec": 2.5, "text": " Hi.", "language": "english", "bcp47_key": "en"}
    error = {"message": "the media host failed", "type": "server_error", "code": "media_host_error"}
    body = (
        sse(0, "header", {"media_url": "http://h/a.mp3", "input_duration_sec": 60.0,
                          "macro_chunks": [{"start_sec": 0.0, "end_sec": 60.0}]})
        + sse(1, "segment", {"start_time_sec": 0.5, **segment})
        + sse(2, "segment", {"start_time_sec": 1.5, **segment})
        + ": ping\r\n\r\n"
        + sse(3, "error", {"error": {**error, "param": None}})
    )  # fmt: skip
    accepted = {"id": "job_1", "status": "queued"}
    page.route("**/v1/jobs", lambda route: route.fulfill(status=202, json=accepted))
    page.route(
        "**/v1/jobs/job_1/events",
        lambda route: route.fulfill(status=200, content_type="text/event-stream", body=body),
    )
    start_job(page, "http://h/a.mp3")
    page.wait_for_selector("#app[data-state=error]")
    assert page.text_content("#error-message") == "the media host failed"
    assert "media_host_error" in (page.text_content("#error-detail") or "")
    assert page.eval_on_selector_all("#segments li", "rows => rows.length") == 2
    assert "Stopped after 2 segments" in (page.text_content("#status") or "")
    assert page.is_enabled("#download-srt")


def test_non_json_error_page_from_a_proxy_shows_the_status_not_html(page: Page) -> None:
    page.route(
        "**/v1/jobs",
        lambda route: route.fulfill(
            status=502, content_type="text/html", body="<html><h1>Bad Gateway</h1></html>"
        ),
    )
    start_job(page, "http://h/a.mp3")
    page.wait_for_selector("#app[data-state=error]")
    message = page.text_content("#error-message") or ""
    assert message.startswith("The server answered 502") and "<" not in message


def test_sse_parser_handles_split_events_line_ends_comments_and_multiline_data(
    page: Page,
) -> None:
    stream = (
        ': ping\r\n\r\nid: 0\r\nevent: header\r\ndata: {"a": 1}\r\n\r\n'
        "event: segment\nid: 1\ndata: line one\ndata:line two\n\n"
        ": ping\r\rdata\revent: footer\rdata: x\r\r"
        "event: unterminated\ndata: dropped"
    )
    expected = [
        {"type": "header", "data": '{"a": 1}', "id": "0"},
        {"type": "segment", "data": "line one\nline two", "id": "1"},
        {"type": "footer", "data": "\nx", "id": "1"},
    ]
    # Every split point of the stream into two chunks, and one character per chunk.
    results = page.evaluate(
        """stream => {
          const run = (chunks) => {
            const events = [];
            const parser = window.whisperfleet.createSseParser((e) => events.push(e));
            chunks.forEach((c) => parser.push(c));
            parser.end();
            return events;
          };
          const runs = [];
          for (let i = 0; i <= stream.length; i++) {
            runs.push(run([stream.slice(0, i), stream.slice(i)]));
          }
          runs.push(run([...stream]));
          return runs;
        }""",
        stream,
    )
    for events in results:
        assert events == expected


def test_subtitle_timestamps_carry_rounding_into_the_next_unit(page: Page) -> None:
    times = page.evaluate(
        """() => {
          const w = window.whisperfleet;
          return [w.vttTime(1), w.vttTime(59.9996), w.vttTime(7384.25), w.vttTime(-0.2),
                  w.clock(3725), w.clock(65)];
        }"""
    )
    assert times == ["00:00:01.000", "00:01:00.000", "02:03:04.250", "00:00:00.000", "1:02:05",
                     "1:05"]  # fmt: skip


@pytest.mark.parametrize("width", [320, 390])
def test_page_fits_a_phone_screen_without_sideways_scrolling(page: Page, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 800})
    page.click("#advanced summary")
    page.fill("#media-url", "https://example.com/" + "a-very-long-media-file-name" * 4 + ".mp3")
    assert page.evaluate("document.documentElement.scrollWidth") == width


def test_cancel_stops_the_stream_and_keeps_the_segments_so_far(
    page: Page, media_server: MediaServer
) -> None:
    start_job(page, media_server.url("speech_200s.mp3"), **SMALL_CHUNKS)
    page.wait_for_selector("#segments li", timeout=30_000)
    page.click("#cancel")
    page.wait_for_selector("#app[data-state=cancelled]", timeout=10_000)
    kept = page.eval_on_selector_all("#segments li", "rows => rows.length")
    page.wait_for_timeout(1000)
    assert page.eval_on_selector_all("#segments li", "rows => rows.length") == kept
    assert page.is_hidden("#error")
    assert f"kept {kept} segments" in (page.text_content("#status") or "")
    assert page.is_enabled("#transcribe") and page.is_disabled("#cancel")
    assert page.is_enabled("#download-srt")


def test_a_reopened_tab_comes_back_to_its_job_from_the_address(
    live_run: LiveRun, browser: Browser, stack: LocalStack
) -> None:
    address = live_run.page.url
    assert "?job=job_" in address
    page = open_page(browser, stack)
    try:
        page.goto(address)
        page.wait_for_selector("#app[data-state=done]", timeout=30_000)
        texts = page.eval_on_selector_all(
            "#segments li .segment-text", "rows => rows.map(r => r.textContent)"
        )
        assert texts == [s["text"].strip() for s in live_run.segments]
        assert page.get_attribute("#status", "data-num-segments") == str(len(texts))
    finally:
        page.context.close()


def test_a_dropped_event_stream_is_resumed_after_the_last_event(page: Page) -> None:
    segment = {"end_time_sec": 2.5, "text": " Hi.", "language": "english", "bcp47_key": "en"}
    header = {"media_url": "http://h/a.mp3", "input_duration_sec": 9.0,
              "macro_chunks": [{"start_sec": 0.0, "end_sec": 9.0}]}  # fmt: skip
    footer = {"input_duration_sec": 9.0, "processing_duration_sec": 1.0, "speedup": 9.0,
              "num_segments": 3, "languages": ["en"]}  # fmt: skip
    first = sse(0, "header", header) + sse(1, "segment", {"start_time_sec": 0.5, **segment})
    first += sse(2, "segment", {"start_time_sec": 3.0, **segment})  # then the connection drops
    rest = sse(3, "segment", {"start_time_sec": 6.0, **segment}) + sse(4, "footer", footer)
    resumed_from: list[str | None] = []

    def events(route: Any) -> None:
        last = route.request.headers.get("last-event-id")
        resumed_from.append(last)
        body = first if last is None else rest
        route.fulfill(status=200, content_type="text/event-stream", body=body)

    page.route("**/v1/jobs", lambda route: route.fulfill(status=202, json={"id": "job_1"}))
    page.route("**/v1/jobs/job_1/events", events)
    start_job(page, "http://h/a.mp3")
    page.wait_for_selector("#app[data-state=done]", timeout=10_000)
    assert resumed_from == [None, "2"]
    assert page.eval_on_selector_all("#segments li", "rows => rows.length") == 3


# -- speakers ---------------------------------------------------------------------------------

DIALOGUE_HEADER = {"media_url": "http://h/call.mp3", "input_duration_sec": 9.0,
                   "macro_chunks": [{"start_sec": 0.0, "end_sec": 9.0}]}  # fmt: skip
DIALOGUE_FOOTER = {"input_duration_sec": 9.0, "processing_duration_sec": 1.0, "speedup": 9.0,
                   "num_segments": 3, "languages": ["en"]}  # fmt: skip


def said(start: float, text: str, speaker: str) -> dict[str, Any]:
    return {"start_time_sec": start, "end_time_sec": start + 2.0, "text": text,
            "language": "english", "bcp47_key": "en", "speaker": speaker}  # fmt: skip


# Streamed with provisional labels; the whole file finds that C is A's voice.
DIALOGUE = [said(0.0, " Hello there.", "A"), said(2.5, " Hi.", "B"), said(5.0, " Me again.", "C")]
FINAL = {"labels": {"A": "A", "B": "B", "C": "A"}, "speakers": ["A", "B"]}


def dialogue_output(*speakers: str) -> TranscribeOutput:
    return TranscribeOutput(
        segments=[Segment.model_validate({**s, "speaker": who})
                  for s, who in zip(DIALOGUE, speakers, strict=True)],
        input_duration_sec=9.0, processing_duration_sec=1.0, speedup=9.0,
    )  # fmt: skip


def speakers_shown(page: Page) -> list[dict[str, str]]:
    return page.eval_on_selector_all(  # type: ignore[no-any-return]
        "#segments .segment-speaker",
        "spans => spans.map(s => ({name: s.textContent, label: s.dataset.speaker,"
        " colour: s.style.getPropertyValue('--speaker-colour')}))",
    )


def test_speakers_are_relabelled_coloured_and_renamed_into_the_downloads(page: Page) -> None:
    body = (
        sse(0, "header", DIALOGUE_HEADER)
        + "".join(sse(i + 1, "segment", s) for i, s in enumerate(DIALOGUE))
        + sse(4, "speakers", FINAL)
        + sse(5, "footer", DIALOGUE_FOOTER)
    )
    submitted: list[Any] = []

    def submit(route: Any) -> None:
        submitted.append(route.request.post_data_json)
        route.fulfill(status=202, json={"id": "job_1"})

    page.route("**/v1/jobs", submit)
    page.route(
        "**/v1/jobs/job_1/events",
        lambda route: route.fulfill(status=200, content_type="text/event-stream", body=body),
    )
    assert page.is_disabled("#num-speakers")
    page.check("#diarize")
    page.fill("#num-speakers", "2")
    start_job(page, "http://h/call.mp3")
    page.wait_for_selector("#app[data-state=done]", timeout=10_000)
    assert submitted[0]["params"] == {"diarize": True, "num_speakers": 2}

    shown = speakers_shown(page)
    assert [s["label"] for s in shown] == [s["name"] for s in shown] == ["A", "B", "A"]
    assert shown[0]["colour"] == shown[2]["colour"] != shown[1]["colour"]
    assert page.locator("#speaker-list input").count() == 2  # C was A all along

    page.get_by_label("Speaker A").fill("Ann Lee")
    assert [s["name"] for s in speakers_shown(page)] == ["Ann Lee", "B", "Ann Lee"]
    assert page.text_content("#segments .segment-text") == "Hello there."  # the name is apart

    renamed = dialogue_output("Ann Lee", "B", "Ann Lee")
    name, srt = download(page, "#download-srt")
    assert name == "call.srt" and srt == formats.render(renamed, "srt")
    assert "[Ann Lee] Hello there." in srt and "[B] Hi." in srt
    _, vtt = download(page, "#download-vtt")
    assert vtt == formats.render(renamed, "vtt") and "<v Ann Lee>Me again.</v>" in vtt
    _, txt = download(page, "#download-txt")
    assert (
        txt
        == formats.render(renamed, "txt")
        == ("[Ann Lee] Hello there.\n[B] Hi.\n[Ann Lee] Me again.\n")
    )
    page.click("#copy")
    page.wait_for_function("document.getElementById('copy').textContent === 'Copied'")
    assert page.evaluate("navigator.clipboard.readText()") == txt


def test_a_name_typed_while_streaming_goes_with_its_label_when_the_labels_are_final(
    page: Page,
) -> None:
    """The name typed for provisional C belongs to the voice the whole file calls A."""
    first = sse(0, "header", DIALOGUE_HEADER) + "".join(
        sse(i + 1, "segment", s) for i, s in enumerate(DIALOGUE)
    )  # then the connection drops, and the page reconnects until the rest is there
    rest = sse(4, "speakers", FINAL) + sse(5, "footer", DIALOGUE_FOOTER)
    typed = {"done": False}

    def events(route: Any) -> None:
        resumed = route.request.headers.get("last-event-id") is not None
        body = first if not resumed else rest if typed["done"] else ""
        route.fulfill(status=200, content_type="text/event-stream", body=body)

    page.route("**/v1/jobs", lambda route: route.fulfill(status=202, json={"id": "job_1"}))
    page.route("**/v1/jobs/job_1/events", events)
    page.check("#diarize")
    start_job(page, "http://h/call.mp3")
    page.wait_for_selector("#speaker-list li:nth-child(3)")
    assert page.is_hidden("#speakers") is False
    page.get_by_label("Speaker C").fill("Cy")
    assert [s["name"] for s in speakers_shown(page)] == ["A", "B", "Cy"]
    typed["done"] = True
    page.wait_for_selector("#app[data-state=done]", timeout=20_000)
    assert [s["name"] for s in speakers_shown(page)] == ["Cy", "B", "Cy"]
    assert page.get_by_label("Speaker A").input_value() == "Cy"
    _, txt = download(page, "#download-txt")
    assert txt == "[Cy] Hello there.\n[B] Hi.\n[Cy] Me again.\n"


def test_without_speakers_the_page_shows_no_speaker_list(page: Page) -> None:
    plain = [{k: v for k, v in s.items() if k != "speaker"} for s in DIALOGUE]
    body = (
        sse(0, "header", DIALOGUE_HEADER)
        + "".join(sse(i + 1, "segment", s) for i, s in enumerate(plain))
        + sse(4, "footer", DIALOGUE_FOOTER)
    )
    page.route("**/v1/jobs", lambda route: route.fulfill(status=202, json={"id": "job_1"}))
    page.route(
        "**/v1/jobs/job_1/events",
        lambda route: route.fulfill(status=200, content_type="text/event-stream", body=body),
    )
    start_job(page, "http://h/call.mp3")
    page.wait_for_selector("#app[data-state=done]", timeout=10_000)
    assert page.is_hidden("#speakers") and speakers_shown(page) == []
    _, txt = download(page, "#download-txt")
    assert txt == "Hello there.\nHi.\nMe again.\n"
