"""Output formats: the one module every answer, download and CLI file comes from."""

from __future__ import annotations

import itertools
import json
import unicodedata

import pytest

from shared import formats
from shared.schemas import MacroChunkReport, MicroChunkReport, Segment, TranscribeOutput, Word


def segment(start: float, end: float, text: str, words: list[Word] | None = None) -> Segment:
    return Segment(
        start_time_sec=start,
        end_time_sec=end,
        text=text,
        language="english",
        bcp47_key="en",
        words=words,
        avg_logprob=-0.2,
        compression_ratio=1.3,
        no_speech_prob=0.01,
    )


def output(*segments: Segment, speakers: list[str] | None = None) -> TranscribeOutput:
    """A transcript; `speakers` (maybe empty) marks one made with diarization."""
    return TranscribeOutput(
        segments=list(segments),
        input_duration_sec=12.5,
        processing_duration_sec=1.0,
        speedup=12.5,
        speakers=speakers,
    )


TWO = output(segment(0.52, 2.61, " Hello there."), segment(3.0, 4.25, " General Kenobi!"))


def test_json_and_text() -> None:
    assert json.loads(formats.render(TWO, "json")) == {"text": "Hello there. General Kenobi!"}
    assert formats.render(TWO, "text") == "Hello there.\nGeneral Kenobi!\n"
    assert formats.render(TWO, "txt") == formats.render(TWO, "text")


def test_srt_and_vtt_times_and_numbering() -> None:
    assert formats.render(TWO, "srt") == (
        "1\n00:00:00,520 --> 00:00:02,610\nHello there.\n\n"
        "2\n00:00:03,000 --> 00:00:04,250\nGeneral Kenobi!\n"
    )
    assert formats.render(TWO, "vtt") == (
        "WEBVTT\n\n00:00:00.520 --> 00:00:02.610\nHello there.\n\n"
        "00:00:03.000 --> 00:00:04.250\nGeneral Kenobi!\n"
    )


def test_timestamps_carry_rounding_into_the_next_unit() -> None:
    late = output(segment(59.9996, 7384.25, " x"), segment(7384.25, 7384.3, " y"))
    assert "00:01:00,000 --> 02:03:04,250" in formats.render(late, "srt")


def test_a_long_segment_becomes_cues_of_two_short_lines_at_word_times() -> None:
    text = " ".join(f"word{i}" for i in range(40))
    words = [
        Word(start_sec=i * 0.4, end_sec=i * 0.4 + 0.3, word=f" word{i}", probability=1)
        for i in range(40)
    ]
    cues = formats.cues([segment(0.0, 15.9, " " + text, words)])
    assert len(cues) > 2
    assert " ".join(" ".join(c.lines) for c in cues) == text  # nothing lost or repeated
    for cue in cues:
        assert 1 <= len(cue.lines) <= 2 and all(len(line) <= 42 for line in cue.lines)
        assert cue.end_sec - cue.start_sec <= 7.0
        first_word = int(cue.lines[0].split()[0].removeprefix("word"))
        assert cue.start_sec == pytest.approx(first_word * 0.4)  # a word's own time


CHINESE = "今天天气很好，我们一起去公园散步吧。公园里有很多人在跑步、打太极拳，还有小朋友在放风筝。"


def columns(line: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in line)


def test_chinese_without_spaces_is_cut_into_cues_of_two_short_lines() -> None:
    """Regression: text with no spaces was one cue of one 47-character line (94 columns)."""
    chinese = segment(0.0, 9.0, " " + CHINESE)
    cues = formats.cues([chinese])
    assert len(cues) >= 2
    assert "".join("".join(c.lines) for c in cues) == CHINESE  # no space put between words
    for cue in cues:
        assert len(cue.lines) <= 2 and all(columns(line) <= 42 for line in cue.lines)
        assert not cue.lines[0].startswith(("，", "。", "、"))
    assert cues[0].lines[-1].endswith("。")  # cut after the sentence, not mid-word


def test_words_of_a_script_without_spaces_are_joined_without_them() -> None:
    words = [Word(start_sec=i * 0.5, end_sec=i * 0.5 + 0.4, word=w, probability=0.9)
             for i, w in enumerate(["今天", "天气", "很", "好。"])]  # fmt: skip
    [cue] = formats.cues([segment(0.0, 2.0, "今天天气很好。", words)])
    assert cue.lines == ("今天天气很好。",)
    srt = formats.srt([segment(0.0, 2.0, "今天天气很好。", words)])
    assert "今天天气很好。" in srt


def test_a_cue_of_no_length_is_held_on_screen_up_to_the_next() -> None:
    """Regression: a word timed as an instant made `00:03:00,875 --> 00:03:00,875`, a cue
    players drop."""
    instant = [Word(start_sec=180.875, end_sec=180.875, word="唔", probability=0.5)]
    after = [Word(start_sec=181.1, end_sec=182.0, word="好", probability=0.9)]
    alone = formats.cues([segment(180.875, 180.875, "唔", instant)])
    assert (alone[0].start_sec, alone[0].end_sec) == (180.875, 181.375)
    crowded = formats.cues(
        [segment(180.875, 180.875, "唔", instant), segment(181.1, 182, "好", after)]
    )
    assert crowded[0].end_sec == 181.1 and crowded[1].start_sec == 181.1
    assert "00:03:00,875 --> 00:03:00,875" not in formats.srt(
        [segment(180.875, 180.875, "唔", instant)]
    )


def test_without_words_cues_are_timed_by_their_characters() -> None:
    cues = formats.cues([segment(10.0, 30.0, " " + "a bb ccc dddd " * 12)])
    assert cues[0].start_sec == 10.0 and cues[-1].end_sec == pytest.approx(30.0)
    assert all(b.start_sec == pytest.approx(a.end_sec) for a, b in itertools.pairwise(cues))


def test_tsv_is_milliseconds_and_text() -> None:
    assert formats.render(TWO, "tsv") == (
        "start\tend\ttext\n520\t2610\tHello there.\n3000\t4250\tGeneral Kenobi!\n"
    )


def test_verbose_json_is_openais_shape_with_words_when_asked() -> None:
    words = [Word(start_sec=0.52, end_sec=1.0, word=" Hello", probability=0.9)]
    body = json.loads(
        formats.render(output(segment(0.52, 1.0, " Hello", words)), "verbose_json", words=True)
    )
    assert body["task"] == "transcribe" and body["language"] == "english"
    assert body["duration"] == 12.5 and body["text"] == "Hello"
    [seg] = body["segments"]
    assert {"id", "start", "end", "text", "avg_logprob", "compression_ratio",
            "no_speech_prob", "temperature", "tokens", "seek"} <= set(seg)  # fmt: skip
    assert body["words"] == [{"word": "Hello", "start": 0.52, "end": 1.0}]
    without = json.loads(formats.render(TWO, "verbose_json"))
    assert "words" not in without


def test_verbose_json_carries_the_temperature_each_segment_was_decoded_at() -> None:
    """A segment sampled after a quality check failed says so, as OpenAI's does."""
    fallback = segment(0.5, 2.0, " Mm hmm.")
    fallback.temperature = 0.4
    body = json.loads(formats.render(output(segment(0, 0.5, " Hi."), fallback), "verbose_json"))
    assert [s["temperature"] for s in body["segments"]] == [0.0, 0.4]


def test_verbose_json_of_a_silent_file_names_the_language_asked_for_not_english() -> None:
    silent = output()
    body = json.loads(formats.render(silent, "verbose_json", language="de"))
    assert body["language"] == "german"
    assert json.loads(formats.render(silent, "verbose_json"))["language"] == "english"
    translated = json.loads(formats.render(silent, "verbose_json", task="translate", language="de"))
    assert translated["language"] == "english"  # the text's language


def test_empty_segments_make_no_cues_and_unknown_formats_are_refused() -> None:
    assert formats.render(output(segment(0, 1, "  ")), "srt") == ""
    with pytest.raises(ValueError, match="unknown format"):
        formats.render(TWO, "docx")


# -- speakers ---------------------------------------------------------------------------------


def said(start: float, end: float, text: str, speaker: str | None) -> Segment:
    labelled = segment(start, end, text)
    labelled.speaker = speaker
    return labelled


DIALOGUE = output(
    said(0.5, 2.0, " Hello there.", "A"),
    said(2.0, 3.5, " How are you?", "A"),
    said(4.0, 5.0, " Fine.", "B"),
    said(5.5, 6.0, " Good.", "A"),
    speakers=["A", "B"],
)


def test_every_format_is_listed_once_with_its_media_type_and_extension() -> None:
    assert "diarized_json" in formats.FORMATS
    assert len(set(formats.FORMATS)) == len(formats.FORMATS)
    assert set(formats.MEDIA_TYPES) == set(formats.EXTENSIONS) == set(formats.Format)
    for fmt in formats.Format:
        assert formats.render(DIALOGUE, fmt) == formats.render(DIALOGUE, fmt.value)
        assert fmt.media_type and fmt.extension


def test_a_format_is_parsed_by_its_name_and_an_unknown_one_lists_them_all() -> None:
    assert formats.Format.parse("srt") is formats.Format.SRT
    with pytest.raises(ValueError, match="unknown format 'SRT'; use one of json, verbose_json"):
        formats.Format.parse("SRT")


def test_diarized_text_is_one_line_per_speaker_turn_with_its_label() -> None:
    assert formats.render(DIALOGUE, "txt") == (
        "[A] Hello there. How are you?\n[B] Fine.\n[A] Good.\n"
    )


def test_srt_prefixes_every_cue_with_its_speaker() -> None:
    assert formats.render(DIALOGUE, "srt").split("\n\n")[:3] == [
        "1\n00:00:00,500 --> 00:00:02,000\n[A] Hello there.",
        "2\n00:00:02,000 --> 00:00:03,500\n[A] How are you?",
        "3\n00:00:04,000 --> 00:00:05,000\n[B] Fine.",
    ]


def test_an_srt_speaker_prefix_counts_towards_the_first_lines_42_characters() -> None:
    text = " ".join(["abcdefghi"] * 8)  # 79 characters: two full lines without a prefix
    plain = formats.render(output(segment(0, 5, text)), "srt").splitlines()[2:]
    labelled = formats.render(output(said(0, 5, text, "Speaker")), "srt").split("\n\n")
    assert len(plain) == 2 and len(labelled) == 2  # the prefix's room costs a second cue
    for block in labelled:
        lines = block.strip("\n").split("\n")[2:]
        assert lines[0].startswith("[Speaker] ")
        assert all(len(line) <= 42 for line in lines), lines


def test_vtt_cues_are_voice_spans_with_the_label_escaped() -> None:
    vtt = formats.render(output(said(0, 1, " Hi.", "A"), said(1, 2, " Yo.", "Bo <b> & co")), "vtt")
    assert vtt == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n<v A>Hi.</v>\n\n"
        "00:00:01.000 --> 00:00:02.000\n<v Bo &lt;b&gt; &amp; co>Yo.</v>\n"
    )


def test_a_cue_never_holds_two_speakers_even_within_one_segment() -> None:
    spoken = [("Yes", "A"), ("yes.", "A"), ("No", "B"), ("way.", "B"), ("Sure.", None)]
    words = [
        Word(start_sec=i * 0.5, end_sec=i * 0.5 + 0.4, word=f" {w}", probability=1, speaker=s)
        for i, (w, s) in enumerate(spoken)
    ]
    labelled = said(0.0, 2.4, " Yes yes. No way. Sure.", "A")
    labelled.words = words
    cues = formats.cues([labelled])
    # A word without a speaker is its segment's.
    assert [(c.speaker, c.lines) for c in cues] == [
        ("A", ("Yes yes.",)), ("B", ("No way.",)), ("A", ("Sure.",))
    ]  # fmt: skip
    assert cues[1].start_sec == 1.0 and cues[1].end_sec == 1.9
    assert "[B] No way." in formats.render(output(labelled), "srt")


def test_a_label_with_a_line_break_stays_on_its_line() -> None:
    srt = formats.render(output(said(0, 1, " Hi.", "Ann\nLee")), "srt")
    assert srt == "1\n00:00:00,000 --> 00:00:01,000\n[Ann Lee] Hi.\n"


def test_tsv_has_a_speaker_column_only_when_diarized() -> None:
    assert formats.render(DIALOGUE, "tsv").splitlines()[:2] == [
        "start\tend\tspeaker\ttext",
        "500\t2000\tA\tHello there.",
    ]
    assert formats.render(TWO, "tsv").splitlines()[0] == "start\tend\ttext"


def test_verbose_json_segments_and_words_carry_their_speaker() -> None:
    words = [Word(start_sec=0.5, end_sec=1.0, word=" Hi", probability=0.9, speaker="B")]
    labelled = said(0.5, 1.0, " Hi", "B")
    labelled.words = words
    body = json.loads(formats.render(output(labelled), "verbose_json", words=True))
    assert body["segments"][0]["speaker"] == "B"
    assert body["words"] == [{"word": "Hi", "start": 0.5, "end": 1.0, "speaker": "B"}]
    plain = json.loads(formats.render(TWO, "verbose_json"))
    assert all("speaker" not in s for s in plain["segments"])


def test_diarized_json_is_the_openai_sdks_transcription_diarized() -> None:
    from openai.types.audio import TranscriptionDiarized

    text = formats.render(DIALOGUE, "diarized_json")
    parsed = TranscriptionDiarized.model_validate(json.loads(text))  # strict on every field
    assert parsed.task == "transcribe" and parsed.duration == 12.5
    assert parsed.text == "Hello there. How are you? Fine. Good."
    assert [(s.speaker, s.text, s.start, s.end) for s in parsed.segments] == [
        ("A", "Hello there.", 0.5, 2.0),
        ("A", "How are you?", 2.0, 3.5),
        ("B", "Fine.", 4.0, 5.0),
        ("A", "Good.", 5.5, 6.0),
    ]
    assert {s.type for s in parsed.segments} == {"transcript.text.segment"}
    assert len({s.id for s in parsed.segments}) == 4
    assert parsed.usage is not None and parsed.usage.type == "duration"
    assert parsed.usage.seconds == 12.5
    # Exactly the SDK's fields, no more (its models would keep unknown ones silently).
    body = json.loads(text)
    assert set(body) == set(TranscriptionDiarized.model_fields)
    assert set(body["segments"][0]) == set(type(parsed.segments[0]).model_fields)


def test_diarized_json_of_a_segment_without_a_speaker_is_an_empty_label() -> None:
    from openai.types.audio import TranscriptionDiarized

    heard = output(said(0, 1, " Hm.", None), speakers=[])
    body = json.loads(formats.render(heard, "diarized_json"))
    assert TranscriptionDiarized.model_validate(body).segments[0].speaker == ""


def test_diarized_json_of_a_transcript_made_without_diarization_is_refused() -> None:
    with pytest.raises(formats.NotDiarizedError, match="diarize=true"):
        formats.render(TWO, "diarized_json")
    speechless = json.loads(formats.render(output(speakers=[]), "diarized_json"))
    assert speechless["segments"] == [] and speechless["text"] == ""


def test_json_formats_count_micro_chunks_the_model_server_gave_up_on() -> None:
    gave_up = TWO.model_copy(
        update={
            "macro_chunks": [
                MacroChunkReport(
                    start_sec=0.0,
                    end_sec=12.5,
                    micro_chunks=[
                        MicroChunkReport(start_sec=0.0, end_sec=6.0, num_segments=2),
                        MicroChunkReport(
                            start_sec=6.0, end_sec=9.0, num_segments=0, incomplete=True
                        ),
                        MicroChunkReport(
                            start_sec=9.0, end_sec=12.5, num_segments=0, incomplete=True
                        ),
                    ],
                )
            ]
        }
    )
    assert formats.incomplete_clips(gave_up) == 2
    for fmt in ("json", "verbose_json"):
        assert json.loads(formats.render(gave_up, fmt))["incomplete_clips"] == 2
        assert "incomplete_clips" not in json.loads(formats.render(TWO, fmt))
    assert formats.render(gave_up, "srt") == formats.render(TWO, "srt")
