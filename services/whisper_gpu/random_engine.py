"""The engine of the random models (`random-tiny`, ...: `random_model.py`): tests, benchmarks
and offline demos.

Random weights decode to gibberish that can't be aligned to the audio, so a window's text is
one segment spanning the window, and no coverage window follows (there are no word times to
find gaps with). Everything before that is the real engine's: rounds of batched windows,
language detection and halving, the same model calls. Temperature fallback is off unless
`WHISPER_TEMPERATURE_FALLBACK` turns it on: random text never passes the quality checks, so
every window would be decoded four times.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.whisper_gpu.decoding import Decoded, DecodeRequest
from services.whisper_gpu.engine import PreparedClip, WindowEngine, segment_from
from services.whisper_gpu.windows import Window
from shared.schemas import ClipSegment
from shared.vad import Span

_WindowText = tuple[Window, Decoded, str]


class RandomEngine(WindowEngine[list[_WindowText]]):
    """One segment per decoded window: its text, its span, its decode's scores."""

    fallback_by_default = False

    def _new_result(self) -> list[_WindowText]:
        return []

    def _read(
        self,
        clips: Sequence[PreparedClip],
        windows: list[Window],
        encoder_output: object,
        decoded: list[Decoded],
        results: list[list[_WindowText]],
        request: DecodeRequest,
    ) -> list[Window]:
        for window, result in zip(windows, decoded, strict=True):
            if result.has_text:
                tokenizer = self.decoder.tokenizer(result.language, request.options.task)
                text = tokenizer.decode(result.tokens)
                results[window.clip].append((window, result, text))
        return []

    def _segments(
        self, result: list[_WindowText], speech: Sequence[Span]
    ) -> list[tuple[ClipSegment, Decoded]]:
        return [
            (segment_from(window.start_sec, window.end_sec, text, decoded, None), decoded)
            for window, decoded, text in result
        ]
