"""The batched log-likelihood core: token ids in, per-token code lengths in bits out.

It knows nothing of compressors, so it can be tested, benchmarked and reused on its own.

Sequences and windows
    A document's sequence is ``[start] + context + tokens``; positions ``score_from .. L-1`` are
    scored, each predicted from the positions before it. A sequence longer than the model's window
    ``W`` is scored in sliding windows (:func:`plan_windows`): every scored token is scored exactly
    once, with at least ``min(its position, W - S)`` tokens of context, where ``S`` is the stride.

Batching
    Windows from all documents are flattened, sorted by length (longest first) and packed into
    batches of at most ``batch_tokens`` tokens (batch size x longest window), right-padded; a batch
    closes early rather than pad a window to more than 1/0.75 of its length. Causal attention makes
    right padding invisible to the real tokens, so no attention mask is passed at all (the
    faster causal kernel runs).

The head
    Only the scored positions go through the output layer, in chunks of at most ``head_chunk``
    logits, in float32 whatever the weights' dtype; log-softmax and gather per chunk, and the
    results are accumulated in float64. No [batch, time, vocab] tensor is ever materialised.

Out of memory
    On a CUDA out-of-memory error the token budget is halved and the same windows are retried in
    smaller batches; only a single window that does not fit raises.

Shared context
    :func:`score_with_context` codes many documents after one context: the context's KV cache is
    computed once and copied into every batch of continuations (when context and document fit in
    one window; longer ones go through the general sliding-window path).

Code length of a token ``t`` at a position: ``-log2 softmax(logits)[t]`` bits (an ideal code
length, not the size of a real stream: see :mod:`kolmo.lm.coding` for that). Where the tokenizer
needs virtual byte tokens (:mod:`kolmo.lm.tokens`), a model token costs
``-log2((1 - VIRTUAL_MASS) softmax(logits)[t])`` and a virtual one ``-log2(VIRTUAL_MASS / n_virtual)``.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import KolmoError
from .tokens import VIRTUAL_MASS

LN2 = math.log(2.0)
Window = Tuple[int, int, int]  # (begin, split, end): feed seq[begin:end], score positions split..end-1


def check_window(window: int, stride: int) -> None:
    if not (isinstance(window, int) and window >= 2):
        raise ValueError(f"window must be an int >= 2 tokens, got {window!r}")
    if not (isinstance(stride, int) and 1 <= stride < window):
        raise ValueError(f"stride must be an int in [1, window) = [1, {window}), got {stride!r}")


def plan_windows(length: int, score_from: int, window: int, stride: int) -> List[Window]:
    """Windows that score positions ``score_from .. length-1`` of a ``length``-token sequence.

    The first window ends at ``max(window, score_from + stride)`` (or the sequence's end) and each
    later one ``stride`` further; window ``k`` scores ``[end_{k-1}, end_k)`` and starts
    ``window`` tokens before its end, so every scored token sees at least ``window - stride``
    tokens of context (or all of them, near the start).
    """
    check_window(window, stride)
    if not 1 <= score_from <= length:
        raise ValueError(f"score_from must be in [1, {length}], got {score_from}")
    out: List[Window] = []
    prev = score_from
    end = min(length, max(window, score_from + stride))
    while prev < length:
        out.append((max(0, end - window), prev, end))
        prev, end = end, min(length, end + stride)
    return out


class Head:
    """The output layer in float32 chunks: hidden states -> log2-probabilities of chosen tokens."""

    def __init__(self, lm, head_chunk: int = 1 << 24):
        emb = lm.get_output_embeddings()
        self.weight = emb.weight.detach().float()  # (V, H); no copy when already float32
        bias = getattr(emb, "bias", None)
        self.bias = None if bias is None else bias.detach().float()
        self.softcap = getattr(lm.config, "final_logit_softcapping", None)
        self.vocab = self.weight.shape[0]
        self.rows = max(1, head_chunk // self.vocab)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        z = F.linear(h.float(), self.weight, self.bias)  # (n, V) float32
        if self.softcap:
            z = torch.tanh(z / self.softcap) * self.softcap
        return z

    def bits(self, h: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
        """-log2 p(target) for each row of ``h`` (n, H), as float64 (n,)."""
        out = np.empty(h.shape[0], dtype=np.float64)
        for i in range(0, h.shape[0], self.rows):
            lp = torch.log_softmax(self.logits(h[i:i + self.rows]), dim=-1)  # (c, V)
            picked = lp.gather(1, targets[i:i + self.rows, None])[:, 0]  # (c,)
            out[i:i + self.rows] = (-picked.double() / LN2).cpu().numpy()
        return out

    def probs(self, h: torch.Tensor) -> np.ndarray:
        """Next-token distributions for each row of ``h`` (n, H), as float64 numpy (n, V)."""
        return torch.softmax(self.logits(h), dim=-1).double().cpu().numpy()


def base_forward(lm, ids: torch.Tensor, *, mask: Optional[torch.Tensor] = None, past=None, use_cache: bool = False):
    """The transformer body without its head: returns (last hidden states (B, T, H), KV cache or None)."""
    body = lm.base_model
    key = _cache_arg(type(body))
    out = body(input_ids=ids, attention_mask=mask, use_cache=use_cache, **{key: past})
    cache = getattr(out, "cache", None) if key == "cache" else getattr(out, "past_key_values", None)
    return out.last_hidden_state, cache


_CACHE_ARG: dict = {}


def _cache_arg(cls) -> str:
    """transformers 5 names the KV-cache argument ``cache``; older releases ``past_key_values``."""
    if cls not in _CACHE_ARG:
        import inspect
        params = inspect.signature(cls.forward).parameters
        _CACHE_ARG[cls] = "cache" if "cache" in params else "past_key_values"
    return _CACHE_ARG[cls]


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


_MIN_FILL = 0.75  # a window shorter than this fraction of its batch's longest starts a new batch


def _batches(items: Sequence, length: Callable, budget: int) -> List[list]:
    """Greedy packing of items sorted longest first: batch size x longest <= budget (>= 1 item)."""
    out: List[list] = []
    cur: list = []
    for it in items:
        if cur and ((len(cur) + 1) * length(cur[0]) > budget or length(it) < _MIN_FILL * length(cur[0])):
            out.append(cur)
            cur = []
        cur.append(it)
    if cur:
        out.append(cur)
    return out


def _empty_cache(device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


class Scorer:
    """Scores token sequences with one loaded model (see the module docstring)."""

    def __init__(self, loaded, *, window: int, stride: int, batch_tokens: int, progress=None):
        check_window(window, stride)
        if window > loaded.max_positions:
            raise ValueError(f"window {window} exceeds the model's {loaded.max_positions} positions")
        self.lm = loaded.model
        self.tokenizer = loaded.tokenizer
        self.vocab = loaded.vocab_size
        self.n_virtual = loaded.tokenizer.n_virtual
        self.device = loaded.device
        self.start = loaded.start_id
        self.window, self.stride = window, stride
        self.batch_tokens = int(batch_tokens)
        self.head = Head(self.lm)
        self.progress = progress
        self.forward = base_forward  # replaceable, e.g. by tests that simulate running out of memory

    def tensor(self, ids: np.ndarray) -> torch.Tensor:
        """Token ids as the model reads them (virtual byte tokens replaced), on the device."""
        return torch.from_numpy(np.ascontiguousarray(self.tokenizer.model_input(ids))).to(self.device)

    def target_bits(self, h: torch.Tensor, targets: np.ndarray) -> np.ndarray:
        """Code lengths in bits of ``targets`` (n,) given the hidden states ``h`` (n, H) before them."""
        targets = np.asarray(targets, dtype=np.int64)
        if not self.n_virtual:
            return self.head.bits(h, torch.from_numpy(targets).to(self.device))
        virtual = targets >= self.vocab
        bits = self.head.bits(h, torch.from_numpy(np.where(virtual, 0, targets)).to(self.device))
        bits -= np.log2(1.0 - VIRTUAL_MASS)
        bits[virtual] = -np.log2(VIRTUAL_MASS / self.n_virtual)
        return bits

    def probs(self, h: torch.Tensor) -> np.ndarray:
        """Next-token distributions over the coding alphabet for each row of ``h``: float64 (n, A)."""
        p = self.head.probs(h)  # (n, V)
        if not self.n_virtual:
            return p
        extra = np.full((p.shape[0], self.n_virtual), VIRTUAL_MASS / self.n_virtual)
        return np.concatenate([p * (1.0 - VIRTUAL_MASS), extra], axis=1)

    def _bar(self, total: int, desc: str):
        from .. import progress
        return progress.bar(total, desc, "tok", self.progress, min_total=4096)

    def _drain(self, items: Sequence, span: Callable, run: Callable, done: Callable = lambda batch: None) -> None:
        """Run ``items`` (sorted longest first) in batches under the token budget; on out-of-memory,
        halve the budget and retry the same items in smaller batches. ``span(item)`` is its tokens."""
        budget = self.batch_tokens
        queue = deque(_batches(items, span, budget))
        while queue:
            batch = queue.popleft()
            try:
                run(batch)
            except (torch.OutOfMemoryError, RuntimeError) as exc:
                if not _is_oom(exc):
                    raise
                _empty_cache(self.device)
                if len(batch) == 1:
                    raise KolmoError(f"one window of {span(batch[0])} tokens does not fit in memory; "
                                     "use a smaller window (window=...)") from exc
                budget = max(1, min(budget, len(batch) * span(batch[0])) // 2)
                queue.extendleft(reversed(_batches(batch, span, budget)))
                continue
            done(batch)

    # -- general path -------------------------------------------------------------------------
    @torch.inference_mode()
    def score(self, seqs: Sequence[np.ndarray], score_from: Sequence[int]) -> List[np.ndarray]:
        """Bits of positions ``score_from[d] .. len(seqs[d])-1`` of every sequence, float64 arrays."""
        out = [np.zeros(len(s) - f, dtype=np.float64) for s, f in zip(seqs, score_from)]
        items = [(d, *w) for d, (s, f) in enumerate(zip(seqs, score_from)) if len(s) > f
                 for w in plan_windows(len(s), f, self.window, self.stride)]
        items.sort(key=lambda it: (-(it[3] - it[1]), it[0], it[1]))
        span = lambda it: it[3] - it[1]  # noqa: E731
        with self._bar(sum(it[3] - it[2] for it in items), "kolmo lm: scoring") as bar:
            self._drain(items, span, lambda batch: self._score_batch(seqs, score_from, batch, out),
                        lambda batch: bar.update(sum(it[3] - it[2] for it in batch)))
        return out

    def _score_batch(self, seqs, score_from, batch, out) -> None:
        width = max(e - b for _, b, _, e in batch)
        ids = np.full((len(batch), width), self.start, dtype=np.int64)  # right padding
        rows, cols, tgts = [], [], []
        for i, (d, b, s, e) in enumerate(batch):
            ids[i, : e - b] = seqs[d][b:e]
            rows.append(np.full(e - s, i))
            cols.append(np.arange(s - b - 1, e - b - 1))  # hidden state j predicts token j + 1
            tgts.append(seqs[d][s:e])
        dev = self.device
        hidden, _ = self.forward(self.lm, self.tensor(ids))  # (B, T, H); causal: padding unseen
        r = torch.from_numpy(np.concatenate(rows)).to(dev)
        c = torch.from_numpy(np.concatenate(cols)).to(dev)
        bits = self.target_bits(hidden[r, c], np.concatenate(tgts))
        k = 0
        for d, b, s, e in batch:
            f = score_from[d]
            out[d][s - f: e - f] = bits[k: k + e - s]
            k += e - s

    # -- shared context -----------------------------------------------------------------------
    @torch.inference_mode()
    def score_with_context(self, context: np.ndarray, docs: Sequence[np.ndarray]) -> List[np.ndarray]:
        """Bits of every token of each doc, each read right after ``[start] + context``.

        Docs that fit in one window with the context reuse the context's KV cache, computed once.
        """
        prefix = np.concatenate([[self.start], np.asarray(context, dtype=np.int64)]).astype(np.int64)
        out: List[Optional[np.ndarray]] = [None] * len(docs)
        fit = [i for i, d in enumerate(docs) if len(d) and len(prefix) + len(d) <= self.window]
        fit_set = set(fit)
        rest = [i for i in range(len(docs)) if i not in fit_set]
        if rest:
            seqs = [np.concatenate([prefix, docs[i]]).astype(np.int64) for i in rest]
            for i, bits in zip(rest, self.score(seqs, [len(prefix)] * len(rest))):
                out[i] = bits
        if fit:
            hidden, cache = self.forward(self.lm, self.tensor(prefix[None]), use_cache=True)
            h_last = hidden[0, -1]  # (H,)
            fit.sort(key=lambda i: -len(docs[i]))
            self._drain(fit, lambda i: len(prefix) + len(docs[i]),
                        lambda batch: self._context_batch(cache, h_last, docs, batch, out))
        return [o if o is not None else np.zeros(0) for o in out]

    def _context_batch(self, cache, h_last, docs, batch, out) -> None:
        width = max(len(docs[i]) for i in batch)
        ids = np.full((len(batch), width), self.start, dtype=np.int64)
        for j, i in enumerate(batch):
            ids[j, : len(docs[i])] = docs[i]
        past = copy.deepcopy(cache)
        if len(batch) > 1:
            past.batch_repeat_interleave(len(batch))
        hidden, _ = self.forward(self.lm, self.tensor(ids), past=past, use_cache=True)  # (B, T, H)
        for j, i in enumerate(batch):
            n = len(docs[i])
            h = torch.cat([h_last[None], hidden[j, : n - 1]])  # (n, H): state before each token
            out[i] = self.target_bits(h, docs[i])
