"""The mixture's step model: one token's mixed distribution, for real coding through the one engine.

:class:`MixtureStep` is a step model of :mod:`kolmo.lm.coding.schedule` for a
:class:`~kolmo.lm.mixing.mixture.MixedPrequential`: per step it runs each language model's one-token step
(the learners', the frozen model's), asks each memory (n-grams, match model, neural cache) for its
full distribution and returns the mixture ``sum_k w_k p_k`` (float64 on the host, summed over the
experts in a fixed order). Its own state (the memories' tables, the mixer's weights) restarts at a
block's start for every run of the block's schedule and is committed after the block; the
encoder's verification run replays the memories' rows from its first run (:meth:`MixtureStep.begin_run`).
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch

from ..kernels import mix_rows

#: the most bytes of memory rows a block's verification replays (:meth:`MixtureStep.begin_run`);
#: a larger alphabet's memories are run again (a pretrained model's step dwarfs them there)
TAPE_BYTES = 64 << 20


class MixtureStep:
    """The step model of a mixture (module docstring); ``B = 1`` (lm-online codes one sequence)."""

    def __init__(self, mixed):  # a kolmo.lm.mixing.mixture.MixedPrequential
        self.mixed = mixed
        lead = mixed.learner
        self.start, self.device, self.alphabet = lead.start, lead.device, lead.alphabet
        self.encode, self.decode = lead.encode, lead.decode
        # the language models run per step, in the order of their rows (a frozen model that only
        # feeds the cache runs last and has no row)
        nets = {"learner": mixed.inner.learner, "fast": mixed.fast.learner if mixed.fast is not None else None,
                "frozen": mixed.frozen}
        self.lms = [nets[p] for p in mixed.parts if p in nets]
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
    def inputs(self, ids: np.ndarray) -> np.ndarray:
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

    def advance(self, ids: np.ndarray, past=None, use_cache: bool = True):
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
            h, cache = lm.advance(lm.inputs(ids), None if past is None else past[j], True)
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
        return h  # advance() returns the mixed distribution itself: it is the state

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
