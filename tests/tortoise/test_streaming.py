"""Streaming the HiFi-GAN decoder: upstream's chunks (golden), the kept final overlap, windowed decoding equal
to the full decode, the receptive field the window relies on, and settings validation."""

import pytest
import torch

from tortoise.errors import InvalidInputError
from tortoise.models import load
from tortoise.streaming import (
    RECEPTIVE_FIELD_FRAMES,
    ChunkStitcher,
    StreamDecoder,
    StreamSettings,
    decode_window,
    latent_index_of_sample,
)


@pytest.fixture(scope="module")
def gold(golden):
    return golden("hifigan.pt")


@pytest.fixture(scope="module")
def decoder(gold):
    return load("hifidecoder", gold["state_dict"], **gold["config"])


def run_stream(decoder, latents, cond, cuts, settings):
    """Feed latents one by one and decode at each cut (the last cut is the end run)."""
    stream = StreamDecoder(decoder, cond, settings)
    chunks = []
    for i in range(latents.shape[1]):
        stream.add(latents[0, i])
        if i + 1 in cuts:
            chunk = stream.decode(final=i + 1 == cuts[-1])
            if chunk is not None:
                chunks.append(chunk)
    return chunks


@pytest.mark.parametrize("overlap", [64, 1024])
@pytest.mark.parametrize("context", [None, 5])
def test_chunks_match_upstream_golden_plus_the_final_overlap(decoder, gold, overlap, context):
    """Upstream settings (full re-decode) reproduce the fixture; the bounded window gives the same chunks."""
    case = f"stream{overlap}"
    cuts = [int(c) for c in gold[f"{case}.cuts"]]
    settings = StreamSettings(cuts[0], cuts[1] - cuts[0], overlap, context)
    chunks = run_stream(decoder, gold["long.in_latents"], gold["long.in_cond"], cuts, settings)
    want = list(gold[f"{case}.chunks"])
    want[-1] = torch.cat([want[-1], gold["long.wav"].reshape(-1)[-overlap:]])  # we keep the last samples
    assert [c.shape for c in chunks] == [w.shape for w in want]
    for got, expected in zip(chunks, want, strict=True):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert sum(c.numel() for c in chunks) == gold["long.wav"].numel()


def long_latents(n, width=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    # smooth-ish latents, like a GPT's, so that the stream's audio is not pure noise
    return torch.randn(1, n, width, generator=gen).cumsum(1) / 8


@torch.no_grad()
@pytest.mark.parametrize("start_frame", [40, 97, 301])
def test_windowed_decode_equals_full_decode_away_from_the_start(decoder, gold, start_frame):
    latents = long_latents(80)
    cond = gold["long.in_cond"].reshape(1, -1, 1)
    full = decoder.inference(latents, gold["long.in_cond"]).reshape(-1)
    start = start_frame * decoder.hop_length + 77
    first = latent_index_of_sample(start, decoder.hop_length) - 5
    part = decode_window(decoder, latents[:, first:], cond, first, 80, start)
    assert part.shape == full[start:].shape
    torch.testing.assert_close(part, full[start:], atol=1e-5, rtol=0)


def test_window_too_close_to_the_wanted_samples_is_refused(decoder, gold):
    cond = gold["long.in_cond"].reshape(1, -1, 1)
    with pytest.raises(ValueError, match="reach"):
        decode_window(decoder, long_latents(60)[:, 20:], cond, 20, 60, 22 * 4 * 256)


@torch.no_grad()
def test_windowed_stream_equals_full_redecode_stream(decoder, gold):
    """Over a longer stream, windowed chunks equal upstream's full re-decode chunks within 1e-5."""
    overlap = 1024
    latents = long_latents(100, seed=1)
    cond = gold["long.in_cond"]
    cuts = [*range(20, 100, 13), 100]
    full = run_stream(decoder, latents, cond, cuts, StreamSettings(20, 13, overlap, None))
    windowed = run_stream(decoder, latents, cond, cuts, StreamSettings(20, 13, overlap, 16))
    assert [c.shape for c in windowed] == [c.shape for c in full]
    for a, b in zip(windowed, full, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    whole = decoder.inference(latents, cond).reshape(-1)
    assert sum(c.numel() for c in windowed) == whole.numel()
    # away from the cross-fades the stream is the full decode itself
    joined = torch.cat(windowed)
    torch.testing.assert_close(joined[-overlap:], whole[-overlap:], atol=1e-5, rtol=0)


@torch.no_grad()
def test_receptive_field_is_within_the_window_margin(decoder):
    x = torch.randn(1, 32, 120)
    g = torch.randn(1, 32, 1)
    base = decoder(x, g)
    bumped = x.clone()
    bumped[..., 60] += 1.0
    changed = ((decoder(bumped, g) - base).abs() > 0).nonzero()[:, -1]
    hop = decoder.hop_length
    assert changed.min() >= (60 - RECEPTIVE_FIELD_FRAMES) * hop
    assert changed.max() < (61 + RECEPTIVE_FIELD_FRAMES) * hop


def test_stitcher_keeps_every_sample_and_fades_linearly():
    whole = torch.arange(40, dtype=torch.float32)
    stitch = ChunkStitcher(4)
    first = stitch.push(whole[:20], 0, 20)
    assert torch.equal(first, whole[:16])
    redecoded = whole[:30].clone()
    redecoded[16:20] += 10  # the new decode differs in the overlap region
    second = stitch.push(redecoded[16:30], 16, 30)
    fade = torch.linspace(0, 1, 4)
    torch.testing.assert_close(second[:4], whole[16:20] * (1 - fade) + redecoded[16:20] * fade)
    last = stitch.push(whole[26:40], 26, 40, final=True)
    assert last.numel() == 14 and stitch.emitted == 40


def test_stitcher_short_final_run_emits_the_tail_unfaded():
    whole = torch.randn(30)
    stitch = ChunkStitcher(8)
    stitch.push(whole, 0, 30)
    last = stitch.push(whole[22:], 22, 30, final=True)
    assert torch.equal(last, whole[22:]) and stitch.emitted == 30


def test_stitcher_waits_for_more_than_one_overlap():
    stitch = ChunkStitcher(16)
    assert stitch.push(torch.zeros(10), 0, 10) is None
    assert stitch.push(torch.zeros(30), 0, 30).numel() == 14


@pytest.mark.parametrize(
    "settings, message",
    [
        (StreamSettings(first_chunk_codes=0), "first chunk codes"),
        (StreamSettings(chunk_codes=0), "chunk codes"),
        (StreamSettings(chunk_codes=501), "between 1 and 500"),
        (StreamSettings(overlap_samples=-1), "overlap"),
        (StreamSettings(context_latents=2), "context"),
    ],
)
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(InvalidInputError, match=message):
        settings.check(500)
