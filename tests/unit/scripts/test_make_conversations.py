"""The layout of the diarization conversations (scripts/make_conversations.py), without espeak-ng:
a fake voice says every text in a time that grows with its length."""

from __future__ import annotations

import base64
import io
import itertools
import wave

import numpy as np
import pytest

from scripts.make_conversations import (
    BACKCHANNELS,
    Layout,
    Turn,
    manifest,
    plan,
    reference_turns,
    wav_data_url,
)

FOUR = ("Ann", "Ben", "Cat", "Dan")


def fake_say(speaker: str, text: str) -> float:
    """0.45-0.65 s for a backchannel, 1-5 s for a sentence."""
    return 0.3 + 0.05 * len(text)


def speech_activity(turns: list[Turn], speakers: tuple[str, ...]) -> np.ndarray:
    """Speakers x 10 ms frames: how many utterances of each speaker are on."""
    end = max(t.end_sec for t in turns)
    activity = np.zeros((len(speakers), int(end * 100) + 1), dtype=int)
    for turn in turns:
        for u in turn.utterances:
            activity[
                speakers.index(u.speaker), round(u.start_sec * 100) : round(u.end_sec * 100)
            ] += 1
    return activity


def test_turns_last_1_to_20_seconds_and_alternate() -> None:
    turns = plan(FOUR, 1200, seed=1, say=fake_say)
    main = [t for t in turns if not t.backchannel]
    assert len(main) > 100
    assert all(1.0 <= t.end_sec - t.start_sec <= 20.0 for t in main)
    assert all(a.speaker != b.speaker for a, b in itertools.pairwise(main))
    lengths = [t.end_sec - t.start_sec for t in main]
    assert min(lengths) < 3 and max(lengths) > 12  # short and long turns both happen


def test_pauses_between_turns_or_a_small_overlap() -> None:
    main = [t for t in plan(FOUR, 1200, seed=2, say=fake_say) if not t.backchannel]
    gaps = np.array([b.start_sec - a.end_sec for a, b in itertools.pairwise(main)])
    pauses, overlaps = gaps[gaps >= 0], -gaps[gaps < 0]
    assert np.all((pauses >= 0.2) & (pauses <= 1.5))
    assert np.all(overlaps <= 0.8)
    assert 0.03 < len(overlaps) / len(gaps) < 0.25  # about one turn change in ten


def test_backchannels_come_from_a_listener_inside_a_turn() -> None:
    turns = plan(FOUR, 1200, seed=3, say=fake_say)
    main = [t for t in turns if not t.backchannel]
    backchannels = [t for t in turns if t.backchannel]
    assert len(backchannels) > 0.1 * len(main)
    for bc in backchannels:
        assert bc.text in BACKCHANNELS
        assert 0.3 <= bc.end_sec - bc.start_sec <= 1.0
        during = [t for t in main if t.start_sec < bc.start_sec < t.end_sec]
        assert during and all(t.speaker != bc.speaker for t in during)


def test_no_voice_overlaps_itself_and_overlap_is_rare() -> None:
    turns = plan(FOUR, 1200, seed=4, say=fake_say)
    activity = speech_activity(turns, FOUR)
    assert activity.max() == 1
    speech = activity.sum(axis=0)
    share = (speech >= 2).sum() / (speech >= 1).sum()
    assert 0 < share < 0.05


def test_every_voice_recurs_in_every_two_minutes() -> None:
    turns = plan(FOUR, 1800, seed=5, say=fake_say)
    activity = speech_activity(turns, FOUR)
    for start in range(0, 1800 - 120, 120):
        window = activity[:, start * 100 : (start + 120) * 100].sum(axis=1) / 100
        assert np.all(window > 5), (start, window)


def test_the_layout_is_seeded() -> None:
    first = plan(("Ann", "Ben"), 300, seed=6, say=fake_say)
    assert first == plan(("Ann", "Ben"), 300, seed=6, say=fake_say)
    assert first != plan(("Ann", "Ben"), 300, seed=7, say=fake_say)
    assert first[-1].start_sec < 300 < first[-1].end_sec + 20


def test_no_overlap_and_no_backchannels_when_the_layout_says_so() -> None:
    layout = Layout(overlap_share=0.0, backchannel_share=0.0)
    turns = plan(("Ann", "Ben"), 600, seed=8, say=fake_say, layout=layout)
    assert not any(t.backchannel for t in turns)
    assert speech_activity(turns, ("Ann", "Ben")).sum(axis=0).max() == 1


def test_a_conversation_needs_two_distinct_speakers() -> None:
    with pytest.raises(ValueError, match="two or more distinct speakers"):
        plan(("Ann",), 60, seed=1, say=fake_say)
    with pytest.raises(ValueError, match="two or more distinct speakers"):
        plan(("Ann", "Ann"), 60, seed=1, say=fake_say)


def test_manifest_lists_turns_and_every_sentence_in_time_order() -> None:
    turns = plan(("Ann", "Ben"), 200, seed=9, say=fake_say)
    result = manifest(turns, turns[-1].end_sec + 0.5, seed=9)
    assert result["speakers"] == {"Ann": "en-us+f2", "Ben": "en+m3"}
    assert len(result["turns"]) == len(turns)
    assert {t["kind"] for t in result["turns"]} == {"turn", "backchannel"}
    starts = [s["start_sec"] for s in result["sentences"]]
    assert starts == sorted(starts)
    assert len(starts) == sum(len(t.utterances) for t in turns)


def test_reference_bridges_a_speakers_pauses_under_0_3_s() -> None:
    sentences = [
        {"start_sec": 0.0, "end_sec": 2.0, "speaker": "Ann"},
        {"start_sec": 1.5, "end_sec": 2.0, "speaker": "Ben"},  # a backchannel over Ann
        {"start_sec": 2.2, "end_sec": 4.0, "speaker": "Ann"},  # 0.2 s after her last: bridged
        {"start_sec": 4.5, "end_sec": 6.0, "speaker": "Ann"},  # 0.5 s: a new stretch
    ]
    assert reference_turns({"sentences": sentences}) == [
        (0.0, 4.0, "Ann"),
        (1.5, 2.0, "Ben"),
        (4.5, 6.0, "Ann"),
    ]


def test_reference_clips_travel_as_16_bit_wav_data_urls() -> None:
    audio = np.sin(np.arange(16000 * 5) / 10).astype(np.float32) * 0.5
    url = wav_data_url(audio)
    assert url.startswith("data:audio/wav;base64,")
    with wave.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as reader:
        assert (reader.getframerate(), reader.getnchannels(), reader.getsampwidth()) == (
            16000,
            1,
            2,
        )
        assert reader.getnframes() == len(audio)
