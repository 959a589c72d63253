"""Inline markup: parsing `[pause]` and `{speed}`, clear errors with positions, the silence a pause adds
and the duration a speed span gets, with the pitch kept."""

import math

import numpy as np
import pytest
import torch

from src.errors import InvalidInput
from src.markup import (
    MarkupError,
    Pause,
    SpeechPiece,
    assemble,
    has_markup,
    parse_markup,
    spoken_text,
    stretch,
)

RATE = 24000
FRAME = 256  # one vocoder hop at 24 kHz


def tone(seconds: float, freq: float = 220.0) -> torch.Tensor:
    t = torch.arange(round(seconds * RATE)) / RATE
    return (0.5 * torch.sin(2 * math.pi * freq * t)).reshape(1, -1)


def render_by_length(piece: SpeechPiece) -> torch.Tensor:
    """A stand-in renderer: 50 ms of tone per character, never silent."""
    return tone(0.05 * len(piece.text))


def test_plain_text_is_one_piece_and_brackets_stay_prompt_engineering():
    assert parse_markup("[I am really sad,] Hello there.") == [
        SpeechPiece("[I am really sad,] Hello there.", 1.0, 0)
    ]
    assert not has_markup("[I am really sad,] Hello there.")
    assert has_markup("Hi [pause 1s] there") and has_markup("{speed 0.9}hi{/speed}")


def test_pause_splits_the_text():
    pieces = parse_markup("Hello there. [pause 0.8s] How are you? [PAUSE 2] Bye.")
    assert pieces == [
        SpeechPiece("Hello there.", 1.0, 0),
        Pause(0.8, 13),
        SpeechPiece("How are you?", 1.0, 26),
        Pause(2.0, 39),
        SpeechPiece("Bye.", 1.0, 49),
    ]
    assert spoken_text(pieces) == "Hello there. How are you? Bye."


def test_speed_span_is_its_own_piece():
    pieces = parse_markup("I said {speed 0.5}very slowly{/speed} and then left.")
    assert [(p.text, p.speed) for p in pieces] == [
        ("I said", 1.0), ("very slowly", 0.5), ("and then left.", 1.0)
    ]


def test_pause_inside_a_speed_span_keeps_the_speed():
    pieces = parse_markup("{speed 1.5}one [pause .5s] two{/speed}")
    assert pieces == [SpeechPiece("one", 1.5, 11), Pause(0.5, 15), SpeechPiece("two", 1.5, 27)]


@pytest.mark.parametrize(
    "text, position, words",
    [
        ("Hello [pause x] there", 7, "not a number"),
        ("Hello [pause 0.8ms] there", 7, "not a number"),
        ("Hello [pause] there", 7, "[pause 0.8s]"),
        ("Wait [pause 99s] now", 6, "outside"),
        ("{speed 0.9}never closed", 1, "never closed"),
        ("ok{/speed}", 3, "no {speed X}"),
        ("{speed 3}fast{/speed}", 1, "outside 0.5x-2x"),
        ("{speed 0.4}slow{/speed}", 1, "outside 0.5x-2x"),
        ("{speed fast}x{/speed}", 1, "not a number"),
        ("{speed 1.2}a {speed 1.1}b{/speed}{/speed}", 14, "cannot be nested"),
        ("[sad {speed 0.9}] words", 6, "inside [brackets]"),
        ("[sad [pause 1s]] words", 6, "inside [brackets]"),
        ("[never closed words", 1, "never closed"),
        ("a } b", 3, "does not close"),
        ("{loud}a{/loud}", 1, "unknown"),
        ("[I am sad] [pause 1s] Hello", 1, "no words beside it"),
    ],
)
def test_bad_markup_names_the_position(text, position, words):
    with pytest.raises(MarkupError) as caught:
        parse_markup(text)
    message = str(caught.value)
    assert f"character {position}:" in message and words in message
    assert isinstance(caught.value, InvalidInput)


def test_a_pause_adds_its_length_of_silence_within_one_frame():
    pieces = parse_markup("Hello there. [pause 0.8s] How are you?")
    wav = assemble(pieces, render_by_length, RATE)[0]
    without = assemble(parse_markup("Hello there. How are you?"), render_by_length, RATE)
    # the silent run in the joined audio (a tone never has more than two zero samples in a row)
    silent = (wav.abs() < 1e-6).numpy().astype(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], silent, [0]])))
    longest = max(end - start for start, end in zip(edges[::2], edges[1::2], strict=True))
    assert abs(longest - 0.8 * RATE) <= FRAME
    first = render_by_length(SpeechPiece("Hello there.")).shape[-1]
    second = render_by_length(SpeechPiece("How are you?")).shape[-1]
    assert wav.shape[-1] == first + round(0.8 * RATE) + second
    assert without.shape[-1] != wav.shape[-1]


@pytest.mark.parametrize("speed", [0.5, 0.9, 1.3, 2.0])
def test_a_speed_span_changes_its_duration_by_the_factor_and_keeps_the_pitch(speed):
    pieces = parse_markup(f"Before {{speed {speed}}}the slow part{{/speed}} after.")
    plain = assemble(parse_markup("Before the slow part after."), render_by_length, RATE)
    span = render_by_length(SpeechPiece("the slow part")).shape[-1]
    wav = assemble(pieces, render_by_length, RATE)
    # the plain render is one piece; the marked one is three pieces, so compare the span itself
    rest = sum(render_by_length(SpeechPiece(text)).shape[-1] for text in ("Before", "after."))
    stretched_span = wav.shape[-1] - rest
    assert abs(stretched_span / span - 1 / speed) <= 0.02 / speed
    assert plain.shape[-1] > 0
    # pitch: the dominant frequency of the stretched tone stays 220 Hz (within an FFT bin)
    stretched = stretch(tone(1.0, 220.0), speed)[0].numpy()
    spectrum = np.abs(np.fft.rfft(stretched * np.hanning(stretched.size)))
    peak_hz = np.argmax(spectrum) * RATE / stretched.size
    assert abs(peak_hz - 220.0) < 2 * RATE / stretched.size


def test_stretch_refuses_out_of_range_and_leaves_speed_one_alone():
    wav = tone(0.2)
    assert stretch(wav, 1.0) is wav
    for bad in (0.49, 2.01, float("nan")):
        with pytest.raises(InvalidInput, match="between 0.5 and 2"):
            stretch(wav, bad)


def test_only_pauses_is_refused():
    with pytest.raises(InvalidInput, match="nothing to say"):
        assemble(parse_markup("[pause 1s]"), render_by_length, RATE)


def test_punctuation_left_between_markup_is_dropped_not_spoken():
    pieces = parse_markup("Hello. [pause 1s] . [pause 1s] Bye.")
    assert [p.text for p in pieces if isinstance(p, SpeechPiece)] == ["Hello.", "Bye."]
    assert [p.seconds for p in pieces if isinstance(p, Pause)] == [1.0, 1.0]
