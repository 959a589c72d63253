"""Voice-consistency guard: z-score flagging (pure), and a seeded end-to-end check that a segment in
another voice is flagged among segments of the right voice.

Why the end-to-end test is built the way it is (measured while writing it): the tiny golden CVVP cannot
tell voices apart. Tiny random TTS renders carry no voice identity (their AR codes are near-uniform over
8192 ids), and the random 64-token tiny DVAE codes only the loudness envelope, so segments rendered with
another voice's latents scored inside the range of the right voice's segments. A real CVVP separates
voices because it was trained contrastively. So the test:
- renders segments with a small renderer whose audio follows the voice it is given (pitch and timbre),
  as the real TTS does and tiny random models cannot;
- uses a seeded tiny CVVP that reads mels and fits its two projection heads with CVVP's contrastive
  objective on the voices' *reference clips only* (never on the segments it then judges);
- runs the real guard (`ConsistencyGuard.score` -> CVVP similarity) and the real `flag_outliers`.
"""

import math
import shutil

import pytest
import torch
import torch.nn.functional as F

from src.consistency import ConsistencyGuard, flag_outliers
from src.errors import InvalidInput
from tortoise.audio import VOICE_SAMPLE_RATE
from tortoise.consistency import voice_clip_mels
from tortoise.mel import compute_ar_mel
from tortoise.models import build

RATE = VOICE_SAMPLE_RATE
VOICE_A = (110.0, ((1, 1.0), (2, 0.5), (3, 0.3)))  # low voice, few harmonics
VOICE_B = (240.0, ((1, 1.0), (4, 0.8), (6, 0.6)))  # higher voice, brighter timbre


def test_a_low_outlier_is_flagged_and_a_high_one_is_not():
    scores = [2.0, 2.1, 1.9, 2.05, 1.95, 0.4, 3.6]
    checks = flag_outliers(scores)
    assert [c.flagged for c in checks] == [False] * 5 + [True, False]
    assert checks[5].z < -3.5 and checks[6].z > 3.5 and checks[0].index == 0 and checks[5].score == 0.4


def test_voices_are_judged_separately_and_small_groups_are_not_judged():
    scores = [2.0, 2.1, 1.9, 2.0, -5.0, -5.1, -4.9]  # bob's scores are low but consistent
    groups = ["amy"] * 4 + ["bob"] * 3
    checks = flag_outliers(scores, groups)
    assert not any(c.flagged for c in checks)
    assert all(c.z is None for c in checks[4:]) and all(c.z is not None for c in checks[:4])


def test_near_identical_scores_do_not_explode():
    checks = flag_outliers([1.0, 1.0, 1.0, 1.0, 0.9999])
    assert not any(c.flagged for c in checks)
    # a plain z-score could never flag one bad segment among five; the robust one does
    assert [c.flagged for c in flag_outliers([2.0, 2.1, 1.9, 2.0, -1.0])] == [False] * 4 + [True]


@pytest.mark.parametrize(
    "scores, groups, threshold, message",
    [
        ([1.0, 2.0], ["a"], 2.5, "one voice per segment"),
        ([1.0, float("nan")], None, 2.5, "not a number"),
        ([1.0, 2.0], None, 0.0, "above 0"),
    ],
)
def test_bad_input(scores, groups, threshold, message):
    with pytest.raises(InvalidInput, match=message):
        flag_outliers(scores, groups, z_threshold=threshold)


def render(voice, text: str, seed: int) -> torch.Tensor:
    """Speech-like audio in `voice` (f0, harmonics): its length follows the text, its prosody the seed."""
    f0, harmonics = voice
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int((0.4 + 0.04 * len(text)) * RATE)) / RATE
    glide = 1 + 0.1 * torch.sin(2 * math.pi * (0.3 + 0.4 * float(torch.rand(1, generator=g))) * t)
    phase = 2 * math.pi * torch.cumsum(f0 * glide, 0) / RATE
    wave = sum(amplitude * torch.sin(h * phase) for h, amplitude in harmonics)
    syllables = 3.0 + 2.0 * float(torch.rand(1, generator=g))
    wave = wave * (0.5 * (1 + torch.sin(2 * math.pi * syllables * t))) ** 2
    wave = wave + 0.01 * torch.randn(t.shape, generator=g)
    return (0.8 * wave / wave.abs().max()).reshape(1, -1)


def fitted_tiny_cvvp(clips: dict[str, list[torch.Tensor]], mel_norms, steps: int = 30):
    """A seeded tiny mel-reading CVVP whose projection heads are fitted contrastively on reference clips."""
    torch.manual_seed(0)
    cvvp = build("cvvp", model_dim=32, transformer_heads=2, conditioning_enc_depth=1, speech_enc_depth=1,
                 mel_codes=None).eval().requires_grad_(False)  # fmt: skip
    window = 86  # about 1 s of mel frames
    cond, speech = {}, {}
    with torch.no_grad():
        for name, voice_clips in clips.items():
            mels = voice_clip_mels(voice_clips, mel_norms)
            cond[name] = cvvp.conditioning_transformer(cvvp.cond_emb(mels).transpose(1, 2))
            mels = [compute_ar_mel(clip, mel_norms)[0] for clip in voice_clips]
            windows = [mel[:, s : s + window] for mel in mels for s in range(0, mel.shape[-1] - window, 20)]
            speech[name] = cvvp.speech_transformer(cvvp.speech_emb(torch.stack(windows)).transpose(1, 2))
    heads = [cvvp.to_conditioning_latent, cvvp.to_speech_latent]
    optimizer = torch.optim.Adam([p for h in heads for p in h.parameters()], lr=1e-2)
    g = torch.Generator().manual_seed(0)
    names = list(clips)
    labels = torch.tensor([n for n in range(len(names)) for _ in range(4)])
    target = (labels[:, None] == labels[None, :]).float()
    target = target / target.sum(1, keepdim=True)
    with torch.enable_grad():
        for head in heads:
            head.requires_grad_(True)
        for _ in range(steps):
            c = torch.cat([cond[n][torch.randint(len(cond[n]), (4,), generator=g)] for n in names])
            s = torch.cat([speech[n][torch.randint(len(speech[n]), (4,), generator=g)] for n in names])
            logits = (F.normalize(cvvp.to_conditioning_latent(c), dim=-1)
                      @ F.normalize(cvvp.to_speech_latent(s), dim=-1).T) * cvvp.temperature.exp()  # fmt: skip
            loss = -(target * logits.log_softmax(1)).sum(1).mean()
            loss = loss - (target * logits.log_softmax(0)).sum(0).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return cvvp.requires_grad_(False)


@pytest.mark.slow
def test_a_segment_in_another_voice_is_flagged_among_the_right_voice(tiny_models):
    mel_norms = tiny_models.mel_norms
    clips = {"a": [render(VOICE_A, "x" * 60, 1000 + i) for i in range(3)],
             "b": [render(VOICE_B, "x" * 60, 2000 + i) for i in range(3)]}  # fmt: skip
    loads = []
    guard = ConsistencyGuard(lambda: loads.append(1) or fitted_tiny_cvvp(clips, mel_norms), None, mel_norms)
    texts = ["Hello there.", "How are you today?", "It is late.", "Come in, please.", "Thank you.",
             "Good night, everyone.", "See you soon."]  # fmt: skip
    segments = [render(VOICE_A, text, seed) for seed, text in enumerate(texts)]
    segments[4] = render(VOICE_B, texts[4], 4)  # rendered with the other voice
    scores = guard.score(clips["a"], segments, RATE)
    checks = flag_outliers(scores)
    assert [c.index for c in checks if c.flagged] == [4]
    assert scores[4] < min(s for i, s in enumerate(scores) if i != 4)
    # judged against voice b instead, the odd segment is the one closest to the voice; the model loads once
    against_b = guard.score(clips["b"], segments, RATE)
    assert against_b[4] == max(against_b) and loads == [1]


def test_guard_reports_bad_input(tiny_models):
    guard = ConsistencyGuard(lambda: tiny_models.cvvp, None, tiny_models.mel_norms)
    with pytest.raises(InvalidInput, match="no segments"):
        guard.score([render(VOICE_A, "clip", 1)], [], RATE)
    with pytest.raises(InvalidInput, match="needs the DVAE"):
        guard.score([render(VOICE_A, "clip", 1)], [render(VOICE_A, "a", 2)], RATE)


def test_guard_over_the_models_folder_loads_lazily_and_names_missing_files(tmp_path, mel_norms_path):
    from src.consistency import guard_from_models_dir
    from tortoise.errors import ModelDownloadError

    with pytest.raises(ModelDownloadError, match="mel_norms.pth"):
        guard_from_models_dir(tmp_path, offline=True)
    shutil.copy(mel_norms_path, tmp_path / "mel_norms.pth")
    guard = guard_from_models_dir(tmp_path, offline=True)  # CVVP and DVAE load on first use
    with pytest.raises(ModelDownloadError, match="cvvp.pth"):
        guard.score([render(VOICE_A, "clip", 1)], [render(VOICE_A, "a", 2)], RATE)
