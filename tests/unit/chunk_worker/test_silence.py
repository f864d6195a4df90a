"""quietest_point and MicroChunker on synthetic signals: cuts land in the pause, and never exceed
the maximum (on committed speech, decoded by FFmpeg: tests/integration/test_silence.py)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from services.chunk_worker.pipeline import MicroChunk, MicroChunker
from services.chunk_worker.silence import quietest_point
from shared.schemas import SAMPLE_RATE_HZ

RATE = SAMPLE_RATE_HZ


def noise(seconds: float, dbfs: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal(int(seconds * RATE)) * 32768 * 10 ** (dbfs / 20)


def as_pcm(signal: np.ndarray) -> np.ndarray:
    return np.clip(np.round(signal), -32768, 32767).astype(np.int16)


def cuts(samples: np.ndarray, max_sec: float, smoothing: int) -> Iterator[tuple[float, float]]:
    """(cut time, chunk start time) of every cut MicroChunker makes, fed in 4096-sample blocks."""
    chunker = MicroChunker(round(max_sec * RATE), smoothing)
    chunks = [
        chunk
        for start in range(0, len(samples), 4096)
        for chunk in chunker.feed(samples[start : start + 4096])
    ]
    chunks += list(chunker.finish())
    for chunk in chunks[:-1]:
        yield (chunk.offset_samples + len(chunk.samples)) / RATE, chunk.offset_samples / RATE


# -- synthetic signals -------------------------------------------------------------------------


def test_cut_lands_in_the_middle_of_the_only_gap() -> None:
    signal = noise(10, -20)
    signal[int(6.0 * RATE) : int(6.8 * RATE)] = noise(0.8, -60, seed=1)
    cut = quietest_point(as_pcm(signal), 5 * RATE, 10 * RATE, 3200)
    assert 6.3 * RATE <= cut <= 6.5 * RATE


def test_widest_quiet_run_wins_over_a_narrow_one() -> None:
    signal = noise(10, -20)
    signal[int(5.5 * RATE) : int(5.9 * RATE)] = noise(0.4, -60, seed=1)  # narrow gap
    signal[int(8.0 * RATE) : int(9.5 * RATE)] = noise(1.5, -60, seed=2)  # wide gap
    cut = quietest_point(as_pcm(signal), 5 * RATE, 10 * RATE, 3200)
    assert 8.5 * RATE <= cut <= 9.0 * RATE


def test_digital_silence_is_quieter_than_a_noise_floor() -> None:
    signal = noise(10, -50)
    signal[int(7.0 * RATE) : int(7.5 * RATE)] = 0.0
    cut = quietest_point(as_pcm(signal), 5 * RATE, 10 * RATE, 1600)
    assert 7.05 * RATE <= cut <= 7.45 * RATE


def test_cut_stays_inside_the_search_range_without_any_pause() -> None:
    t = np.arange(10 * RATE) / RATE
    music = 8000 * np.sin(2 * np.pi * 220 * t) * (1.1 + np.sin(2 * np.pi * 0.37 * t))
    cut = quietest_point(as_pcm(music + noise(10, -30)), 5 * RATE, 10 * RATE, 3200)
    assert 5 * RATE <= cut <= 10 * RATE


@pytest.mark.parametrize(
    ("length", "start", "end", "expected"),
    [
        (1000, 100, 900, 500),  # shorter than the window: the middle
        (1000, -50, 5000, 500),  # clamped to the samples
        (1000, 4000, 5000, 1000),  # entirely past the end: the end, never beyond it
    ],
)
def test_short_or_out_of_range_spans_are_clamped(
    length: int, start: int, end: int, expected: int
) -> None:
    assert quietest_point(np.zeros(length, dtype=np.int16), start, end, 3200) == expected


@pytest.mark.parametrize("kind", ["white noise", "music"])
def test_audio_without_pauses_is_cut_between_half_and_the_maximum(kind: str) -> None:
    t = np.arange(130 * RATE) / RATE
    if kind == "music":
        signal = 6000 * np.sin(2 * np.pi * (200 + 50 * np.sin(t)) * t) + noise(130, -35)
    else:
        signal = noise(130, -15)
    times = list(cuts(as_pcm(signal), max_sec=20, smoothing=3200))
    assert len(times) >= 6
    for cut, chunk_start in times:
        assert 10 - 0.01 <= cut - chunk_start <= 20


# -- packed micro chunks (the limit is on speech, not audio) -----------------------------------


def loud_scores(audio: np.ndarray) -> np.ndarray:
    """A stand-in for the VAD: a window is speech where the audio is loud."""
    windows = audio.reshape(-1, 512)
    loud: np.ndarray = np.sqrt((windows**2).mean(axis=1)) > 0.01
    return loud.astype(np.float32)


def talk(sentences: int, speech_sec: float, pause_sec: float) -> np.ndarray:
    """Sentences of loud noise with quiet pauses between them."""
    parts = []
    for i in range(sentences):
        parts += [noise(speech_sec, -20, seed=i), noise(pause_sec, -70, seed=100 + i)]
    return as_pcm(np.concatenate(parts)).astype(np.float32)


def packed_chunks(
    samples: np.ndarray, max_sec: float, first_sec: float | None = None
) -> list[MicroChunk]:
    chunker = MicroChunker(
        round(max_sec * RATE), 3200, round(first_sec * RATE) if first_sec else None, loud_scores
    )
    chunks = [
        chunk
        for start in range(0, len(samples), 32768)
        for chunk in chunker.feed(samples[start : start + 32768])
    ]
    return chunks + list(chunker.finish())


def test_packed_chunks_hold_the_limit_of_speech_across_more_audio() -> None:
    # 4 s sentences, 2 s pauses: a 30 s limit of speech spans ~40 s of audio.
    samples = talk(20, 4.0, 2.0)
    chunks = packed_chunks(samples, 30.0)
    assert sum(len(c.samples) for c in chunks) == len(samples)  # nothing lost or repeated
    for chunk in chunks[:-1]:
        assert chunk.speech is not None
        speech = sum(e - s for s, e in chunk.speech)
        assert 15.0 <= speech <= 30.0  # the limit is on speech ...
        assert len(chunk.samples) / RATE > 30.0  # ... so a chunk holds more than 30 s of audio
        cut = (chunk.offset_samples + len(chunk.samples)) / RATE
        assert cut % 6.0 > 4.0  # and is cut in a pause


def test_speech_spans_are_in_each_chunks_own_time() -> None:
    samples = talk(10, 4.0, 2.0)
    chunks = packed_chunks(samples, 20.0)
    for chunk in chunks:
        start = chunk.offset_samples / RATE
        assert chunk.speech
        for s, e in chunk.speech:  # each span is a sentence (VAD padding aside)
            sentence = (start + s + 0.25) // 6.0
            assert start + s >= sentence * 6.0 - 0.25
            assert start + e <= sentence * 6.0 + 4.0 + 0.25


def test_a_packed_chunk_without_enough_speech_stops_at_twice_the_limit() -> None:
    samples = talk(3, 1.0, 30.0)  # little speech, long silences
    chunks = packed_chunks(samples, 10.0)
    assert all(len(c.samples) <= 20 * RATE for c in chunks)
    assert sum(len(c.samples) for c in chunks) == len(samples)


def test_the_first_packed_chunk_has_its_own_smaller_limit() -> None:
    chunks = packed_chunks(talk(10, 4.0, 2.0), 30.0, first_sec=10.0)
    assert chunks[0].speech is not None
    assert sum(e - s for s, e in chunks[0].speech) <= 10.0
    assert sum(e - s for s, e in chunks[1].speech or []) > 15.0


def test_packed_cuts_do_not_depend_on_how_the_audio_arrives() -> None:
    """Regression: the VAD scored each block as it came (FFmpeg's reads vary in size), so the
    same file got other cuts, and other words, from run to run."""
    samples = talk(12, 3.5, 1.3)

    def fresh_state_scores(audio: np.ndarray) -> np.ndarray:
        scores = loud_scores(audio)
        scores[:4] = 0.0  # like the VAD's, a call's first windows lack the state before them
        return scores

    def run(block: int) -> list[tuple[int, list[tuple[float, float]] | None]]:
        chunker = MicroChunker(20 * RATE, 3200, None, fresh_state_scores)
        chunks = [
            chunk
            for start in range(0, len(samples), block)
            for chunk in chunker.feed(samples[start : start + block])
        ]
        return [(c.offset_samples, c.speech) for c in chunks + list(chunker.finish())]

    assert run(4096) == run(32768) == run(10_001)
