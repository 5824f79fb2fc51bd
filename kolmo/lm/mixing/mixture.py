"""The mixture: several predictors of the same tokens, mixed per token, learning as it codes.

``lm-online`` with ``mix=(...)`` codes every token with a linear mixture (:mod:`kolmo.lm.mixing.mixer`)
of the distributions of its *parts*, each optional:

``"learner"``  the learning model of :class:`kolmo.lm.coding.prequential.Prequential` (trained after each block)
``"fast"``     a second learner: a private copy of the same model on the same blocks and windows,
               learning at a higher rate (``lm-online``'s ``fast_lr``); the mixer weighs the slow
               and the fast learner per token (PAQ's fast and slow adaptation rates). It doubles
               the learning's cost, so the default mixture has it only where the models compute
               in bf16 in hardware (:data:`kolmo.lm.settings.BF16_MIX`), which halves a step
``"frozen"``   the pretrained model as loaded, never trained, reading the same windows: ``lm`` in context
``"ngram"``    :class:`kolmo.lm.mixing.ngram.TokenNGram` over every token coded so far (X and the part of
               Y already coded): one expert per order in ``ngram_orders`` (the estimate
               interpolated over orders 0 .. n), so the mixer weighs short and long contexts
``"match"``    :class:`kolmo.lm.mixing.match.MatchModel`: a pointer into the past that keeps its alignment
               through changed tokens (and re-synchronises after an inserted or deleted one), beside
               the token that followed the longest earlier repeat of the recent tokens, with
               confidences learned per run length, recent misses and repeat length
``"cache"``    :class:`kolmo.lm.mixing.neural_cache.CacheSettings`: the tokens that followed the earlier
               positions whose frozen-model hidden states are most like the current one (the
               frozen model runs for it whether or not ``"frozen"`` is mixed)

The mixer's weight set is chosen per token by the match model's confidence bucket (``gate="match"``,
PAQ's context-selected weight sets) or is one set (``gate=None``). Code length::

    C(x) = sum_t  -log2 sum_k w_{t,k} p_{t,k}(x_t)                                  (bits)

with every part's distribution and the weights computed from x_{<t} only, so a decoder that
repeats the same updates decodes it: a real (prequential) code, like ``lm-online`` alone.

:class:`MixedPrequential` has :class:`~kolmo.lm.coding.prequential.Prequential`'s interface (the compressor
and :func:`~kolmo.lm.coding.prequential.shared_runs` use it unchanged). Ideal code lengths combine each part's
per-token bits (the language models' from batched passes, the memories' vectorised over the
whole sequence) in one :meth:`~kolmo.lm.mixing.mixer.MixerState.run`. Real coding runs
:class:`~kolmo.lm.mixing.mixture_step.MixtureStep`, a step model of :mod:`kolmo.lm.coding.schedule`, through the one engine
(:mod:`kolmo.lm.coding.coder`, with its verification and safe mode): per step it runs each language
model's one-token step, asks each memory for its full distribution and returns the mixed one
(float64 on the host, summed over the experts in a fixed order; the encoder's verification run
replays the memories' rows from its first run, see :meth:`~kolmo.lm.mixing.mixture_step.MixtureStep.begin_run`).
Its own state (the memories' tables, the mixer's weights) restarts at the block's start for every
run of the block's schedule (``begin_run``: the memories roll back their undo logs) and is
committed after the block; a block stored in the safe mode updates the memories with its tokens
and leaves the weights as they were (the weights would need the floats that differed).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from .mixer import MixerStack, MixerState, new_mixer
from .mixture_step import MixtureStep

PARTS = ("learner", "fast", "frozen", "ngram", "match", "cache")
GATES = (None, "match")


class _Share:
    """A progress bar's ``update`` scaled by ``share`` (learners that run one after the other over the same tokens)."""

    def __init__(self, bar, share: float):
        self.bar, self.share = bar, share

    def update(self, n: float) -> None:
        self.bar.update(n * self.share)


class MixedPrequential:
    """The prequential schedule of a mixture; :class:`~kolmo.lm.coding.prequential.Prequential`'s interface.

    ``inner``: the learner's engine (its blocks and windows are the mixture's); with no
    ``"learner"`` part it is never run. ``fast``: the ``"fast"`` part's engine, another
    :class:`~kolmo.lm.coding.prequential.Prequential` with the same blocks and windows. ``frozen``: a
    :class:`~kolmo.lm.models.frozen.FrozenModel` for the ``"frozen"`` and ``"cache"`` parts; ``cache``: a
    :class:`~kolmo.lm.mixing.neural_cache.CacheSettings` for ``"cache"``.
    """

    def __init__(self, inner, parts: Sequence[str], *, fast=None, frozen=None, ngram=None, match=None, cache=None,
                 gate: Optional[str] = "match", share: float, eta: float):
        self.inner, self.parts = inner, tuple(parts)
        if "fast" in self.parts:
            if fast is None:
                raise ValueError("the 'fast' part needs its own Prequential engine (a second learner)")
            if (fast.block_tokens, fast.window, fast.stride) != (inner.block_tokens, inner.window, inner.stride):
                raise ValueError("the 'fast' learner must run the learner's blocks and windows: got "
                                 f"{(fast.block_tokens, fast.window, fast.stride)} against "
                                 f"{(inner.block_tokens, inner.window, inner.stride)} (block_tokens, window, stride)")
        self.fast = fast if "fast" in self.parts else None
        #: the learners' engines that run, in the order of their rows
        self.learning = [e for p, e in (("learner", inner), ("fast", self.fast)) if p in self.parts]
        #: the mixer's experts: the parts, with "ngram" one expert per order ("ngram2", ...)
        self.experts = tuple(e for p in self.parts for e in ([f"ngram{n}" for n in ngram.orders] if p == "ngram" else [p]))
        self.frozen, self.ngram, self.match, self.gate = frozen, ngram, match, gate
        if "cache" in self.parts and (cache is None or frozen is None):
            raise ValueError("the 'cache' part needs the cache's settings and the frozen model whose states it keeps")
        self.cache = cache if "cache" in self.parts else None
        #: the keys of the ideal runs (positions 1 .. n of the sequence run last), kept across runs
        #: like the learner's weights: snapshot() keeps their count, restore() goes back to it
        self.cache_state = self.cache.state() if self.cache is not None else None
        self.share, self.eta = share, eta
        self.block_tokens, self.window, self.stride = inner.block_tokens, inner.window, inner.stride
        self.learner = inner.learner
        self.mixer = self.new_mixer()
        self.last_columns = np.zeros((0, len(self.experts)))
        self.last_contexts: Optional[np.ndarray] = None
        self._step: Optional[MixtureStep] = None

    def new_mixer(self) -> "MixerState | MixerStack":
        sets = self.match.n_buckets if self.gate == "match" else 1
        return new_mixer(len(self.experts), sets=sets, share=self.share, eta=self.eta)

    @property
    def coding_model(self) -> MixtureStep:
        if self._step is None:
            self._step = MixtureStep(self)
        return self._step

    def blocks(self, n_tokens: int):
        return self.inner.blocks(n_tokens)

    def windows(self, s: int, e: int):
        return self.inner.windows(s, e)

    def reset(self) -> None:
        for eng in self.learning:
            eng.reset()
        self.mixer = self.new_mixer()
        if self.cache_state is not None:
            self.cache_state.truncate(0)
        if self._step is not None:
            self._step.reset()

    def snapshot(self) -> dict:
        return {"learning": [eng.snapshot() for eng in self.learning], "mixer": self.mixer.copy(),
                "cache": self.cache_state.n if self.cache_state is not None else None}

    def restore(self, snap: dict) -> None:
        for eng, saved in zip(self.learning, snap["learning"]):
            eng.restore(saved)
        self.mixer = snap["mixer"].copy()
        if self.cache_state is not None:
            self.cache_state.truncate(snap["cache"])

    def run(self, seq: np.ndarray, *, first_block: int = 0, stop_block: Optional[int] = None, mode: str = "ideal",
            on_block=None, bar=None, per_token: bool = False) -> list:
        """As :meth:`kolmo.lm.coding.prequential.Prequential.run`, with the mixture's code lengths."""
        if mode not in ("ideal", "code"):
            raise ValueError(f"mode must be 'ideal' or 'code', got {mode!r}")
        blocks = self.blocks(len(seq) - 1)
        stop = len(blocks) if stop_block is None else stop_block
        if mode == "code":
            return self._code(seq, blocks, first_block, stop, stop_block is not None, on_block, bar)
        if first_block >= stop:
            self.last_columns, self.last_contexts = np.zeros((0, len(self.experts))), None
            return []
        span = blocks[first_block:stop]
        s0, e1 = span[0][0], span[-1][1]
        ids = np.asarray(seq[1:e1], dtype=np.int64)
        frozen, hidden = None, []
        if "frozen" in self.parts or "cache" in self.parts:
            frozen = np.concatenate([self.inner._score(seq, s, e, net=self.frozen,
                                                       hidden=hidden if self.cache is not None else None)
                                     for s, e in span])
            if bar is not None and not self.learning:
                bar.update(e1 - s0)
        cols = []
        for part in self.parts:
            if part in ("learner", "fast"):
                eng = self.inner if part == "learner" else self.fast
                share = None if bar is None else _Share(bar, 1.0 / len(self.learning))  # one after the other
                got = eng.run(seq, first_block=first_block, stop_block=stop_block, per_token=True, bar=share)
                cols.append(np.concatenate(got))
            elif part == "frozen":
                cols.append(frozen)
            elif part == "ngram":
                cols += list(self.ngram.bits_by_order(ids, start=s0 - 1).T)
            elif part == "match":
                cols.append(self.match.bits(ids, start=s0 - 1))
            else:
                cols.append(self._cache_bits(seq, s0, torch.cat(hidden), ids[s0 - 1:]))
        ctx = self.match.buckets(ids, start=s0 - 1) if self.gate == "match" else None
        self.last_columns = np.stack(cols, axis=1)  # (T, K): each expert's bits alone (for benchmarks)
        self.last_contexts = ctx
        bits = self.mixer.run(self.last_columns, ctx)
        cut = np.cumsum([0] + [e - s for s, e in span])
        out = [bits[a:b] for a, b in zip(cut[:-1], cut[1:])]
        return out if per_token else [float(b.sum()) for b in out]

    def _cache_bits(self, seq, s0: int, hidden: torch.Tensor, tokens: np.ndarray) -> np.ndarray:
        """The cache's bits of positions s0 .. from their frozen states, reading the keys of the
        positions before s0 that earlier runs left (the shared blocks of :func:`shared_runs`)."""
        st = self.cache_state
        if st.n > s0 - 1 and np.array_equal(st.values[:s0 - 1], np.asarray(seq[1:s0])):
            st.truncate(s0 - 1)  # the same sequence run again from an earlier block
        if st.n != s0 - 1 or not np.array_equal(st.values[:st.n], np.asarray(seq[1:s0])):
            raise RuntimeError(f"the neural cache holds the keys of {st.n} positions of another sequence, but this "
                               f"run starts at position {s0}: run the mixture from block 0 (reset()) or continue "
                               "it from the snapshot of the run that led here")
        return st.bits(hidden, tokens)

    def _code(self, seq, blocks, first: int, stop: int, continued: bool, on_block, bar) -> list:
        step = self.coding_model
        out = []
        for k in range(first, stop):
            s, e = blocks[k]
            coded = on_block(k, s, e)  # a schedule run starts with step.begin_run() (run_windows)
            step.end_block(seq, s, e, coded is not False)
            for eng in self.learning:
                if eng.steps > 0 and (continued or k + 1 < len(blocks)):
                    eng._train(seq, s, e, score=False)
            out.append(0.0)
            if bar is not None:
                bar.update(e - s)
        return out
