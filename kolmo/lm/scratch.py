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
optimizer updates only those rows (:func:`kolmo.lm.online.make_optimizers`).

KV cache and coding steps
    ``forward(ids, past=..., use_cache=True)`` continues a sequence: ``past`` is (a list of one
    (keys, values) pair per layer, the last ``ngram - 1`` ids), positions continue from the
    cached length. The coder (:mod:`kolmo.lm.schedule`, through :meth:`ScratchLearner.hidden`)
    prefills each window with it, then computes each byte's distribution in one-token steps on a
    :class:`StepCache` (no gradients, a CPU, one sequence): key and value buffers preallocated and
    written in place, a few functional operations per layer on weights arranged once per window.
    The steps give the batched forward's hidden states to float rounding and the same floats on
    every run (encoder, its verification and decoder all take them); training is untouched.
"""

from __future__ import annotations

import math
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

START = 256  #: the input id read at position 0; never coded
VOCAB = 256  #: coding alphabet: the byte values

_SIGN64, _MASK64 = 1 << 63, (1 << 64) - 1


def bucket_row(back: List[int], ngram: int, buckets: int) -> List[int]:
    """Hash buckets of the n-grams (n = 2 .. ngram) ending at one position, ``back`` holding its id
    and then the ids 1, 2, ... back: :meth:`ByteTransformer._ngrams`' wrapping int64 arithmetic in
    Python ints (a step hashes one position: no tensor overhead), wrapped to int64 at every step."""
    h, out = 0, []
    for j in range(ngram):
        h = ((h * 0x5BD1E995 + back[j] + 1 + _SIGN64) & _MASK64) - _SIGN64
        if j:  # >> of a negative int is arithmetic, as for int64; % of a positive modulus is >= 0
            out.append(((h ^ (j * 0x2545F491)) >> 3) % buckets)
    return out


_RSQRT2 = 2.0 ** -0.5


def _aligned(like: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """An empty (rows, cols) matrix whose rows start 64-byte aligned (for the matrix-vector kernel)."""
    pad = -cols % (64 // like.element_size())
    return like.new_empty(rows, cols + pad)[:, :cols]


class _StepLayer:
    """One block's buffers and weights for the coding steps (:class:`StepCache`), arranged so that a
    step is a few functional operations, each writing where the next one reads.

    * ``rows`` (context, 3 width): each position's query, key and value, as the qkv projection
      writes them (in place: no concatenation, no copy); the heads' keys (H, D, context) and values
      (H, context, D) are strided views. Rows not yet written are zero and masked (-inf scores,
      weights exactly 0), so a step attends over the whole buffer with one additive mask row.
    * each residual branch ends in one ``x + W [h; 1]``: the output projections are copied with
      their bias as an extra column, their inputs are written into buffers ending in a 1.
    * GELU (erf form) as ``gelu(u) = u' (1 + erf(u')) / sqrt 2``, ``u' = u / sqrt 2``: the fc and
      out projections scale by ``1 / sqrt 2`` (their alpha and beta; the out bias column is scaled
      by ``sqrt 2``), leaving two elementwise operations (torch's fused kernel is several times
      slower for one position).
    """

    def __init__(self, like: torch.Tensor, width: int, heads: int, context: int):
        C, H, L, D = width, heads, context, width // heads
        self.rows = like.new_zeros(L, 3 * C)
        qkv = self.rows.view(L, 3, H, D).permute(1, 2, 0, 3)  # (3, H, L, D)
        self.keys, self.values, self.keys_t = qkv[1], qkv[2], qkv[1].transpose(1, 2)  # (H, D, L) last
        self.row = self.rows.unbind(0)  # per position (3C,): where its qkv projection goes
        self.query = self.rows.view(L, 3, H, 1, D)[:, 0].unbind(0)  # per position (H, 1, D)
        self.scale = D ** -0.5
        self.attended = like.new_ones(C + 1)  # [the heads' outputs; 1]
        self.heads_out = self.attended[:C].view(H, 1, D)
        self.hidden = like.new_ones(4 * C + 1)  # [sqrt 2 gelu(fc); 1]
        self.gelu_out = self.hidden[:4 * C]
        self.w_proj, self.w_out = _aligned(like, C, C + 1), _aligned(like, C, 4 * C + 1)

    def load(self, block: "_Block", k: torch.Tensor, v: torch.Tensor) -> None:
        """A new window: the prefill's keys and values (1, H, n, D) and the block's weights now."""
        n, C = k.shape[2], self.w_proj.shape[0]
        self.keys[:, :n], self.values[:, :n] = k[0], v[0]
        self.rows[n:].zero_()
        self.ln1 = (block.ln1.weight, block.ln1.bias, block.ln1.eps)
        self.ln2 = (block.ln2.weight, block.ln2.bias, block.ln2.eps)
        self.w_qkv, self.b_qkv = block.qkv.weight, block.qkv.bias  # (3C, C), (3C,)
        self.w_fc, self.b_fc = block.fc.weight, block.fc.bias  # (4C, C), (4C,)
        self.w_proj[:, :C], self.w_proj[:, C] = block.proj.weight, block.proj.bias  # (C, C + 1)
        self.w_out[:, :4 * C], self.w_out[:, 4 * C] = block.out.weight, block.out.bias / _RSQRT2  # (C, 4C + 1)

    def step(self, x: torch.Tensor, n: int, mask: torch.Tensor) -> torch.Tensor:
        """The block's output (C,) for input ``x`` (C,) at position ``n``; ``mask`` (1, context):
        0 up to ``n``, -inf after."""
        C = x.shape[0]
        torch.addmv(self.b_qkv, self.w_qkv, torch.layer_norm(x, (C,), *self.ln1), out=self.row[n])  # (3C,)
        scores = torch.baddbmm(mask, self.query[n], self.keys_t, alpha=self.scale)  # (H, 1, L)
        torch.bmm(torch.softmax(scores, dim=-1), self.values, out=self.heads_out)  # (H, 1, D)
        x = torch.addmv(x, self.w_proj, self.attended)  # x + proj(attention)
        y = torch.layer_norm(x, (C,), *self.ln2)
        u = torch.addmv(self.b_fc, self.w_fc, y, beta=_RSQRT2, alpha=_RSQRT2)  # (4C,): fc(y) / sqrt 2
        torch.addcmul(u, u, torch.erf(u), out=self.gelu_out)  # sqrt 2 gelu(fc(y))
        return torch.addmv(x, self.w_out, self.hidden, alpha=_RSQRT2)  # x + out(gelu(fc(y)))


class _Workspace:
    """A learner's buffers for the coding steps, made once and reused by every window's
    :class:`StepCache` (no allocation, no views made per window); held by one cache at a time."""

    def __init__(self, model: "ByteTransformer"):
        L, C = model.pos.weight.shape
        self.key = self.key_of(model)
        self.owner: Optional[StepCache] = None
        with torch.inference_mode(False), torch.no_grad():  # ordinary tensors: writable in any mode
            like = model.pos.weight.detach()
            self.layers = [_StepLayer(like, C, b.heads, L) for b in model.blocks]
            # additive attention masks (1, L) per position: 0 up to it, -inf after
            masks = torch.full((L, L), float("-inf"), dtype=like.dtype, device=like.device).triu_(1)
            self.mask = masks[:, None].unbind(0)
            self.tok, self.pos = model.tok.weight.detach().unbind(0), like.unbind(0)  # (C,) rows
            self.index = torch.zeros(max(model.ngram - 1, 0), dtype=torch.int64)  # one position's buckets
            self.index_np = self.index.numpy()

    @staticmethod
    def key_of(model: "ByteTransformer") -> tuple:
        """What the workspace's views depend on: the embedding tables' storage."""
        t, p = model.tok.weight, model.pos.weight
        return t.data_ptr(), p.data_ptr(), p.dtype, p.device


class StepCache:
    """A window's KV cache for the one-token coding steps of one sequence (:meth:`step`): the
    positions held, the last ``ngram - 1`` ids, and the learner's :class:`_Workspace`, loaded with
    the prefill's keys and values and the weights of the window (the schedule never learns within
    a window). A later window's cache takes the workspace over; stepping this one then raises."""

    def __init__(self, work: _Workspace, model: "ByteTransformer", kvs, recent: Optional[torch.Tensor]):
        self.work, self.model, self.length = work, model, kvs[0][0].shape[2]
        work.owner = self
        for layer, block, (k, v) in zip(work.layers, model.blocks, kvs):
            layer.load(block, k, v)
        self.hashed = model.hashed.weight if model.hashed is not None else None
        self.final = (model.ln_f.weight, model.ln_f.bias, model.ln_f.eps)
        self.recent = recent[0].tolist() if recent is not None else []  # the last ngram - 1 ids

    def as_past(self):
        """This cache as :meth:`ByteTransformer.forward` takes it (copies of the keys and values)."""
        n = self.length
        kvs = [(s.keys[None, :, :n].clone(), s.values[None, :, :n].clone()) for s in self.work.layers]
        return kvs, (torch.tensor([self.recent]) if self.hashed is not None else None)

    def step(self, token: int) -> torch.Tensor:
        """The hidden state (1, 1, width) after ``token`` at the next position, which it adds to the
        cache: ``ByteTransformer.forward``'s to float rounding, in fewer operations."""
        w, m, n = self.work, self.model, self.length
        if w.owner is not self:
            raise RuntimeError("this KV cache's buffers were taken over by a later window's cache")
        if n >= m.context:
            raise ValueError(f"{n + 1} positions exceed the scratch model's context of {m.context}")
        x = w.tok[token] + w.pos[n]  # (C,)
        if self.hashed is not None:
            w.index_np[:] = bucket_row([token] + self.recent[::-1], m.ngram, m.buckets)  # id, then 1, 2, .. back
            x += self.hashed.index_select(0, w.index).sum(dim=0)
            self.recent = self.recent[1:] + [token]
        for layer in w.layers:
            x = layer.step(x, n, w.mask[n])
        self.length = n + 1
        return torch.layer_norm(x.view(1, 1, -1), x.shape, *self.final)


class _Block(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.fc, self.out = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor, past: Optional[Tuple[torch.Tensor, torch.Tensor]]):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        mask, causal = None, True
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
            P = k.shape[2] - T
            causal = False  # query i sees keys 0 .. P + i
            if T > 1:
                mask = torch.ones(T, P + T, dtype=torch.bool, device=x.device).tril(diagonal=P)
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
        self.head = nn.Linear(width, VOCAB)
        g = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            for name, p in self.named_parameters():
                if p.dim() == 1:  # biases 0, LayerNorm gains 1
                    p.fill_(1.0 if name.endswith("weight") else 0.0)
                else:
                    std = 0.02 / math.sqrt(2 * layers) if name.endswith(("proj.weight", "out.weight")) else 0.02
                    p.copy_(torch.randn(p.shape, generator=g) * std)
            if self.hashed is not None:
                self.hashed.weight.zero_()

    def _ngrams(self, ids: torch.Tensor, recent: Optional[torch.Tensor]):
        """Sum of the hashed embeddings of the n-grams (n = 2 .. ngram) ending at each position,
        and the last ngram - 1 ids (the n-gram state the KV cache carries)."""
        B, T = ids.shape
        if recent is None:
            recent = ids.new_full((B, self.ngram - 1), START)
        full = torch.cat([recent, ids], dim=1)  # (B, ngram - 1 + T)
        if T == 1 and ids.device.type == "cpu" and not torch.is_grad_enabled():
            # one position without gradients (a window's prefill of one id): the same buckets from
            # Python ints, fewer operations; the rows are summed in another order than below
            rows = torch.tensor([bucket_row(r[::-1], self.ngram, self.buckets) for r in full.tolist()])
            return self.hashed.weight[rows].sum(dim=1, keepdim=True), full[:, T:]
        h = torch.zeros_like(ids)
        x = 0
        for j in range(self.ngram):  # j bytes back; wrapping int64 arithmetic is exact and portable
            h = h * 0x5BD1E995 + full[:, self.ngram - 1 - j: self.ngram - 1 - j + T] + 1
            if j:
                x = x + self.hashed(torch.remainder((h ^ (j * 0x2545F491)) >> 3, self.buckets))
        return x, full[:, T:]

    def forward(self, ids: torch.Tensor, past=None, use_cache: bool = False):
        """Hidden states (B, T, width) after the final LayerNorm, and the KV cache (or None)."""
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
            x, kv = block(x, kvs[i] if kvs else None)
            cache.append(kv)
        return self.ln_f(x), ((cache, recent) if use_cache else None)


class ScratchLearner:
    """The :class:`kolmo.lm.online.Learner` of a :class:`ByteTransformer`: bytes are the tokens."""

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
        self._work: Optional[_Workspace] = None  # the coding steps' buffers (made at the first window)

    def named_trainable(self) -> List[Tuple[str, nn.Parameter]]:
        return list(self.module.named_parameters())

    def encode(self, data: bytes) -> np.ndarray:
        return np.frombuffer(data, dtype=np.uint8).astype(np.int64)

    def decode(self, ids) -> bytes:
        return np.asarray(ids, dtype=np.uint8).tobytes()

    def tensor(self, ids: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64)).to(self.device)

    def hidden(self, ids: torch.Tensor, past=None, use_cache: bool = False):
        """Hidden states and the cache. Coding one sequence (a cache, no gradients, on a CPU) keeps
        a :class:`StepCache` and runs the one-token steps on it."""
        stepping = use_cache and ids.shape[0] == 1 and ids.device.type == "cpu" and not torch.is_grad_enabled()
        if isinstance(past, StepCache):
            if stepping and ids.shape[1] == 1:
                return past.step(int(ids.numpy()[0, 0])), past
            past = past.as_past()
        h, cache = self.module(ids, past=past, use_cache=use_cache)
        if not stepping:
            return h, cache
        if self._work is None or self._work.key != _Workspace.key_of(self.module):
            self._work = _Workspace(self.module)
        return h, StepCache(self._work, self.module, *cache)

    def target_logp(self, h: torch.Tensor, targets: np.ndarray) -> torch.Tensor:
        """ln p(target) for each row of ``h`` (n, width): float32 (n,), differentiable."""
        lp = torch.log_softmax(self.module.head(h).float(), dim=-1)
        return lp.gather(1, self.tensor(targets)[:, None])[:, 0]

    def step_probs(self, h: torch.Tensor) -> torch.Tensor:
        """Next-byte distributions (n, 256), float32 on the device, for the coder's tables."""
        head = self.module.head
        return torch.softmax(F.linear(h, head.weight, head.bias).float(), dim=-1)

    def new_cache(self, kind: str, length: int):
        from .online import new_dynamic_cache
        return new_dynamic_cache(kind)
