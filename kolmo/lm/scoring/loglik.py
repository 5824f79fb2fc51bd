"""The batched log-likelihood core: token ids in, per-token code lengths in bits out.

It knows nothing of compressors, so it can be tested, benchmarked and reused on its own.

Sequences and windows
    A document's sequence is ``[start] + context + tokens``; positions ``score_from .. L-1`` are
    scored, each predicted from the positions before it. A sequence longer than the model's window
    ``W`` is scored in sliding windows (:func:`plan_windows`): every scored token is scored exactly
    once, with at least ``min(its position, W - S)`` tokens of context, where ``S`` is the stride.

Batching
    Windows from all documents are flattened, sorted by length (longest first) and packed into
    batches of at most ``batch_tokens`` tokens (batch size x longest window), right-padded. A window
    joins a batch only while the batch's padding stays < 5% of the positions it processes (an
    exact integer test in :func:`_batches`), so padding is < 5% of the tokens processed, whatever
    the mix of lengths. Causal attention makes right padding invisible to the real tokens, so no
    attention mask is passed at all (the faster causal kernel runs). On CUDA the bits of a batch
    are copied to the host while the next batch runs (one batch in flight).

The head (:mod:`kolmo.lm.scoring.head`)
    Only the scored positions go through the output layer, in chunks, never a [batch, time, vocab]
    tensor; results are accumulated in float64. ``head="auto"`` picks the float32 reference on
    the CPU and, on CUDA with bf16/fp16 weights, a fused or float32-accumulating low-precision head
    (``Scorer.head_kind`` records which; :mod:`kolmo.lm.scoring.head` bounds each kind's error).

Compilation
    ``compile=True`` runs the transformer body (and the bf16 head's log-sum-exp) through
    ``torch.compile`` on the plain scoring path only: the KV-cache paths (shared context, the
    coder's schedule) stay eager, so coded streams never depend on it. If compiling fails, the
    body runs eagerly from then on, with a logged warning (numbers equal up to float rounding).

Out of memory
    On a CUDA out-of-memory error the token budget is halved and the same windows are retried in
    smaller batches; only a single window that does not fit raises.

Shared context
    :func:`score_with_context` codes many documents after one context: the context's KV cache is
    computed once and copied into every batch of continuations (when context and document fit in
    one window; longer ones go through the general sliding-window path).

Code length of a token ``t`` at a position: ``-log2 softmax(logits)[t]`` bits (an ideal code
length, not the size of a real stream: see :mod:`kolmo.lm.coding` for that). Where the tokenizer
needs virtual byte tokens (:mod:`kolmo.lm.models.tokens`), a model token costs
``-log2((1 - VIRTUAL_MASS) softmax(logits)[t])`` and a virtual one ``-log2(VIRTUAL_MASS / n_virtual)``.
"""

from __future__ import annotations

import copy
from collections import deque
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch

from ...errors import KolmoError
from ..models.frozen import FrozenModel, base_forward
from ..models.tokens import coding_logp
from .batching import InFlight, _batches, _empty_cache, _span, _to_host, check_window, plan_windows
from .head import CompiledOrEager, Head, is_oom, make_head


class Scorer(FrozenModel):
    """Scores token sequences with one loaded model (see the module docstring).

    ``head``: ``"auto"`` or a kind of :func:`kolmo.lm.scoring.head.make_head` (recorded in ``head_kind``).
    ``compile``: run the body through ``torch.compile`` on the plain scoring path (default off:
    compiling costs tens of seconds per model and shape family, more than most jobs take).
    """

    def __init__(self, loaded, *, window: int, stride: int, batch_tokens: int, progress=None,
                 head: str = "auto", compile: bool = False):
        check_window(window, stride)
        if window > loaded.max_positions:
            raise ValueError(f"window {window} exceeds the model's {loaded.max_positions} positions")
        super().__init__(loaded)
        self.lm = loaded.model
        self.window, self.stride = window, stride
        self.batch_tokens = int(batch_tokens)
        self.compile = bool(compile)
        self.head = _shared_head(loaded, head, self.compile)
        self.head_kind: str = self.head.kind  # what LMCompressor.config records
        self.progress = progress
        self._body: Optional[CompiledOrEager] = None
        if self.compile:
            lm = self.lm
            self._body = CompiledOrEager(lambda ids: base_forward(lm, ids)[0], "transformer body", dynamic=True)
        # replaceable, e.g. by tests that simulate running out of memory
        self.forward = self._forward if self.compile else base_forward

    def _forward(self, model, ids: torch.Tensor, *, mask: Optional[torch.Tensor] = None, past=None,
                 use_cache: bool = False):
        """:func:`base_forward`, through the compiled body on the plain path when ``compile`` is on."""
        if self._body is not None and model is self.lm and mask is None and past is None and not use_cache:
            return self._body(ids), None
        return base_forward(model, ids, mask=mask, past=past, use_cache=use_cache)

    # -- the step model of kolmo.lm.coding.schedule (real coding) --------------------------------------------
    def advance(self, ids: torch.Tensor, past=None, use_cache: bool = False):
        return self.forward(self.lm, ids, past=past, use_cache=use_cache)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """The head's float32 logits (its kind's; the step model's probabilities come from these)."""
        return self.head.logits(h)

    def _model_bits(self, h: torch.Tensor, targets: np.ndarray) -> torch.Tensor:
        """The head's bits of ``targets`` (virtual ones read as token 0): float64 on the device."""
        if self.n_virtual:
            targets = np.where(targets >= self.vocab, 0, targets)
        return self.head.bits_tensor(h, torch.from_numpy(targets).to(self.device))

    def _finish_bits(self, bits: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Apply the virtual byte tokens' mass to the head's bits (see the module docstring)."""
        return -coding_logp(-bits, targets >= self.vocab, self.n_virtual, base=2.0)

    def _bar(self, total: int, desc: str):
        from ... import progress
        return progress.bar(total, desc, "tok", self.progress, min_total=4096)

    def _drain(self, items: Sequence, span: Callable, run: Callable, done: Callable = lambda batch: None,
               fill: Optional[Callable] = None) -> None:
        """Run ``items`` (sorted longest first) in batches under the token budget; on out-of-memory,
        halve the budget and retry the same items in smaller batches. ``span(item)`` is its tokens,
        ``fill(item)`` its padded part (default ``span``: see :func:`_batches`)."""
        budget = self.batch_tokens
        queue = deque(_batches(items, span, budget, fill))
        while queue:
            batch = queue.popleft()
            try:
                run(batch)
            except (torch.OutOfMemoryError, RuntimeError) as exc:
                if not is_oom(exc):
                    raise
                _empty_cache(self.device)
                if len(batch) == 1:
                    raise KolmoError(f"one window of {span(batch[0])} tokens does not fit in memory; "
                                     "use a smaller window (window=...)") from exc
                budget = max(1, min(budget, len(batch) * span(batch[0])) // 2)
                queue.extendleft(reversed(_batches(batch, span, budget, fill)))
                continue
            done(batch)

    def plan(self, seqs: Sequence[np.ndarray], score_from: Sequence[int]) -> List[list]:
        """The batches :meth:`score` runs (before any out-of-memory backoff): lists of windows
        ``(doc, begin, split, end)``, longest first."""
        return _batches(self._windows(seqs, score_from), _span, self.batch_tokens)

    def _windows(self, seqs, score_from) -> list:
        items = [(d, *w) for d, (s, f) in enumerate(zip(seqs, score_from)) if len(s) > f
                 for w in plan_windows(len(s), f, self.window, self.stride)]
        items.sort(key=lambda it: (-(it[3] - it[1]), it[0], it[1]))
        return items

    # -- general path -------------------------------------------------------------------------
    @torch.inference_mode()
    def score(self, seqs: Sequence[np.ndarray], score_from: Sequence[int]) -> List[np.ndarray]:
        """Bits of positions ``score_from[d] .. len(seqs[d])-1`` of every sequence, float64 arrays."""
        out = [np.zeros(len(s) - f, dtype=np.float64) for s, f in zip(seqs, score_from)]
        items = self._windows(seqs, score_from)
        flight = InFlight(self.device)
        with self._bar(sum(it[3] - it[2] for it in items), "kolmo lm: scoring") as bar:
            self._drain(items, _span, lambda batch: flight.put(self._score_batch(seqs, score_from, batch, out)),
                        lambda batch: bar.update(sum(it[3] - it[2] for it in batch)))
            flight.flush()
        return out

    def _score_batch(self, seqs, score_from, batch, out) -> Callable[[], None]:
        """Queue one batch on the device; returns the function that writes its bits into ``out``
        once they are on the host (see :class:`_InFlight`)."""
        width = max(e - b for _, b, _, e in batch)
        ids = np.full((len(batch), width), self.start, dtype=np.int64)  # right padding
        rows, cols, tgts = [], [], []
        for i, (d, b, s, e) in enumerate(batch):
            ids[i, : e - b] = seqs[d][b:e]
            rows.append(np.full(e - s, i))
            cols.append(np.arange(s - b - 1, e - b - 1))  # hidden state j predicts token j + 1
            tgts.append(seqs[d][s:e])
        dev = self.device
        hidden, _ = self.forward(self.lm, self.inputs(ids))  # (B, T, H); causal: padding unseen
        r = torch.from_numpy(np.concatenate(rows)).to(dev)
        c = torch.from_numpy(np.concatenate(cols)).to(dev)
        targets = np.concatenate(tgts).astype(np.int64)
        pending = _to_host(self._model_bits(hidden[r, c], targets))

        def write() -> None:
            bits = self._finish_bits(pending(), targets)
            k = 0
            for d, b, s, e in batch:
                f = score_from[d]
                out[d][s - f: e - f] = bits[k: k + e - s]
                k += e - s
        return write

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
            hidden, cache = self.forward(self.lm, self.inputs(prefix[None]), use_cache=True)
            h_last = hidden[0, -1]  # (H,)
            fit.sort(key=lambda i: -len(docs[i]))
            flight = InFlight(self.device)
            # budget on context + doc (each row holds the context's cache), padding on the doc alone
            self._drain(fit, lambda i: len(prefix) + len(docs[i]),
                        lambda batch: flight.put(self._context_batch(cache, h_last, docs, batch, out)),
                        fill=lambda i: len(docs[i]))
            flight.flush()
        return [o if o is not None else np.zeros(0) for o in out]

    def _context_batch(self, cache, h_last, docs, batch, out) -> Callable[[], None]:
        width = max(len(docs[i]) for i in batch)
        ids = np.full((len(batch), width), self.start, dtype=np.int64)
        rows, cols = [], []
        for j, i in enumerate(batch):
            ids[j, : len(docs[i])] = docs[i]
            rows.append(np.full(len(docs[i]), j))
            cols.append(np.arange(len(docs[i])))
        past = copy.deepcopy(cache)
        if len(batch) > 1:
            past.batch_repeat_interleave(len(batch))
        hidden, _ = self.forward(self.lm, self.inputs(ids), past=past, use_cache=True)  # (B, T, H)
        # the state before token k of row j: h_last for k = 0, else hidden[j, k - 1]
        before = torch.cat([h_last.expand(len(batch), 1, -1), hidden[:, :-1]], dim=1)  # (B, T, H)
        dev = self.device
        r = torch.from_numpy(np.concatenate(rows)).to(dev)
        c = torch.from_numpy(np.concatenate(cols)).to(dev)
        targets = np.concatenate([np.asarray(docs[i], dtype=np.int64) for i in batch])
        pending = _to_host(self._model_bits(before[r, c], targets))

        def write() -> None:
            bits = self._finish_bits(pending(), targets)
            k = 0
            for i in batch:
                out[i] = bits[k: k + len(docs[i])]
                k += len(docs[i])
        return write


def _shared_head(loaded, kind: str, compile: bool) -> Head:
    """One head per (model, kind, compile), kept on the loaded model and shared by its scorers."""
    shared = getattr(loaded, "_head", None)
    key = (kind, compile)
    if isinstance(shared, dict) and key in shared:
        return shared[key]
    head = make_head(loaded.model, loaded.device, getattr(loaded, "dtype", None), kind, compile=compile)
    if isinstance(shared, dict):
        shared[key] = shared[(head.kind, compile)] = head
    return head
