"""Tests for tortoise/redaction.py: bracket parsing, text alignment, the frame walk on synthetic CTC
logits, and an end-to-end run through a tiny random wav2vec2 saved to a temporary folder."""

import json
import subprocess
import sys
from functools import cache

import pytest
import torch

from tortoise.device import resolve_device
from tortoise.errors import InvalidInputError, ModelDownloadError, TortoiseError
from tortoise.redaction import (
    BLANK,
    SKIP_CHAR,
    Wav2VecAligner,
    align_logits,
    align_text,
    assign_samples,
    ctc_greedy_decode,
    ctc_symbols,
    redact_audio,
    split_redacted,
)

# A Tacotron-style symbol set: pad/blank, punctuation and space, then upper and lower case letters.
TACOTRON_SYMBOLS = ["_", "-", *"!'(),.:;? ", *"ABCDEFGHIJKLMNOPQRSTUVWXYZ", *"abcdefghijklmnopqrstuvwxyz"]
SAMPLES_PER_FRAME = 100


def logits_for(frame_symbols, symbols=TACOTRON_SYMBOLS):
    """Logits [frames, classes] whose argmax is the given symbol at each frame ('_' is the blank)."""
    logits = torch.randn(len(frame_symbols), len(symbols), generator=torch.Generator().manual_seed(0))
    for frame, symbol in enumerate(frame_symbols):
        logits[frame, symbols.index(symbol)] = 10.0
    return logits


def frames_from_layout(num_frames, layout):
    """Blank frames with `layout[frame] = symbol` filled in."""
    frames = ["_"] * num_frames
    for frame, symbol in layout.items():
        frames[frame] = symbol
    return frames


class FakeCtcTokenizer:
    """The part of Wav2Vec2CTCTokenizer that `ctc_symbols` reads, with '|' as the word delimiter."""

    word_delimiter_token = "|"
    replace_word_delimiter_char = " "
    all_special_tokens = ["<pad>", "<unk>"]

    def __init__(self, vocab):
        self.vocab = vocab

    def convert_ids_to_tokens(self, ids):
        return [self.vocab[i] if i < len(self.vocab) else "<unk>" for i in ids]


# --- split_redacted -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[I am really sad,] Please feed me.", ("I am really sad, Please feed me.", [(16, 31)])),
        ("Hello [world]", ("Hello world", [(0, 5)])),
        ("no brackets", ("no brackets", [(0, 10)])),
        ("a[b]c", ("abc", [(0, 0), (2, 2)])),
        ("[a][b]c", ("abc", [(2, 2)])),
        ("[x]yz[w]", ("xyzw", [(1, 2)])),
        ("[hello]", ("hello", [])),
        ("[]", ("", [])),
        ("[][]", ("", [])),
        ("", ("", [])),
        ("ab[]cd", ("abcd", [(0, 1), (2, 3)])),
    ],
)
def test_split_redacted(text, expected):
    assert split_redacted(text) == expected


def test_split_redacted_intervals_index_the_spoken_text():
    spoken, intervals = split_redacted("[one ]two [three ]four")
    assert [spoken[first : last + 1] for first, last in intervals] == ["two ", "four"]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("open [never closed", ["'['", "character 6", "never closed"]),
        ("[", ["'['", "character 1", "never closed"]),
        ("stray ] here", ["']'", "character 7", "no '['"]),
        ("]", ["']'", "character 1"]),
        ("[a [b] c]", ["Nested", "character 4", "character 1"]),
        ("[a]]", ["']'", "character 4"]),
    ],
)
def test_split_redacted_rejects_bad_brackets(text, words):
    with pytest.raises(InvalidInputError) as caught:
        split_redacted(text)
    for word in words:
        assert word in str(caught.value)


# --- align_text -------------------------------------------------------------------------------------


@cache
def lcs_length(a, b):
    if not a or not b:
        return 0
    if a[0] == b[0]:
        return 1 + lcs_length(a[1:], b[1:])
    return max(lcs_length(a[1:], b), lcs_length(a, b[1:]))


def is_subsequence(needle, haystack):
    remaining = iter(haystack)
    return all(char in remaining for char in needle)


def check_alignment(expected, predicted):
    aligned = align_text(expected, predicted)
    assert len(aligned) == len(expected)
    assert all(a in (e, SKIP_CHAR) for a, e in zip(aligned, expected))
    matched = aligned.replace(SKIP_CHAR, "")
    assert is_subsequence(matched, predicted)
    assert len(matched) == lcs_length(expected, predicted)
    return aligned


@pytest.mark.parametrize(
    ("expected", "predicted", "aligned"),
    [
        ("hello", "hello", "hello"),
        ("hello", "helo", "hel~o"),
        ("hello", "", "~~~~~"),
        ("", "abc", ""),
        ("the cat", "the  caat", "the cat"),  # extra predicted characters are skipped
        ("the cat", "teh cat", "t~e cat"),
        ("ab", "ba", "~b"),  # a tie: the expected character is the one given up, as the original
        ("a~b", "a~b", "a~b"),  # a literal skip character never counts as matched
    ],
)
def test_align_text_cases(expected, predicted, aligned):
    assert align_text(expected, predicted) == aligned
    if SKIP_CHAR not in expected:
        check_alignment(expected, predicted)


@pytest.mark.parametrize(
    ("expected", "predicted"),
    [
        ("the quick brown fox", "da quik brwn focks"),
        ("please feed me.", "pleese fed mi"),
        ("i am really sad, please feed me.", "xxi am realy sadplease fead meyy"),
        ("abcabcabc", "cbacbacba"),
    ],
)
def test_align_text_keeps_a_longest_common_subsequence(expected, predicted):
    check_alignment(expected, predicted)


def test_align_text_is_polynomial_on_long_mismatched_text():
    generator = torch.Generator().manual_seed(1)
    letters = "abcdefgh "
    expected = "".join(letters[i] for i in torch.randint(len(letters), (400,), generator=generator).tolist())
    predicted = "".join(letters[i] for i in torch.randint(len(letters), (400,), generator=generator).tolist())
    aligned = align_text(expected, predicted)  # a naive recursion would not finish
    assert len(aligned) == 400
    assert is_subsequence(aligned.replace(SKIP_CHAR, ""), predicted)


# --- CTC decoding and the frame walk ---------------------------------------------------------------------


def test_ctc_greedy_decode_merges_runs_then_drops_blanks():
    assert ctc_greedy_decode(["h", "h", BLANK, "e", "l", "l", BLANK, "l", "o", "o"]) == "hello"
    assert ctc_greedy_decode([BLANK, BLANK]) == ""


def test_assign_samples_uses_first_matching_frame_and_consumes_it():
    frames = list("h_e_l_lo")
    assert assign_samples("hello", [BLANK if f == "_" else f for f in frames], 10, 80) == [0, 20, 40, 60, 70]


def test_assign_samples_interpolates_unmatched_characters():
    frames = [BLANK if f == "_" else f for f in "h____i____"]
    assert assign_samples("h~i", frames, 100, 1000) == [0, 250, 500]
    # trailing unmatched characters are spread up to the clip length
    assert assign_samples("hi~~", frames, 100, 2000) == [0, 500, 1000, 1500]
    # a leading skip character still starts at 0, as the original
    assert assign_samples("~i", frames, 100, 1000) == [0, 500]
    assert assign_samples("", frames, 100, 1000) == []


def test_assign_samples_tolerates_characters_no_frame_shows():
    frames = [BLANK if f == "_" else f for f in "a__b__"]
    # 'z' is not in the frames: it is interpolated and 'b' is still found
    assert assign_samples("azb", frames, 10, 60) == [0, 15, 30]


def test_ctc_symbols_maps_delimiter_and_blanks():
    tokenizer = FakeCtcTokenizer(["<pad>", "<unk>", "|", "a", "b", "AA"])
    assert ctc_symbols(tokenizer, 7) == [BLANK, BLANK, " ", "a", "b", BLANK, BLANK]


def test_redaction_on_synthetic_logits_removes_the_bracketed_span_exactly():
    text = "[hi] you."
    spoken, intervals = split_redacted(text)
    assert (spoken, intervals) == ("hi you.", [(2, 6)])
    # the clip says "hi you" at known frames; its last frame shows nothing for the '.'
    frames = frames_from_layout(20, {2: "h", 3: "h", 5: "i", 8: " ", 10: "y", 12: "o", 13: "o", 15: "u"})
    num_samples = len(frames) * SAMPLES_PER_FRAME
    alignment = align_logits(logits_for(frames), TACOTRON_SYMBOLS, spoken, num_samples)
    # h is pinned to 0; i, space, y, o, u at their frames; '.' is interpolated to the clip end
    assert alignment == [0, 500, 800, 1000, 1200, 1500, 1750]

    audio = torch.arange(num_samples, dtype=torch.float32).reshape(1, -1)
    redacted = redact_audio(audio, alignment, intervals)
    # kept: from the start of the space after "hi" to the start of the '.' (the last kept character)
    torch.testing.assert_close(redacted, audio[:, 800:1750])


def test_synthetic_logits_with_uppercase_text_a_misspelling_and_a_fake_tokenizer():
    vocab = ["<pad>", "<unk>", "|", *"abcdefghijklmnopqrstuvwxyz"]
    symbols = ctc_symbols(FakeCtcTokenizer(vocab), len(vocab))
    # the model hears "fead me" for "Feed [me] now"; '|' is the word delimiter
    layout = {1: "f", 3: "e", 4: "a", 6: "d", 7: "|", 9: "m", 10: "e", 12: "|", 14: "n", 16: "o", 18: "w"}
    frames = [vocab[0]] * 20
    for frame, token in layout.items():
        frames[frame] = token
    spoken, intervals = split_redacted("Feed [me] now")
    assert intervals == [(0, 4), (7, 10)]
    alignment = align_logits(logits_for(frames, vocab), symbols, spoken, 2000)
    # "feed me now": f=0, e=300, second e unmatched -> between 300 and d=600, d=600, ' '=700, m=900,
    # e=1000, ' '=1200, n=1400, o=1600, w=1800
    assert alignment == [0, 300, 450, 600, 700, 900, 1000, 1200, 1400, 1600, 1800]
    audio = torch.arange(2000, dtype=torch.float32).reshape(1, -1)
    expected = torch.cat([audio[:, 0:700], audio[:, 1200:1800]], dim=-1)
    torch.testing.assert_close(redact_audio(audio, alignment, intervals), expected)


def test_redact_audio_edge_cases():
    audio = torch.arange(10, dtype=torch.float32).reshape(1, -1)
    assert redact_audio(audio, [0, 5], []).shape == (1, 0)
    with pytest.raises(ValueError):
        redact_audio(audio, [0, 5], [(0, 2)])


# --- Wav2VecAligner -------------------------------------------------------------------------------


def test_importing_the_module_does_not_import_transformers():
    code = "import sys, tortoise.redaction; sys.exit('transformers' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_aligner_is_lazy_and_text_without_brackets_needs_no_model(tmp_path):
    aligner = Wav2VecAligner(tmp_path / "missing", tmp_path / "missing", local_files_only=True)
    audio = torch.zeros(1, 100)
    assert not aligner.is_loaded
    assert aligner.redact(audio, "plain text") is audio
    assert aligner.redact(audio, "[all redacted]").shape == (1, 0)
    assert not aligner.is_loaded
    with pytest.raises(InvalidInputError):
        aligner.redact(audio, "[unclosed")


def test_aligner_reports_a_model_it_cannot_load(tmp_path):
    missing = tmp_path / "missing"
    aligner = Wav2VecAligner(missing, missing, local_files_only=True)
    with pytest.raises(ModelDownloadError) as caught:
        aligner.redact(torch.zeros(1, 2400), "[a] b")
    message = str(caught.value)
    assert str(missing) in message and "enable_redaction=False" in message
    assert isinstance(caught.value, TortoiseError)


@pytest.fixture(scope="module")
def tiny_wav2vec2_dir(tmp_path_factory):
    """A random 1-layer wav2vec2 CTC model and a Tacotron-symbol tokenizer, saved with save_pretrained."""
    import transformers

    folder = tmp_path_factory.mktemp("tiny_wav2vec2")
    vocab_file = folder / "source_vocab.json"
    vocab_file.write_text(json.dumps({symbol: i for i, symbol in enumerate(TACOTRON_SYMBOLS)}))
    tokenizer = transformers.Wav2Vec2CTCTokenizer(str(vocab_file), pad_token="_")
    config = transformers.Wav2Vec2Config(
        vocab_size=len(TACOTRON_SYMBOLS),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=(8, 8),
        conv_stride=(5, 4),
        conv_kernel=(10, 8),
        num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    transformers.Wav2Vec2ForCTC(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_tiny_random_wav2vec2_end_to_end(tiny_wav2vec2_dir):
    aligner = Wav2VecAligner(tiny_wav2vec2_dir, tiny_wav2vec2_dir, local_files_only=True)
    audio = torch.sin(torch.arange(12000) * 0.05).reshape(1, -1) * 0.5  # 0.5 s at 24 kHz
    text = "[Hello,] world."

    alignment = aligner.align(audio, "Hello, world.")
    assert aligner.is_loaded
    assert len(alignment) == len("Hello, world.")
    assert alignment[0] == 0 and alignment == sorted(alignment) and alignment[-1] < audio.shape[-1]

    first = aligner.redact(audio, text)
    second = aligner.redact(audio, text)
    assert first.dim() == 2 and first.shape[0] == 1
    assert first.shape[-1] < audio.shape[-1]
    torch.testing.assert_close(first, second)
    # the kept audio is one contiguous stretch of the input, since one interval is kept
    start = alignment[split_redacted(text)[1][0][0]]
    torch.testing.assert_close(first, audio[:, start : start + first.shape[-1]])


def test_aligner_rejects_multichannel_audio(tiny_wav2vec2_dir):
    aligner = Wav2VecAligner(tiny_wav2vec2_dir, tiny_wav2vec2_dir, local_files_only=True)
    with pytest.raises(InvalidInputError):
        aligner.align(torch.zeros(2, 2400), "ab")


def test_low_vram_aligner_leaves_the_device_after_each_use(tiny_wav2vec2_dir):
    """Like the other models in low-VRAM mode: stored on the CPU, on the device only while aligning."""
    aligner = Wav2VecAligner(
        tiny_wav2vec2_dir, tiny_wav2vec2_dir, device="meta", local_files_only=True, low_vram=True
    )
    aligner.load()
    assert next(aligner._model.parameters()).device == torch.device("cpu")  # stored on the CPU
    moves = []

    def spy_to(*args, **kwargs):  # the fake device: record the move, stay on the CPU so it can run
        moves.append(str(args[0]))
        return aligner._model

    aligner._model.to = spy_to
    aligner.align(torch.sin(torch.arange(12000) * 0.05).reshape(1, -1), "Hello.")
    assert moves == ["meta", "cpu"]
    aligner.align(torch.sin(torch.arange(12000) * 0.07).reshape(1, -1), "Hello.")
    assert moves == ["meta", "cpu"] * 2


def test_aligner_without_low_vram_stays_on_its_device(tiny_wav2vec2_dir):
    aligner = Wav2VecAligner(tiny_wav2vec2_dir, tiny_wav2vec2_dir, local_files_only=True)
    aligner.load()
    moves = []
    aligner._model.to = lambda *args, **kwargs: moves.append(str(args[0])) or aligner._model
    aligner.align(torch.sin(torch.arange(12000) * 0.05).reshape(1, -1), "Hello.")
    assert moves == ["cpu"]  # moved to its device for the stage, never sent back


def test_text_to_speech_makes_a_low_vram_aligner_in_low_vram_mode(monkeypatch):
    import dataclasses

    import tortoise.redaction
    from tortoise.api import TextToSpeech

    made = {}

    class Recorder:
        def __init__(self, **kwargs):
            made.update(kwargs)

        def redact(self, audio, text, sample_rate):
            return audio

    monkeypatch.setattr(tortoise.redaction, "Wav2VecAligner", Recorder)
    tts = TextToSpeech.__new__(TextToSpeech)  # only the aligner factory is exercised
    tts.aligner = None
    tts.offline = True
    tts.plan = dataclasses.replace(resolve_device("cpu"), low_vram=True)
    tts._redact(torch.zeros(1, 10), "[a] b")
    assert made == {"device": "cpu", "low_vram": True, "local_files_only": True}
