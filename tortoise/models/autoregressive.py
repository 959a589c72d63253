"""UnifiedVoice, the autoregressive model: conditioning encoder, text/mel embeddings, the GPT-2 trunk and
heads; the training-style forward (losses, latents) and the incremental-decoding pieces the sampler uses."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tortoise.models.decoding import DEFAULT_CHECK_EVERY, DecodeChunk, EagerSteps, decode_codes
from tortoise.models.gpt2 import GPT2, KVCache
from tortoise.models.layers import AttentionBlock

# Chooses the next code of every running row: (logits (rows, vocab), codes so far (rows, n)) -> (rows,).
NextCodeFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# Streaming hook: (codes of this step (rows,), latents that predicted them (running rows, dim)) -> None.
StepFn = Callable[[torch.Tensor, torch.Tensor], None]

STOP_TEXT_TOKEN = 0
MEL_CHANNELS = 80
CONDITIONING_ATTENTION_BLOCKS = 6


class ConditioningEncoder(nn.Module):
    """1x1 conv from 80 mel bins to `dim`, then attention blocks; the output is the vector at frame 0.

    Keys: `init.*`, `attn.N.*`.
    """

    def __init__(
        self, spec_dim: int, dim: int, attn_blocks: int = CONDITIONING_ATTENTION_BLOCKS, heads: int = 4
    ):
        super().__init__()
        self.init = nn.Conv1d(spec_dim, dim, kernel_size=1)
        self.attn = nn.Sequential(*(AttentionBlock(dim, heads) for _ in range(attn_blocks)))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """(batch, 80, frames) normalised AR mel -> (batch, dim), the hidden state at frame 0 (not a mean)."""
        return self.attn(self.init(mel))[:, :, 0]


class LearnedPositionEmbeddings(nn.Module):
    """A learned table looked up by position index only (key `emb.weight`)."""

    def __init__(self, positions: int, dim: int):
        super().__init__()
        self.emb = nn.Embedding(positions, dim)
        nn.init.normal_(self.emb.weight, std=0.02)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        """(…) int64 indices -> (…, dim)."""
        return self.emb(positions)

    def check_range(self, last_position: int, what: str) -> None:
        """Raise ValueError if `last_position` is past the table (checked on host ints: no device sync)."""
        if last_position >= self.emb.num_embeddings:
            raise ValueError(
                f"{what} position {last_position} is past the table's {self.emb.num_embeddings} rows"
            )


@dataclass
class AlignedInputs:
    """Token rows of the training-style forward, start/stop tokens already added.

    Attributes:
        text_inputs: (batch, Tt) [255, text…, 0]; text_targets: (batch, Tt) [text…, 0, 0].
        mel_inputs: (batch, Tm) [8192, codes…, 8193]; mel_targets: (batch, Tm) [codes…, 8193, 8193].
    """

    text_inputs: torch.Tensor
    text_targets: torch.Tensor
    mel_inputs: torch.Tensor
    mel_targets: torch.Tensor


class UnifiedVoice(nn.Module):
    """TorToiSe's autoregressive text-to-code model (checkpoint `autoregressive.pth`).

    Defaults are the full-size official configuration; argument names are the official ones.

    Args:
        layers: GPT-2 blocks.
        model_dim: width; also the conditioning latent size.
        heads: attention heads of the GPT and of the conditioning encoder.
        max_text_tokens: text length the position table allows (+2 rows for start/stop).
        max_mel_tokens: code length the position table allows (+2 for start/stop, +max_conditioning_inputs).
        max_conditioning_inputs: extra mel position rows (kept for checkpoint shapes).
        mel_length_compression: audio samples per code (1024), used to find the padding from wav lengths.
        number_text_tokens: text vocabulary size (the table has number_text_tokens * types + 1 rows).
        start_text_token: start-of-text id (None -> number_text_tokens * types).
        number_mel_codes: code vocabulary including start/stop.
        start_mel_token: start-of-speech code (8192).
        stop_mel_token: end-of-speech code (8193).
        train_solo_embeddings: adds the (unused at inference) solo embedding parameters.
        use_mel_codes_as_input: must be True; the mel-spectrogram input encoder is not implemented.
        checkpointing: accepted for signature compatibility; gradient checkpointing is not used.
        types: number of text "types" sharing the text table.
    """

    def __init__(
        self,
        layers: int = 30,
        model_dim: int = 1024,
        heads: int = 16,
        max_text_tokens: int = 402,
        max_mel_tokens: int = 604,
        max_conditioning_inputs: int = 2,
        mel_length_compression: int = 1024,
        number_text_tokens: int = 255,
        start_text_token: int | None = 255,
        number_mel_codes: int = 8194,
        start_mel_token: int = 8192,
        stop_mel_token: int = 8193,
        train_solo_embeddings: bool = False,
        use_mel_codes_as_input: bool = True,
        checkpointing: bool = False,
        types: int = 1,
    ):
        super().__init__()
        if not use_mel_codes_as_input:
            raise ValueError("use_mel_codes_as_input=False (mel-spectrogram inputs) is not supported")
        self.number_text_tokens = number_text_tokens
        self.start_text_token = number_text_tokens * types if start_text_token is None else start_text_token
        self.stop_text_token = STOP_TEXT_TOKEN
        self.number_mel_codes = number_mel_codes
        self.start_mel_token = start_mel_token
        self.stop_mel_token = stop_mel_token
        self.max_mel_tokens = max_mel_tokens
        self.max_text_tokens = max_text_tokens
        self.model_dim = model_dim
        self.mel_length_compression = mel_length_compression

        self.conditioning_encoder = ConditioningEncoder(MEL_CHANNELS, model_dim, heads=heads)
        self.text_embedding = nn.Embedding(number_text_tokens * types + 1, model_dim)
        self.mel_embedding = nn.Embedding(number_mel_codes, model_dim)
        self.gpt = GPT2(model_dim, layers, heads)
        mel_positions = max_mel_tokens + 2 + max_conditioning_inputs  # start, stop, conditioning slots
        self.mel_pos_embedding = LearnedPositionEmbeddings(mel_positions, model_dim)
        self.text_pos_embedding = LearnedPositionEmbeddings(max_text_tokens + 2, model_dim)
        if train_solo_embeddings:
            self.mel_solo_embedding = nn.Parameter(torch.randn(1, 1, model_dim) * 0.02)
            self.text_solo_embedding = nn.Parameter(torch.randn(1, 1, model_dim) * 0.02)
        self.final_norm = nn.LayerNorm(model_dim)
        self.text_head = nn.Linear(model_dim, number_text_tokens * types + 1)
        self.mel_head = nn.Linear(model_dim, number_mel_codes)
        for table in (self.text_embedding, self.mel_embedding):
            nn.init.normal_(table.weight, std=0.02)
        # decode through captured CUDA graphs (tortoise.models.ar_graphs); the one switch of that path
        self.cuda_graphs = False

    # ------------------------------------------------------------------ conditioning

    @property
    def dtype(self) -> torch.dtype:
        """dtype of the weights (float32, or bfloat16 in CPU half-precision mode)."""
        return self.mel_embedding.weight.dtype

    def get_conditioning(self, mels: torch.Tensor) -> torch.Tensor:
        """Conditioning latent of a voice: the encoder output averaged over clips.

        Args:
            mels: (batch, clips, 80, frames) normalised AR mels, or (batch, 80, frames) for one clip per row.

        Returns:
            (batch, model_dim).
        """
        if mels.dim() == 3:
            mels = mels.unsqueeze(1)
        b, n = mels.shape[:2]
        mels = mels.flatten(0, 1).to(self.dtype)  # clips run as one batch; bf16 weights need bf16 input
        latents = self.conditioning_encoder(mels)  # (b·n, dim)
        return latents.view(b, n, -1).mean(dim=1)

    # ------------------------------------------------------------------ training-style forward

    def set_mel_padding(self, mel_codes: torch.Tensor, wav_lengths: torch.Tensor) -> torch.Tensor:
        """Replace codes past each clip's end with the stop code; returns a new tensor.

        Position wav_length // mel_length_compression is still kept (the codes come from a convolution that
        reaches one code past the audio); everything after it becomes `stop_mel_token`. Unlike the original,
        the caller's tensor is left untouched.

        Args:
            mel_codes: (batch, M) int64.
            wav_lengths: (batch,) audio lengths in samples.
        """
        keep = torch.div(wav_lengths, self.mel_length_compression, rounding_mode="trunc") + 1  # (batch,)
        columns = torch.arange(mel_codes.shape[-1], device=mel_codes.device)
        padding = columns[None, :] >= keep.to(mel_codes.device)[:, None]
        return mel_codes.masked_fill(padding, self.stop_mel_token)

    def align_inputs(
        self,
        text_inputs: torch.Tensor,
        text_lengths: torch.Tensor,
        mel_codes: torch.Tensor,
        wav_lengths: torch.Tensor,
        types: torch.Tensor | None = None,
        clip_inputs: bool = True,
    ) -> AlignedInputs:
        """The official preprocessing of `forward`, in its order.

        Scale text by types, clip to the longest text and to max(wav_lengths) // 1024 codes, set the mel
        padding, append stop tokens, prepend start tokens; targets are the inputs shifted left by one.
        """
        if types is not None:
            text_inputs = text_inputs * (1 + types).unsqueeze(-1)
        if clip_inputs:
            text_inputs = text_inputs[:, : int(text_lengths.max())]
            mel_codes = mel_codes[:, : int(wav_lengths.max()) // self.mel_length_compression]
        mel_codes = self.set_mel_padding(mel_codes, wav_lengths)
        text = F.pad(text_inputs, (0, 1), value=self.stop_text_token)
        mel = F.pad(mel_codes, (0, 1), value=self.stop_mel_token)
        return AlignedInputs(
            text_inputs=F.pad(text, (1, 0), value=self.start_text_token),
            text_targets=F.pad(text, (0, 1), value=self.stop_text_token),
            mel_inputs=F.pad(mel, (1, 0), value=self.start_mel_token),
            mel_targets=F.pad(mel, (0, 1), value=self.stop_mel_token),
        )

    def embed_text(self, text_inputs: torch.Tensor) -> torch.Tensor:
        """(batch, T) text ids (start/stop included) -> (batch, T, dim) with text positions 0..T-1."""
        self.text_pos_embedding.check_range(text_inputs.shape[1] - 1, "text")
        positions = torch.arange(text_inputs.shape[1], device=text_inputs.device)
        return self.text_embedding(text_inputs) + self.text_pos_embedding(positions)

    def hidden_states(
        self,
        cond_latent: torch.Tensor,
        text_inputs: torch.Tensor,
        mel_inputs: torch.Tensor,
        text_first: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One GPT pass over [cond, text, mel] (or [cond, mel, text]); final-normed states per modality.

        The output at the conditioning position is dropped, so the state at input position i predicts
        input i + 1.

        Args:
            cond_latent: (batch, dim).
            text_inputs: (batch, Tt) ids with start/stop; mel_inputs: (batch, Tm) codes with start/stop.

        Returns:
            (text_states (batch, Tt, dim), mel_states (batch, Tm, dim)).
        """
        text_emb = self.embed_text(text_inputs)
        mel_emb = self.embed_mel(mel_inputs)
        parts = (text_emb, mel_emb) if text_first else (mel_emb, text_emb)
        h = self.gpt(torch.cat([cond_latent.unsqueeze(1).to(text_emb.dtype), *parts], dim=1))
        h = self.final_norm(h[:, 1:])  # the first output belongs to the conditioning input
        first, second = h[:, : parts[0].shape[1]], h[:, -parts[1].shape[1] :]
        return (first, second) if text_first else (second, first)

    def forward(
        self,
        speech_conditioning_latent: torch.Tensor,
        text_inputs: torch.Tensor,
        text_lengths: torch.Tensor,
        mel_codes: torch.Tensor,
        wav_lengths: torch.Tensor,
        types: torch.Tensor | None = None,
        text_first: bool = True,
        return_latent: bool = False,
        clip_inputs: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | torch.Tensor:
        """Training-style pass, as the official forward.

        Args:
            speech_conditioning_latent: (batch, dim) from `get_conditioning`.
            text_inputs: (batch, T) int64 text ids (zero padded).
            text_lengths: (batch,) valid text lengths.
            mel_codes: (batch, M) int64 codes. Not modified (the original overwrote its padding in place).
            wav_lengths: (batch,) audio lengths in samples (1024 per code).
            types: optional (batch,) text type per row.
            text_first: order [cond, text, mel] (True) or [cond, mel, text].
            return_latent: return only the latents (see Returns).
            clip_inputs: cut the inputs to max(text_lengths) and max(wav_lengths) // 1024 first.

        Returns:
            With return_latent: (batch, Tm - 2, dim) final-normed states at the mel (text if not text_first)
            positions, without the last two (those of the appended stop tokens); with the `api.tts` inputs
            this is (k, codes, dim). Otherwise (loss_text, loss_mel, mel_logits (batch, 8194, Tm)); the
            losses are plain cross-entropy means over every position, padding included.
        """
        aligned = self.align_inputs(text_inputs, text_lengths, mel_codes, wav_lengths, types, clip_inputs)
        text_h, mel_h = self.hidden_states(
            speech_conditioning_latent, aligned.text_inputs, aligned.mel_inputs, text_first
        )
        if return_latent:
            return (mel_h if text_first else text_h)[:, :-2]
        text_logits = self.text_head(text_h).permute(0, 2, 1)  # (batch, vocab, Tt)
        mel_logits = self.mel_head(mel_h).permute(0, 2, 1)
        loss_text = F.cross_entropy(text_logits, aligned.text_targets)
        loss_mel = F.cross_entropy(mel_logits, aligned.mel_targets)
        return loss_text, loss_mel, mel_logits

    # ------------------------------------------------------------------ incremental decoding

    def embed_prompt(self, cond_latent: torch.Tensor, text_tokens: torch.Tensor) -> torch.Tensor:
        """Embeddings of the decoding prompt [cond latent, 255, text…, 0] (as inference_speech builds it).

        Args:
            cond_latent: (batch, dim).
            text_tokens: (batch, T) ids as `tts` passes them, i.e. already ending in one stop 0; another 0
                is appended here and 255 prepended, so the text part is [255, ids…, 0, 0].

        Returns:
            (batch, T + 3, dim): P = T + 3 prompt positions.
        """
        text = F.pad(text_tokens, (0, 1), value=self.stop_text_token)
        text = F.pad(text, (1, 0), value=self.start_text_token)
        text_emb = self.embed_text(text)
        return torch.cat([cond_latent.unsqueeze(1).to(text_emb.dtype), text_emb], dim=1)

    @staticmethod
    def mel_positions(
        first_index: int, count: int, use_kv_mel_offset: bool = False, device: torch.device | None = None
    ) -> torch.Tensor:
        """Mel position-table indices of mel tokens first_index .. first_index + count - 1.

        Index 0 is the start token. Training and the official uncached decode use position = index. The
        official kv-cache decode (do_tts/read default) puts the start token at 0 and every later token at
        index + 1 (positions 0, 2, 3, 4, …); `use_kv_mel_offset=True` reproduces that.

        Returns:
            (count,) int64.
        """
        index = torch.arange(first_index, first_index + count, device=device)
        if use_kv_mel_offset:
            index = torch.where(index > 0, index + 1, index)
        return index

    def embed_mel(
        self, codes: torch.Tensor, first_index: int = 0, use_kv_mel_offset: bool = False
    ) -> torch.Tensor:
        """Embed mel codes plus their positions.

        Args:
            codes: (batch, t) int64 codes; codes[:, 0] has mel index `first_index` (0 = start token).
            first_index: mel index of the first column.
            use_kv_mel_offset: position convention, see `mel_positions`.

        Returns:
            (batch, t, dim).

        Raises:
            ValueError: a position is past the mel position table.
        """
        last = first_index + codes.shape[1] - 1
        self.mel_pos_embedding.check_range(last + 1 if use_kv_mel_offset and last > 0 else last, "mel")
        positions = self.mel_positions(first_index, codes.shape[1], use_kv_mel_offset, codes.device)
        return self.mel_embedding(codes) + self.mel_pos_embedding(positions)

    def new_cache(
        self,
        batch: int,
        capacity: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> KVCache:
        """Allocate an empty KVCache for `batch` rows and `capacity` positions (see GPT2.new_cache)."""
        return self.gpt.new_cache(batch, capacity, device, dtype)

    def next_mel_logits(self, embeds: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Run the GPT on new positions and return the mel logits of the last one.

        Args:
            embeds: (batch, t, dim) new positions (prompt and/or mel embeddings).
            cache: None: `embeds` is the whole sequence. Otherwise they are appended to the cache (its
                length advances by t).

        Returns:
            (batch, number_mel_codes) logits from gpt.ln_f -> final_norm -> mel_head (raw, unprocessed).
        """
        return self.mel_head(self.next_mel_latent(embeds, cache))

    def next_mel_latent(self, embeds: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """As `next_mel_logits`, but the final-normed state (batch, dim) before mel_head: the GPT latent."""
        return self.final_norm(self.gpt(embeds, cache)[:, -1])

    def prefill_prompt(
        self, cond_latent: torch.Tensor, text_tokens: torch.Tensor, capacity: int | None = None
    ) -> KVCache:
        """Run the shared prompt once with batch 1 and return its cache (expand it to N rows after).

        Args:
            cond_latent: (1, dim); text_tokens: (1, T) as for `embed_prompt`.
            capacity: positions of the returned cache (default: just the P = T + 3 prompt positions, enough
                to `expand` into larger caches).
        """
        prompt = self.embed_prompt(cond_latent, text_tokens)
        cache = self.new_cache(1, prompt.shape[1] if capacity is None else capacity, device=prompt.device)
        self.gpt(prompt, cache)
        return cache

    def decode_memory_bytes(
        self, prompt_length: int, max_generate_length: int, cuda_graphs: bool = False
    ) -> tuple[int, int]:
        """Estimated memory of a decode beyond the weights: (bytes per row, bytes shared by all rows).

        Per row: the KV cache (2 x layers x dim x positions in the weights' dtype; the graph path
        allocates every position the model allows), the sampler's vocabulary-wide temporaries (logits,
        scores, sort values and indices, probabilities, noise, the seen mask), the codes and the step's
        activations. Shared: the batch-1 prompt cache.
        """
        itemsize = self.mel_head.weight.element_size()
        if cuda_graphs:
            from tortoise.models.ar_graphs import capacity_of

            positions = capacity_of(self)
        else:
            positions = prompt_length + 1 + max_generate_length
        layers, dim, vocab = len(self.gpt.h), self.model_dim, self.number_mel_codes
        kv = 2 * layers * dim * positions * itemsize
        sampler = vocab * (6 * 4 + 8 + 1)
        activations = 12 * dim * 4 + self.gpt.heads * positions * 4
        per_row = kv + sampler + activations + 2 * max_generate_length * 8
        shared = 2 * layers * dim * prompt_length * itemsize
        return per_row, shared

    @torch.no_grad()
    def inference_codes(
        self,
        cond_latent: torch.Tensor,
        text_tokens: torch.Tensor,
        max_generate_length: int,
        num_return_sequences: int = 1,
        use_kv_cache: bool = True,
        use_kv_mel_offset: bool | None = None,
        next_code: NextCodeFn | None = None,
        min_new_tokens: int = 0,
        retire_finished: bool = False,
        check_every: int = DEFAULT_CHECK_EVERY,
        on_step: StepFn | None = None,
    ) -> torch.Tensor:
        """Decode codes for one prompt: greedy by default, or with a caller-supplied choice of next code.

        Rows that emit the stop code are finished and emit the stop code from then on; decoding ends when
        every row has finished or after `max_generate_length` codes, as HF `generate` did.

        Args:
            cond_latent: (1, dim) conditioning latent.
            text_tokens: (1, T) text ids ending in one stop 0 (as `tts` builds them).
            max_generate_length: most codes per row.
            num_return_sequences: candidate rows decoded together from the shared prompt.
            use_kv_cache: decode through a static KVCache (prompt prefilled once, batch 1); otherwise every
                step re-runs the full sequence (the official kv_cache=False path).
            use_kv_mel_offset: mel position convention (see `mel_positions`); None picks the official one
                for the mode: True with the cache, False without.
            next_code: default argmax; a chooser with `choose_step(logits, DecodeStep)` (CodeSampler), or
                (logits (rows, vocab), codes so far (rows, n)) -> (rows,) int64. With `retire_finished`
                it only sees the running rows.
            min_new_tokens: the stop code's logit is -inf for the first this many steps (HF's
                MinNewTokensLengthLogitsProcessor), applied before `next_code`.
            retire_finished: every `check_every` steps, drop finished rows from the cache and from later
                steps. Finished rows are masked to the stop code either way, so the codes do not change;
                a `CodeSampler` draws its noise for every row, so seeded runs keep the official order.
            check_every: steps between the loop's host reads (the "all finished" check).
            on_step: streaming hook, called after every step with that step's codes (rows,) and the
                latents (rows, dim) of the states that predicted them (what the fast mode decodes).
                Runs the eager steps (no graphs, no retiring).

        Returns:
            (num_return_sequences, n) int64 codes, n <= max_generate_length (finished rows padded with stop).
        """
        chunk = None
        for chunk in self.decode_codes(
            cond_latent,
            text_tokens,
            max_generate_length,
            num_return_sequences=num_return_sequences,
            use_kv_cache=use_kv_cache,
            use_kv_mel_offset=use_kv_mel_offset,
            next_code=next_code,
            min_new_tokens=min_new_tokens,
            retire_finished=retire_finished,
            check_every=check_every,
            on_step=on_step,
        ):
            pass
        if chunk is None:  # max_generate_length 0
            return torch.full((num_return_sequences, 0), self.stop_mel_token, dtype=torch.long)
        return chunk.trimmed()

    def decode_codes(
        self,
        cond_latent: torch.Tensor,
        text_tokens: torch.Tensor,
        max_generate_length: int,
        *,
        num_return_sequences: int = 1,
        use_kv_cache: bool = True,
        use_kv_mel_offset: bool | None = None,
        next_code: Any = None,
        min_new_tokens: int = 0,
        retire_finished: bool = False,
        check_every: int = DEFAULT_CHECK_EVERY,
        on_step: StepFn | None = None,
    ) -> Iterator[DecodeChunk]:
        """The decode loop as a generator of DecodeChunks (see `tortoise.models.decoding.decode_codes`).

        Steps run under `torch.inference_mode()`, never held across a yield. With `cuda_graphs` on and
        the KV cache in use, the steps are the graph-captured ones of `tortoise.models.ar_graphs` (rows
        are then masked, never retired). `on_step` (streaming) needs each step's latents, so it runs the
        eager steps.
        """
        if use_kv_mel_offset is None:
            use_kv_mel_offset = use_kv_cache
        rows, device = num_return_sequences, cond_latent.device
        with torch.inference_mode():
            steps = None
            if self.cuda_graphs and use_kv_cache and on_step is None:
                from tortoise.models.ar_graphs import graph_steps

                steps = graph_steps(
                    self, cond_latent, text_tokens, rows, max_generate_length, use_kv_mel_offset
                )
            if steps is None:
                steps = EagerSteps(
                    self, cond_latent, text_tokens, rows, max_generate_length, use_kv_cache, use_kv_mel_offset
                )
        yield from decode_codes(
            self,
            steps,
            rows,
            max_generate_length,
            device=device,
            next_code=next_code,
            min_new_tokens=min_new_tokens,
            retire_finished=retire_finished and on_step is None,
            check_every=check_every,
            on_step=on_step,
        )


