"""A small byte-level transformer in plain torch: the ``model="scratch"`` learner of ``lm-online``.

It starts from knowing nothing (a seeded random initialisation) and learns only from the bytes it
codes, so it works for any data, text or binary, with no tokenizer and no download.

Alphabet
    The coding alphabet is the 256 byte values; the model reads one more input id, ``START = 256``,
    at position 0 (the sequence is ``[START] + bytes``). A byte ``t`` at a position costs
    ``-log2 softmax(head(h))[t]`` bits, ``h`` the hidden state of the position before it.

Architecture (GPT-2 style, pre-LayerNorm)
    ``x_0 = E[id] + P[position] + sum_{n=2}^{ngram} H[hash_n(last n ids)]`` (learned token and
    position embeddings, ``context`` positions; with ``ngram >= 2``, hashed n-gram embeddings as
    in the Byte Latent Transformer: one table H of ``buckets`` rows, indexed by a hash of the n
    ids ending at the position, n-grams cut at the window's start, where START pads them),
    then ``layers`` blocks of ``x + Attn(LN(x))`` and ``x + MLP(LN(x))`` (causal multi-head
    attention with ``heads`` heads of ``width / heads`` dimensions; MLP ``width -> 4 width -> width``
    with GELU), a final LayerNorm and an untied linear head to 256 logits. Weights are drawn from
    N(0, 0.02^2) by a private ``torch.Generator`` seeded with ``seed`` (residual output projections
    scaled by 1 / sqrt(2 layers)), so the global random state is never touched and two models with
    the same settings are identical. The hashed table H starts at zero: a row holds only what was
    learned from its n-grams (and gets its own, larger learning rate: ``ngram_lr`` of lm-online).

Hashed n-grams give the model an n-gram model's memory: a row of H is a learned summary of what
followed that context, updated the first time the context is seen, where attention layers need
many optimizer steps to learn the same. H gets sparse gradients (only the rows used), so its
optimizer updates only those rows (:func:`kolmo.lm.coding.prequential.make_optimizers`).

KV cache and coding steps
    ``forward(ids, past=..., use_cache=True)`` continues a sequence: ``past`` is (a list of one
    (keys, values) pair per layer, the last ``ngram - 1`` ids), positions continue from the
    cached length. The coder (:mod:`kolmo.lm.coding.schedule`, through :meth:`ScratchLearner.advance`)
    prefills each window with it, then computes each byte's distribution in one-token steps on a
    :class:`StepCache` (no gradients, a CPU, one sequence, float32 or float64): each step is one
    compiled call (:func:`kolmo.lm.kernels.scratch_step`: the n-gram hashes, every layer, the head
    and its softmax) on numpy buffers, reading the weights in place (the layers store them input
    dimension first, :class:`_Linear`). The steps give the batched forward's hidden states
    and probabilities to float rounding, and the same floats on every run (encoder, verification
    and decoder all take them; :data:`COMPILED_STEPS` is in the stream's configuration); training
    is untouched. Elsewhere (a GPU, bfloat16) the steps are the module's forward with its cache.
"""

from __future__ import annotations

import math
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .scratch_steps import STEP_DTYPES, StepCache, Workspace

START = 256  #: the input id read at position 0; never coded
VOCAB = 256  #: coding alphabet: the byte values

class _Linear(nn.Module):
    """``x W + b``, the weight stored input dimension first, (in, out): the layout the compiled
    coding steps read in place (:mod:`kolmo.lm.kernels`), so no block copies its weights."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight_t = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.empty(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight_t.t(), self.bias)


class _Block(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = _Linear(width, 3 * width), _Linear(width, width)
        self.fc, self.out = _Linear(width, 4 * width), _Linear(4 * width, width)

    def forward(self, x: torch.Tensor, past: Optional[Tuple[torch.Tensor, torch.Tensor]], last_only: bool = False):
        """The block's output (B, T, C), or with ``last_only`` the last position's (B, 1, C), and
        its keys and values (B, heads, P + T, C / heads) for every position."""
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        mask, causal = None, True
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
            P = k.shape[2] - T
            causal = False  # query i sees keys 0 .. P + i
            if T > 1 and not last_only:
                mask = torch.ones(T, P + T, dtype=torch.bool, device=x.device).tril(diagonal=P)
        if last_only and T > 1:  # the last query sees every key
            q, x, T, causal = q[:, :, -1:], x[:, -1:], 1, False
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and T > 1)
        x = x + self.proj(a.transpose(1, 2).reshape(B, T, C))
        x = x + self.out(F.gelu(self.fc(self.ln2(x))))
        return x, (k, v)


class ByteTransformer(nn.Module):
    """Causal byte-level transformer; see the module docstring."""

    def __init__(self, *, layers: int = 4, width: int = 256, heads: int = 8, context: int = 512, ngram: int = 0,
                 buckets: int = 1 << 16, seed: int = 0):
        super().__init__()
        if width % heads:
            raise ValueError(f"width ({width}) must be a multiple of heads ({heads})")
        self.context, self.ngram, self.buckets = context, ngram, buckets
        self.tok = nn.Embedding(VOCAB + 1, width)
        self.hashed = nn.Embedding(buckets, width, sparse=True) if ngram > 1 else None
        self.pos = nn.Embedding(context, width)
        self.blocks = nn.ModuleList([_Block(width, heads) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(width)
        self.head = _Linear(width, VOCAB)
        g = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            for name, p in self.named_parameters():
                if p.dim() == 1:  # biases 0, LayerNorm gains 1
                    p.fill_(1.0 if name.endswith("weight") else 0.0)
                elif name.endswith("weight_t"):  # drawn (out, in), as nn.Linear's weights are, then stored (in, out)
                    std = 0.02 / math.sqrt(2 * layers) if name.endswith(("proj.weight_t", "out.weight_t")) else 0.02
                    p.copy_(torch.randn(p.shape[::-1], generator=g).t() * std)
                else:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.02)
            if self.hashed is not None:
                self.hashed.weight.zero_()

    def _ngrams(self, ids: torch.Tensor, recent: Optional[torch.Tensor]):
        """Sum of the hashed embeddings of the n-grams (n = 2 .. ngram) ending at each position,
        and the last ngram - 1 ids (the n-gram state the KV cache carries)."""
        B, T = ids.shape
        if recent is None:
            recent = ids.new_full((B, self.ngram - 1), START)
        full = torch.cat([recent, ids], dim=1)  # (B, ngram - 1 + T)
        table = self.hashed.weight
        if table.device.type == "cpu" and table.dtype in STEP_DTYPES and not torch.is_grad_enabled():
            # without gradients (a coding window's prefill): the same buckets and the same sums in
            # one compiled call
            from ..kernels import ngram_sums
            x = table.new_empty(B, T, table.shape[1])
            ngram_sums(table.detach().numpy(), full.numpy(), self.buckets, x.numpy())
            return x, full[:, T:]
        h = torch.zeros_like(ids)
        x = 0
        for j in range(self.ngram):  # j bytes back; wrapping int64 arithmetic is exact and portable
            h = h * 0x5BD1E995 + full[:, self.ngram - 1 - j: self.ngram - 1 - j + T] + 1
            if j:
                x = x + self.hashed(torch.remainder((h ^ (j * 0x2545F491)) >> 3, self.buckets))
        return x, full[:, T:]

    def forward(self, ids: torch.Tensor, past=None, use_cache: bool = False, last_only: bool = False):
        """Hidden states (B, T, width) after the final LayerNorm, and the KV cache (or None). With
        ``last_only`` (a coding window's prefill) the last position's state only, (B, 1, width):
        the last block computes keys and values for every position, the rest for that one."""
        kvs, recent = past if past else (None, None)
        offset = kvs[0][0].shape[2] if kvs else 0
        T = ids.shape[1]
        if offset + T > self.context:
            raise ValueError(f"{offset + T} positions exceed the scratch model's context of {self.context}")
        x = self.tok(ids) + self.pos(torch.arange(offset, offset + T, device=ids.device))
        if self.hashed is not None:
            grams, recent = self._ngrams(ids, recent)
            x = x + grams
        cache = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, kvs[i] if kvs else None, last_only and i == len(self.blocks) - 1)
            cache.append(kv)
        return self.ln_f(x), ((cache, recent) if use_cache else None)


class ScratchLearner:
    """The :class:`kolmo.lm.coding.prequential.Learner` of a :class:`ByteTransformer`: bytes are the tokens."""

    start = START
    alphabet = VOCAB
    init_scheme = "gpt2-normal-0.02, hashed-zero"  #: in lm-online's stream fingerprint

    def __init__(self, *, layers: int, width: int, heads: int, context: int, ngram: int = 0, buckets: int = 1 << 16,
                 seed: int, device, dtype):
        self.device, self.dtype = device, dtype
        self.max_positions = context
        self.module = ByteTransformer(layers=layers, width=width, heads=heads, context=context, ngram=ngram,
                                      buckets=buckets, seed=seed)
        self.module.to(device=device, dtype=dtype)
        # theta_0 by name; the hashed table starts at zero, kept as one zero that copy_ broadcasts
        # (not a second copy of a table of buckets x width floats: 512 MB by default)
        self.initial = {n: (p.new_zeros(()) if n == "hashed.weight" else p.detach().clone())
                        for n, p in self.module.named_parameters()}
        self.sparse_names = {"hashed.weight"}  # the hashed n-gram table: lazy (sparse) updates
        self._work: Optional[Workspace] = None  # the coding steps' buffers (made at the first window)

    def named_trainable(self) -> List[Tuple[str, nn.Parameter]]:
        return list(self.module.named_parameters())

    def encode(self, data: bytes) -> np.ndarray:
        return np.frombuffer(data, dtype=np.uint8).astype(np.int64)

    def decode(self, ids) -> bytes:
        return np.asarray(ids, dtype=np.uint8).tobytes()

    def inputs(self, ids: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64)).to(self.device)

    def advance(self, ids: torch.Tensor, past=None, use_cache: bool = False):
        """Hidden states and the cache. Coding one sequence (a cache, no gradients, on a CPU in a
        dtype of the compiled steps) keeps a :class:`StepCache` and runs the one-token steps on it,
        and returns only the last position's state, (1, 1, width): all the coder reads."""
        if isinstance(past, StepCache):  # made on a CPU, in a dtype of the compiled steps
            if use_cache and ids.shape == (1, 1) and not torch.is_grad_enabled():
                return past.step(int(ids.numpy()[0, 0])), past
            past = past.as_past()
        stepping = (use_cache and ids.shape[0] == 1 and ids.device.type == "cpu" and not torch.is_grad_enabled()
                    and self.dtype in STEP_DTYPES)
        h, cache = self.module(ids, past=past, use_cache=use_cache, last_only=stepping)
        if not stepping:
            return h, cache
        if self._work is None or self._work.key != Workspace.key_of(self.module):
            self._work = Workspace(self.module)
        return h, StepCache(self._work, self.module, *cache)

    def target_logp(self, h: torch.Tensor, targets: np.ndarray) -> torch.Tensor:
        """ln p(target) for each row of ``h`` (n, width): float32 (n,), differentiable."""
        lp = torch.log_softmax(self.module.head(h).float(), dim=-1)
        return lp.gather(1, self.inputs(targets)[:, None])[:, 0]

    def step_probs(self, h: torch.Tensor) -> torch.Tensor:
        """Next-byte distributions (n, 256), float32 on the device, for the coder's tables. For the
        hidden state of a compiled step, the distribution that step computed with it
        (:func:`kolmo.lm.kernels.head_softmax`: the same as below to float rounding)."""
        probs = self._work.probs_of(h) if self._work is not None else None
        if probs is not None:
            return torch.from_numpy(probs)
        head = self.module.head
        return torch.softmax(head(h).float(), dim=-1)

    def new_cache(self, kind: str, length: int):
        from .frozen import growing_cache
        return growing_cache(kind)
