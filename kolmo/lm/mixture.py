"""The mixture: several predictors of the same tokens, mixed per token, learning as it codes.

``lm-online`` with ``mix=(...)`` codes every token with a linear mixture (:mod:`kolmo.lm.mixer`)
of the distributions of its *parts*, each optional:

``"learner"``  the learning model of :class:`kolmo.lm.online.Prequential` (trained after each block)
``"frozen"``   the pretrained model as loaded, never trained, reading the same windows: ``lm`` in context
``"ngram"``    :class:`kolmo.lm.ngram.TokenNGram` over every token coded so far (X and the part of
               Y already coded): one expert per order in ``ngram_orders`` (the estimate
               interpolated over orders 0 .. n), so the mixer weighs short and long contexts
``"match"``    :class:`kolmo.lm.match.MatchModel`: the token that followed the longest earlier repeat
               of the recent tokens, with a confidence learned per match length
``"cache"``    :class:`kolmo.lm.neural_cache.NeuralCache`: the tokens that followed the earlier
               positions whose frozen-model hidden states are most like the current one (the
               frozen model runs for it whether or not ``"frozen"`` is mixed)

The mixer's weight set is chosen per token by the match model's length bucket (``gate="match"``,
PAQ's context-selected weight sets) or is one set (``gate=None``). Code length::

    C(x) = sum_t  -log2 sum_k w_{t,k} p_{t,k}(x_t)                                  (bits)

with every part's distribution and the weights computed from x_{<t} only, so a decoder that
repeats the same updates decodes it: a real (prequential) code, like ``lm-online`` alone.

:class:`MixedPrequential` has :class:`~kolmo.lm.online.Prequential`'s interface (the compressor
and :func:`~kolmo.lm.online.shared_runs` use it unchanged). Ideal code lengths combine each part's
per-token bits (the language models' from batched passes, the memories' vectorised over the
whole sequence) in one :meth:`~kolmo.lm.mixer.MixerState.run`. Real coding runs
:class:`MixtureStep`, a step model of :mod:`kolmo.lm.schedule`, through the one engine
(:mod:`kolmo.lm.engine`, with its verification and safe mode): per step it runs each language
model's one-token step, asks each memory for its full distribution and returns the mixed one
(float64 on the host, summed over the experts in a fixed order; the encoder's verification run
replays the memories' rows from its first run, see :meth:`MixtureStep.begin_run`).
Its own state (the memories' tables, the mixer's weights) restarts at the block's start for every
run of the block's schedule (``begin_run``: the memories roll back their undo logs) and is
committed after the block; a block stored in the safe mode updates the memories with its tokens
and leaves the weights as they were (the weights would need the floats that differed).
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from .kernels import mix_rows
from .mixer import MixerState

PARTS = ("learner", "frozen", "ngram", "match", "cache")
GATES = (None, "match")
#: the most bytes of memory rows a block's verification replays (:meth:`MixtureStep.begin_run`);
#: a larger alphabet's memories are run again (a pretrained model's step dwarfs them there)
TAPE_BYTES = 64 << 20


class MixtureStep:
    """The step model of a mixture (module docstring); ``B = 1`` (lm-online codes one sequence)."""

    def __init__(self, mixed: "MixedPrequential"):
        self.mixed = mixed
        lead = mixed.learner
        self.start, self.device, self.alphabet = lead.start, lead.device, lead.alphabet
        self.encode, self.decode = lead.encode, lead.decode
        # the language models run per step, in the order of their rows (a frozen model that only
        # feeds the cache runs last and has no row)
        self.lms = [mixed.inner.learner if p == "learner" else mixed.frozen for p in mixed.parts
                    if p in ("learner", "frozen")]
        self.n_lm_rows = len(self.lms)
        if "cache" in mixed.parts and "frozen" not in mixed.parts:
            self.lms.append(mixed.frozen)
        self.cache_lm = self.lms.index(mixed.frozen) if "cache" in mixed.parts else None
        assert self.cache_lm is None or mixed.experts[-1] == "cache"  # its row is the last (PARTS' order)
        self.reset()

    def reset(self) -> None:
        m = self.mixed
        named = [(p, m.ngram.state() if p == "ngram" else m.match.state()) for p in m.parts if p in ("ngram", "match")]
        self.memories = [st for _, st in named]
        self.mixed_memories = list(named)
        self.gate_state = dict(named).get("match") if m.gate == "match" else None
        if m.gate == "match" and self.gate_state is None:
            self.gate_state = m.match.state()
            self.memories.append(self.gate_state)  # followed for its buckets, not mixed
        self.cache = m.cache.state() if m.cache is not None else None
        self.committed = m.new_mixer()
        self.work = self.committed.copy()
        self.pending: Optional[Tuple[int, np.ndarray]] = None  # (weight set, (K, A) expert probs)
        self._probs = np.empty((len(m.experts), self.alphabet))
        # the memories' rows and weight set of each step of the last run, for a verification
        # rerun to replay (where a block's rows take at most TAPE_BYTES), and the rerun's position
        n_rows = len(m.experts) - self.n_lm_rows - (self.cache is not None)  # the memories' rows
        self._taping = n_rows > 0 and m.block_tokens * n_rows * self.alphabet * 8 <= TAPE_BYTES
        self._tape: Optional[list] = None
        self._replay: Optional[int] = None
        for s in self.memories:
            s.mark()
        if self.cache is not None:
            self.cache.mark()

    # -- the step model -------------------------------------------------------------------------
    def tensor(self, ids: np.ndarray) -> np.ndarray:
        return np.array(ids, dtype=np.int64)

    def new_cache(self, kind: str, length: int):
        return None

    def begin_run(self, again: bool = False) -> None:
        """Every run of a block's schedule starts from the block's start. ``again``: the run repeats
        the last one on the same tokens (the encoder's verification): the memories' rows and
        buckets, exact functions of the tokens (float64 + - * / elementwise), are replayed from
        that run's tape, and the memories stay where it left them; the language models' steps, the
        neural cache (a function of the frozen model's floats) and the mixer's updates run again."""
        if self.cache is not None:
            self.cache.rollback()
        if again and self._tape is not None:
            self._replay = 0
        else:
            for s in self.memories:
                s.rollback()
            self._tape, self._replay = ([] if self._taping else None), None
        self.work, self.pending = self.committed.copy(), None

    def hidden(self, ids: np.ndarray, past=None, use_cache: bool = True):
        """The mixed next-token distribution after ``ids`` (1, T), as (1, 1, A) float64, and the
        language models' caches. The token that the pending distribution predicted (the last of
        ``ids``: a step's one token, or a later window's last context token) is learned first."""
        if ids.shape[0] != 1:
            raise ValueError(f"the mixture codes one sequence at a time, got {ids.shape[0]} rows")
        token = int(ids[0, -1]) if self.pending is not None else None
        if token is not None:
            self._absorb(token, learn=True)
        # the experts' distributions, one row each, in a (K, A) float64 buffer that _absorb reads
        # before the next step fills it again
        probs, caches = self._probs, []
        for j, lm in enumerate(self.lms):
            h, cache = lm.hidden(lm.tensor(ids), None if past is None else past[j], True)
            if j < self.n_lm_rows:
                probs[j] = lm.step_probs(h.select(1, -1)).cpu().numpy()[0]  # float32 -> float64 is exact
            if j == self.cache_lm:
                probs[-1] = self.cache.probs(h.select(1, -1))  # the last expert
            caches.append(cache)
        k = first = self.n_lm_rows  # the memories' rows follow the language models'
        last = len(probs) - (self.cache is not None)
        if self._replay is not None:
            if self._replay >= len(self._tape) or self._tape[self._replay][0] != token:
                raise RuntimeError("a verification rerun of the mixture's schedule must repeat the last run's "
                                   "tokens and steps (begin_run(again=True))")
            _, ctx, probs[first:last] = self._tape[self._replay]
            self._replay += 1
        else:
            for part, s in self.mixed_memories:
                if part == "ngram":
                    s.probs_by_order(out=probs[k:k + len(s.model_orders)])
                    k += len(s.model_orders)
                else:
                    probs[k] = s.probs()
                    k += 1
            ctx = self.gate_state.bucket() if self.gate_state is not None else 0
            if self._tape is not None:
                self._tape.append((token, ctx, probs[first:last].copy()))
        # sum_k w_k p_k(x): one IEEE product each, summed in the fixed order k = 0, 1, ...: the
        # same floats in encoder and decoder, on any machine (one compiled call)
        mixed = np.empty(self.alphabet)
        mix_rows(probs, np.asarray(self.work.mix(ctx), dtype=np.float64), mixed)
        self.pending = (ctx, probs)
        return torch.from_numpy(mixed).view(1, 1, -1), caches

    def step_probs(self, h: torch.Tensor) -> torch.Tensor:
        return h  # hidden() returns the mixed distribution itself

    def _absorb(self, token: int, learn: bool) -> None:
        ctx, probs = self.pending
        if learn:
            self.work.update(ctx, probs[:, token].tolist())
        if self._replay is None:  # (a rerun's memories already hold the token)
            for s in self.memories:
                s.absorb(token)
        if self.cache is not None:
            self.cache.absorb(token)
        self.pending = None

    # -- blocks ---------------------------------------------------------------------------------
    def end_block(self, seq: np.ndarray, s: int, e: int, coded: bool) -> None:
        """Commit block [s, e): the last token of a coded block is learned (its distribution is
        pending); a safe block's tokens go to the memories only (the neural cache keeps no keys of
        it: the floats that would make them differed)."""
        self._tape, self._replay = None, None
        if coded and self.pending is not None:
            self._absorb(int(seq[e - 1]), learn=True)
            self.committed = self.work
        else:
            for st in self.memories:
                st.rollback()
                for t in seq[s:e].tolist():
                    st.absorb(t)
            if self.cache is not None:
                self.cache.rollback()
        self.work, self.pending = self.committed.copy(), None
        for st in self.memories:
            st.mark()
        if self.cache is not None:
            self.cache.mark()


class MixedPrequential:
    """The prequential schedule of a mixture; :class:`~kolmo.lm.online.Prequential`'s interface.

    ``inner``: the learner's engine (its blocks and windows are the mixture's); with no
    ``"learner"`` part it is never run. ``frozen``: a :class:`FrozenLM` for the ``"frozen"`` and
    ``"cache"`` parts; ``cache``: a :class:`~kolmo.lm.neural_cache.NeuralCache` for ``"cache"``.
    """

    def __init__(self, inner, parts: Sequence[str], *, frozen=None, ngram=None, match=None, cache=None,
                 gate: Optional[str] = "match", share: float, eta: float):
        self.inner, self.parts = inner, tuple(parts)
        #: the mixer's experts: the parts, with "ngram" one expert per order ("ngram2", ...)
        self.experts = tuple(e for p in self.parts for e in ([f"ngram{n}" for n in ngram.orders] if p == "ngram" else [p]))
        self.frozen, self.ngram, self.match, self.gate = frozen, ngram, match, gate
        if "cache" in self.parts and (cache is None or frozen is None):
            raise ValueError("the 'cache' part needs a NeuralCache and the frozen model whose states it keeps")
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

    def new_mixer(self) -> MixerState:
        sets = self.match.n_buckets if self.gate == "match" else 1
        return MixerState(len(self.experts), sets=sets, share=self.share, eta=self.eta)

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
        if "learner" in self.parts:
            self.inner.reset()
        self.mixer = self.new_mixer()
        if self.cache_state is not None:
            self.cache_state.truncate(0)
        if self._step is not None:
            self._step.reset()

    def snapshot(self) -> dict:
        return {"inner": self.inner.snapshot() if "learner" in self.parts else None, "mixer": self.mixer.copy(),
                "cache": self.cache_state.n if self.cache_state is not None else None}

    def restore(self, snap: dict) -> None:
        if snap["inner"] is not None:
            self.inner.restore(snap["inner"])
        self.mixer = snap["mixer"].copy()
        if self.cache_state is not None:
            self.cache_state.truncate(snap["cache"])

    def run(self, seq: np.ndarray, *, first_block: int = 0, stop_block: Optional[int] = None, mode: str = "ideal",
            on_block=None, bar=None, per_token: bool = False) -> list:
        """As :meth:`kolmo.lm.online.Prequential.run`, with the mixture's code lengths."""
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
            if bar is not None and "learner" not in self.parts:
                bar.update(e1 - s0)
        cols = []
        for part in self.parts:
            if part == "learner":
                got = self.inner.run(seq, first_block=first_block, stop_block=stop_block, bar=bar, per_token=True)
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
            if "learner" in self.parts and self.inner.steps > 0 and (continued or k + 1 < len(blocks)):
                self.inner._train(seq, s, e, score=False)
            out.append(0.0)
            if bar is not None:
                bar.update(e - s)
        return out
