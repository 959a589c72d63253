"""The autoregressive model's GPT-2 trunk: pre-LN transformer blocks with HF GPT2Model parameter names,
fed with input embeddings only, and a static, preallocated key/value cache for incremental decoding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tortoise import device as device_caps

# On CPUs without bf16 instructions a bf16 GEMM is emulated: with stored bf16 weights it still beats fp32 for
# up to 4 rows (it reads half the bytes: 40 against 83 ms for the AR's 120 matrices at 1 row on a 2-core
# AVX2 EPYC) but falls far behind beyond (2.1 s against 0.59 s at 57 rows, a prompt prefill). Inputs with more
# rows are multiplied in fp32 from upcast weights (0.68 s there).
EMULATED_BF16_MAX_ROWS = 4


class Conv1D(nn.Module):
    """HF GPT-2's dense layer: y = x @ weight + bias with weight of shape [in_features, out_features].

    The weight keeps HF's [in, out] shape (checkpoints load and save unchanged) but is laid out in memory
    as [out, in], nn.Linear's order: it is the transposed view of a contiguous [out, in] buffer, so
    `F.linear` gets a contiguous weight. On the CPU the bf16 GEMMs of decoding run 1.3-1.7x faster that
    way (fp32 is unaffected); `load_state_dict`, `.to()` and `deepcopy` keep the layout.
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        weight = torch.empty(in_features, out_features)
        nn.init.normal_(weight, std=0.02)  # drawn in [in, out] order: the same values for a given seed
        self.weight = nn.Parameter(weight.t().contiguous().t())
        self.bias = nn.Parameter(torch.zeros(out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // x.shape[-1]
        emulated = x.dtype == torch.bfloat16 and x.device.type == "cpu" and rows > EMULATED_BF16_MAX_ROWS
        if emulated and not device_caps.cpu_supports_bf16():
            # emulated bf16 GEMMs: fp32 is faster beyond a few rows (and autocast must not undo the upcast)
            with torch.autocast("cpu", enabled=False):
                return F.linear(x.float(), self.weight.t().float(), self.bias.float()).to(x.dtype)
        return F.linear(x, self.weight.t(), self.bias)


class KVCache:
    """Static key/value store for every layer of a GPT2, written in place while decoding.

    Buffers are allocated once at full `capacity`; decoding writes new positions at `length` and reads
    `[0, length)` through views, so no step copies the cache (the official HF path concatenates the whole
    past on every step). The batch rows are the candidate sequences; all rows share one write position.

    Typical use (N candidates of one prompt):
        prompt = KVCache.empty(layers, 1, heads, head_dim, capacity=P, ...); gpt(prompt_embeds, prompt)
        cache = prompt.expand(N, capacity=P + 1 + max_new)   # one copy of the P prompt positions
        loop: gpt(step_embeds [N', 1, C], cache); ...; cache.keep_rows(still_running)  # retire rows

    Decode under `torch.no_grad()` or `torch.inference_mode()`, and make and use a cache under the same
    one (inference tensors cannot be written outside inference mode).

    Attributes:
        keys: (layers, batch, heads, capacity, head_dim) buffer; only `[..., :length, :]` is meaningful.
        values: same shape as `keys`.
        length: number of filled positions, i.e. where the next token is written.
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, length: int = 0):
        assert keys.shape == values.shape and keys.dim() == 5, "keys/values must be (L, B, H, capacity, d)"
        self.keys = keys
        self.values = values
        self.length = length

    @classmethod
    def empty(
        cls,
        layers: int,
        batch: int,
        heads: int,
        head_dim: int,
        capacity: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> KVCache:
        """Allocate an empty cache (length 0) of `capacity` positions for `batch` rows.

        Args:
            dtype: must equal the dtype of the attention activations (float16 under fp16 autocast).
        """
        shape = (layers, batch, heads, capacity, head_dim)
        keys = torch.empty(shape, device=device, dtype=dtype)
        return cls(keys, torch.empty_like(keys))

    @property
    def batch_size(self) -> int:
        return self.keys.shape[1]

    @property
    def capacity(self) -> int:
        return self.keys.shape[3]

    def layer(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Views (batch, heads, capacity, head_dim) of layer `index`'s keys and values."""
        return self.keys[index], self.values[index]

    def expand(self, batch: int, capacity: int | None = None) -> KVCache:
        """Make a new `batch`-row cache whose every row starts with this 1-row cache's filled positions.

        This is the only copy of the shared prompt (once, `length` positions); later steps write in place.

        Args:
            batch: number of rows of the new cache.
            capacity: positions of the new cache (default: this cache's capacity); at least `length`.
        """
        assert self.batch_size == 1, "expand() starts from a cache of one row (the shared prompt)"
        capacity = self.capacity if capacity is None else capacity
        if capacity < self.length:
            raise ValueError(f"capacity {capacity} is smaller than the {self.length} cached positions")
        layers, _, heads, _, head_dim = self.keys.shape
        out = KVCache.empty(layers, batch, heads, head_dim, capacity, self.keys.device, self.keys.dtype)
        n = self.length
        out.keys[:, :, :, :n] = self.keys[:, :, :, :n]  # broadcasts the single row over `batch`
        out.values[:, :, :, :n] = self.values[:, :, :, :n]
        out.length = n
        return out

    def keep_rows(self, rows: torch.Tensor) -> None:
        """Keep only the batch rows `rows` (in that order), e.g. to retire finished candidates.

        The kept rows are compacted into the front of the existing storage (one copy of the filled
        positions); no new buffer is allocated.

        Args:
            rows: (n,) int64 indices into the current batch, n <= batch_size; order defines the new rows.
        """
        rows = rows.to(self.keys.device)
        n, filled = rows.numel(), self.length
        assert n <= self.batch_size, "keep_rows cannot grow the batch"
        for buf in (self.keys, self.values):
            # the right-hand side is gathered into a temporary first, so overlapping rows are safe
            buf[:, :n, :, :filled] = buf[:, :, :, :filled].index_select(1, rows)
        self.keys = self.keys[:, :n]
        self.values = self.values[:, :n]


class GPT2Attention(nn.Module):
    """Causal multi-head self-attention with HF's fused c_attn ([q|k|v], each split into heads)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        assert dim % heads == 0, "model dim must divide by heads"
        self.heads = heads
        self.c_attn = Conv1D(dim, 3 * dim)
        self.c_proj = Conv1D(dim, dim)

    def forward(
        self,
        x: torch.Tensor,
        kv: tuple[torch.Tensor, torch.Tensor] | None = None,
        start: int = 0,
        static: tuple[torch.Tensor, int] | None = None,
    ) -> torch.Tensor:
        """Attend causally over the sequence, or over cached positions plus the new ones.

        Args:
            x: (batch, T, dim) normalised hidden states of T new positions.
            kv: optional (keys, values) cache views (batch, heads, capacity, head_dim); the new keys and
                values are written at [start, start + T) and the query attends to [0, start + T).
            start: absolute position of x[:, 0] (only used with `kv`).
            static: (position, window) for one new position (T = 1) given as a device tensor, so that
                the step has the same kernels whatever the position (CUDA graphs): the keys and values
                are written at `position` (a (1,) int64 tensor) and the query attends to the first
                `window` cache positions, those after `position` masked out.

        Returns:
            (batch, T, dim).
        """
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        q, k, v = (y.view(b, t, self.heads, c // self.heads).transpose(1, 2) for y in (q, k, v))
        mask, causal = None, True
        if static is not None:
            position, window = static
            kv[0].index_copy_(2, position, k.to(kv[0].dtype))
            kv[1].index_copy_(2, position, v.to(kv[1].dtype))
            k = kv[0][:, :, :window].to(q.dtype)
            v = kv[1][:, :, :window].to(q.dtype)
            mask = (torch.arange(window, device=x.device) <= position)[None, None, None, :]
            causal = False
        elif kv is not None:
            end = start + t
            kv[0][:, :, start:end] = k
            kv[1][:, :, start:end] = v
            k = kv[0][:, :, :end].to(q.dtype)
            v = kv[1][:, :, :end].to(q.dtype)
            if t == 1:
                causal = False  # a single new query sees every filled position
            elif start > 0:
                # query i sits at absolute position start + i and sees keys j <= start + i
                key_pos = torch.arange(end, device=x.device)
                mask = key_pos[None, :] <= start + torch.arange(t, device=x.device)[:, None]
                causal = False
        # Scale 1/sqrt(head_dim) (GPT-2). Masked logits are excluded entirely; HF fills them with the
        # dtype's minimum instead of -inf, which gives the same softmax since no row is fully masked.
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
        return self.c_proj(y.transpose(1, 2).reshape(b, t, c))  # heads merged head-major


class GPT2MLP(nn.Module):
    """Feed-forward: c_fc -> gelu_new (tanh approximation) -> c_proj."""

    def __init__(self, dim: int, inner_dim: int):
        super().__init__()
        self.c_fc = Conv1D(dim, inner_dim)
        self.c_proj = Conv1D(inner_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the exact erf GELU misses the golden outputs by ~6e-4; GPT-2 uses the tanh form
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class GPT2Block(nn.Module):
    """Pre-LN block: x + attn(ln_1(x)), then + mlp(ln_2(x))."""

    def __init__(self, dim: int, heads: int, eps: float = 1e-5):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=eps)
        self.attn = GPT2Attention(dim, heads)
        self.ln_2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = GPT2MLP(dim, 4 * dim)

    def forward(
        self,
        x: torch.Tensor,
        kv: tuple[torch.Tensor, torch.Tensor] | None = None,
        start: int = 0,
        static: tuple[torch.Tensor, int] | None = None,
    ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), kv, start, static)
        return x + self.mlp(self.ln_2(x))


class GPT2(nn.Module):
    """GPT-2 stack without token or position embeddings (keys `h.N.*` and `ln_f.*`, as HF GPT2Model).

    TorToiSe deletes HF's `wte` and zeroes `wpe`, adding its own learned positions to the embeddings it
    feeds in, so this module consumes input embeddings only.

    Args:
        dim: model width (n_embd).
        layers: number of blocks (n_layer).
        heads: attention heads (n_head); head_dim = dim // heads.
        eps: LayerNorm epsilon (HF default 1e-5).
    """

    def __init__(self, dim: int, layers: int, heads: int, eps: float = 1e-5):
        super().__init__()
        self.dim = dim
        self.heads = heads
        self.h = nn.ModuleList(GPT2Block(dim, heads, eps) for _ in range(layers))
        self.ln_f = nn.LayerNorm(dim, eps=eps)

    def new_cache(
        self,
        batch: int,
        capacity: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> KVCache:
        """Allocate an empty KVCache sized for this model.

        Args:
            batch: rows (candidate sequences).
            capacity: most positions the cache will ever hold (prompt + fed tokens).
            device: defaults to the parameters' device.
            dtype: defaults to the autocast dtype when autocast is on for that device, else the
                parameters' dtype.
        """
        param = self.ln_f.weight
        device = param.device if device is None else torch.device(device)
        if dtype is None:
            if torch.is_autocast_enabled(device.type):
                dtype = torch.get_autocast_dtype(device.type)
            else:
                dtype = param.dtype
        return KVCache.empty(len(self.h), batch, self.heads, self.dim // self.heads, capacity, device, dtype)

    def forward(self, inputs_embeds: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Run the stack on new positions.

        Args:
            inputs_embeds: (batch, T, dim) embeddings (token + position) of T new positions.
            cache: None for a plain causal pass over the T positions. Otherwise the positions are appended
                to the cache (written at `cache.length`, attending to everything before) and
                `cache.length` advances by T. The cache's batch must equal the input's.

        Returns:
            (batch, T, dim) hidden states after ln_f.

        Raises:
            ValueError: the cache has too few free positions or the wrong batch size.
        """
        x = inputs_embeds
        start = 0
        if cache is not None:
            start = cache.length
            if cache.batch_size != x.shape[0]:
                raise ValueError(f"cache has {cache.batch_size} rows but the input has {x.shape[0]}")
            if start + x.shape[1] > cache.capacity:
                raise ValueError(
                    f"cache holds {cache.capacity} positions; {start} are used and {x.shape[1]} more were fed"
                )
        for i, block in enumerate(self.h):
            x = block(x, None if cache is None else cache.layer(i), start)
        if cache is not None:
            cache.length = start + x.shape[1]
        return self.ln_f(x)

    def static_step(
        self, inputs_embeds: torch.Tensor, cache: KVCache, position: torch.Tensor, window: int
    ) -> torch.Tensor:
        """One new position per row at a device-side `position`, attending to the first `window` cache
        positions (see GPT2Attention). Neither reads the host nor changes `cache.length`, so the same
        call can be captured once in a CUDA graph and replayed at every position below `window`.

        Args:
            inputs_embeds: (batch, 1, dim).
            position: (1,) int64 write position, < window <= cache.capacity.

        Returns:
            (batch, 1, dim) hidden states after ln_f.
        """
        x = inputs_embeds
        for i, block in enumerate(self.h):
            x = block(x, cache.layer(i), 0, (position, window))
        return self.ln_f(x)
