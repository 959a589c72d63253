"""Mel front-ends (AR/CLVP/CVVP conditioning mel, diffusion/UnivNet mel) and mel norms.

AR mel: 80 bins at 22.05 kHz, HTK scale, power, divided by mel_norms. UnivNet mel: 100 bins at 24 kHz,
Slaney scale, magnitude, optionally mapped to [-1, 1].
"""

from __future__ import annotations

import os
import random
from functools import lru_cache

import librosa
import torch
import torch.nn.functional as F

from tortoise.audio import OUTPUT_SAMPLE_RATE, VOICE_SAMPLE_RATE
from tortoise.errors import InvalidInputError

# Shared STFT geometry (both front-ends): 1024-sample periodic Hann window, hop 256, centred with
# reflect padding of N_FFT // 2 on each side, so frames = 1 + samples // HOP_LENGTH.
N_FFT = 1024  # samples (46.4 ms at 22.05 kHz, 42.7 ms at 24 kHz)
HOP_LENGTH = 256  # samples
N_FREQS = N_FFT // 2 + 1  # one-sided bins
LOG_CLAMP_MIN = 1e-5  # mel energies below this are clamped before the natural log

# AR / CVVP conditioning mel (torchaudio MelSpectrogram as arch_util.TorchMelSpectrogram sets it up).
AR_MEL_SAMPLE_RATE = VOICE_SAMPLE_RATE  # Hz
AR_N_MELS = 80
AR_F_MIN_HZ = 0.0
AR_F_MAX_HZ = 8000.0
AR_CONDITIONING_SAMPLES = 132300  # 6 s at 22.05 kHz -> 517 frames

# Diffusion / UnivNet mel (TacotronSTFT(1024, 256, 1024, 100, 24000, 0, 12000)).
UNIVNET_MEL_SAMPLE_RATE = OUTPUT_SAMPLE_RATE  # Hz
UNIVNET_N_MELS = 100
UNIVNET_F_MIN_HZ = 0.0
UNIVNET_F_MAX_HZ = 12000.0
UNIVNET_INPUT_LIMIT = 10.0  # the official code rejects waveforms outside +-10 before clipping to +-1
DIFFUSION_CONDITIONING_SAMPLES = 102400  # 4.27 s at 24 kHz -> 401 frames

# Range of the UnivNet log-mel, used to map it to [-1, 1] for the diffusion model.
TACOTRON_MEL_MAX = 2.3143386840820312
TACOTRON_MEL_MIN = -11.512925148010254  # ln(LOG_CLAMP_MIN)


@lru_cache(maxsize=1)
def ar_mel_filters() -> torch.Tensor:
    """HTK-scale, Slaney-normalised filterbank of the AR mel, as torchaudio builds it.

    Returns:
        float32 CPU tensor [80, 513]. Callers move it to their device; do not modify it in place.
    """
    bank = librosa.filters.mel(
        sr=AR_MEL_SAMPLE_RATE,
        n_fft=N_FFT,
        n_mels=AR_N_MELS,
        fmin=AR_F_MIN_HZ,
        fmax=AR_F_MAX_HZ,
        htk=True,
        norm="slaney",
    )
    return torch.from_numpy(bank).float()


@lru_cache(maxsize=1)
def univnet_mel_filters() -> torch.Tensor:
    """Slaney-scale, Slaney-normalised filterbank of the UnivNet mel (librosa defaults).

    Returns:
        float32 CPU tensor [100, 513]. Callers move it to their device; do not modify it in place.
    """
    bank = librosa.filters.mel(
        sr=UNIVNET_MEL_SAMPLE_RATE,
        n_fft=N_FFT,
        n_mels=UNIVNET_N_MELS,
        fmin=UNIVNET_F_MIN_HZ,
        fmax=UNIVNET_F_MAX_HZ,
    )
    return torch.from_numpy(bank).float()


def load_mel_norms(path: str | os.PathLike) -> torch.Tensor:
    """Read the per-channel AR mel divisors (the official `data/mel_norms.pth`).

    Args:
        path: the `.pth` file; it is read with `weights_only=True`.

    Returns:
        float32 CPU tensor [80].

    Raises:
        InvalidInputError: the file does not hold an 80-element tensor.
    """
    norms = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(norms, torch.Tensor) or norms.numel() != AR_N_MELS:
        raise InvalidInputError(f"{os.fspath(path)} should hold a tensor of {AR_N_MELS} mel norms")
    return norms.reshape(AR_N_MELS).float()


def _compute_dtype(wav: torch.Tensor) -> torch.dtype:
    """float64 stays float64; everything else (half, bfloat16, ints) is computed in float32."""
    return torch.float64 if wav.dtype == torch.float64 else torch.float32


def _stft_magnitude(wav: torch.Tensor) -> torch.Tensor:
    """|STFT| of [..., samples] with the shared geometry: returns [..., 513, 1 + samples // 256]."""
    samples = wav.shape[-1]
    if samples <= N_FFT // 2:
        raise InvalidInputError(f"A mel spectrogram needs more than {N_FFT // 2} samples, got {samples}")
    flat = wav.reshape(-1, samples).to(_compute_dtype(wav))
    window = torch.hann_window(N_FFT, periodic=True, dtype=flat.dtype, device=flat.device)
    spectrum = torch.stft(
        flat,
        N_FFT,
        hop_length=HOP_LENGTH,
        win_length=N_FFT,
        window=window,
        center=True,
        pad_mode="reflect",
        normalized=False,
        onesided=True,
        return_complex=True,
    )  # (batch, 513, frames)
    return spectrum.abs().reshape(*wav.shape[:-1], N_FREQS, spectrum.shape[-1])


def compute_ar_mel_power(wav: torch.Tensor) -> torch.Tensor:
    """Mel power spectrogram of the AR front-end, before the log.

    Args:
        wav: waveform [..., samples] at 22.05 kHz, any device; more than 512 samples.

    Returns:
        tensor [..., 80, 1 + samples // 256] on the input's device, float64 for float64 input and
        float32 otherwise.
    """
    power = _stft_magnitude(wav).pow(2)
    filters = ar_mel_filters().to(device=power.device, dtype=power.dtype)
    return filters @ power


def compute_ar_mel(wav: torch.Tensor, mel_norms: torch.Tensor | None = None) -> torch.Tensor:
    """AR/CVVP conditioning mel: ln(max(mel power, 1e-5)), divided per channel by `mel_norms`.

    This is the official `TorchMelSpectrogram` output.

    Args:
        wav: waveform [..., samples] at 22.05 kHz, any device; more than 512 samples.
        mel_norms: divisors [80] from `load_mel_norms`; None skips the division.

    Returns:
        tensor [..., 80, 1 + samples // 256] (dtype as `compute_ar_mel_power`).
    """
    log_mel = torch.log(torch.clamp(compute_ar_mel_power(wav), min=LOG_CLAMP_MIN))
    if mel_norms is None:
        return log_mel
    return log_mel / mel_norms.to(device=log_mel.device, dtype=log_mel.dtype).reshape(-1, 1)


def crop_or_pad_conditioning(
    clip: torch.Tensor, rng: random.Random | None = None, length: int = AR_CONDITIONING_SAMPLES
) -> torch.Tensor:
    """Bring a clip to exactly `length` samples the way the official `format_conditioning` does.

    Shorter clips are zero-padded at the end. Longer clips are cut at a random offset drawn with
    `randint(0, samples - length)` (both ends included); nothing is drawn for clips that are not
    longer, so the random stream advances exactly as in the official code.

    Args:
        clip: waveform [..., samples] at 22.05 kHz.
        rng: the random source. None uses Python's global `random` module, which the official code
            uses, so `random.seed(s)` reproduces official crops.
        length: the target length in samples.

    Returns:
        tensor [..., length].
    """
    gap = clip.shape[-1] - length
    if gap < 0:
        return F.pad(clip, (0, -gap))
    if gap == 0:
        return clip
    start = (rng or random).randint(0, gap)
    return clip[..., start : start + length]


def format_conditioning(
    clip: torch.Tensor, mel_norms: torch.Tensor | None, rng: random.Random | None = None
) -> torch.Tensor:
    """The AR/CVVP conditioning input of one clip: a 6 s window and its normalised mel.

    Args:
        clip: waveform [1, samples] (or [..., samples]) at 22.05 kHz, any device.
        mel_norms: divisors [80] from `load_mel_norms` (None gives the un-normalised log-mel).
        rng: random source for the crop of clips longer than 6 s; see `crop_or_pad_conditioning`.

    Returns:
        tensor [1, 80, 517] for a [1, samples] clip (in general [..., 80, 517]) on the clip's device.
    """
    return compute_ar_mel(crop_or_pad_conditioning(clip, rng), mel_norms)


def compute_univnet_mel(wav: torch.Tensor, do_normalization: bool = False) -> torch.Tensor:
    """Diffusion/vocoder log-mel, the official `wav_to_univnet_mel`.

    The waveform is clipped to [-1, 1]; its magnitude STFT (equal to the official conv-based STFT
    with a periodic Hann window and 512 samples of reflect padding) goes through the Slaney
    filterbank, then ln(max(mel, 1e-5)). Conditioning uses `do_normalization=False`.

    Args:
        wav: waveform [..., samples] at 24 kHz, any device; values within +-10; more than 512 samples.
        do_normalization: map the result to [-1, 1] with `normalize_tacotron_mel`.

    Returns:
        tensor [..., 100, 1 + samples // 256] on the input's device, float64 for float64 input and
        float32 otherwise.

    Raises:
        InvalidInputError: a sample lies outside +-10 (almost certainly not a waveform).
    """
    if wav.numel() and wav.abs().max().item() > UNIVNET_INPUT_LIMIT:
        raise InvalidInputError(
            f"Waveform values must lie within +-{UNIVNET_INPUT_LIMIT:g} for the UnivNet mel; is this audio?"
        )
    magnitude = _stft_magnitude(wav.clamp(-1.0, 1.0))
    filters = univnet_mel_filters().to(device=magnitude.device, dtype=magnitude.dtype)
    mel = torch.log(torch.clamp(filters @ magnitude, min=LOG_CLAMP_MIN))
    return normalize_tacotron_mel(mel) if do_normalization else mel


def normalize_tacotron_mel(mel: torch.Tensor) -> torch.Tensor:
    """Map a UnivNet log-mel from [TACOTRON_MEL_MIN, TACOTRON_MEL_MAX] to [-1, 1] (no clamping)."""
    return 2 * ((mel - TACOTRON_MEL_MIN) / (TACOTRON_MEL_MAX - TACOTRON_MEL_MIN)) - 1


def denormalize_tacotron_mel(norm_mel: torch.Tensor) -> torch.Tensor:
    """Inverse of `normalize_tacotron_mel`: [-1, 1] back to the log-mel range (no clamping)."""
    return ((norm_mel + 1) / 2) * (TACOTRON_MEL_MAX - TACOTRON_MEL_MIN) + TACOTRON_MEL_MIN


def mel_frames(samples: int) -> int:
    """Return the number of frames either front-end gives for `samples` input samples (centred STFT)."""
    return 1 + samples // HOP_LENGTH
