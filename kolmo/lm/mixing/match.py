"""The match model of the mixture compressor: the token that followed the longest earlier repeat.

It predicts ``ids[t]`` from ``ids[:t]`` as :mod:`kolmo.lm.mixing.ngram`'s model does (``bits`` vectorised,
``state()`` incremental, the same 64-bit context hashes and undo logs).

:class:`MatchModel`, the most recent longest repeat. For each L of the decreasing ladder ``lengths``,
the most recent u < t (u >= L) with ``ids[u-L:u] == ids[t-L:t]``; the longest L with one predicts
``y = ids[u]`` in bucket b = rung index + 1 (b = 0: no match). With ``tries_b``, ``hits_b`` the earlier
positions in bucket b and those predicted right, ``q_b = (hits_b + 1/2) / (tries_b + 1)``,
``p(y) = q_b`` and ``p(x != y) = (1 - q_b) / (A - 1)``; without a match p = 1 / A (p = 1 if A = 1).
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from .ngram import _as_ids, _History, _prefix_hashes, _whole, _windows


class MatchModel:
    """The most recent longest earlier repeat (see the module docstring). ``lengths``: a strictly
    decreasing tuple of context lengths; ``n_buckets = len(lengths) + 1``."""

    def __init__(self, alphabet: int, lengths: Sequence[int] = (32, 16, 8, 4)):
        self.alphabet = _whole(alphabet, "alphabet", 1)
        ok = isinstance(lengths, (tuple, list)) and len(lengths) > 0 and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in lengths)
        if not ok or any(a <= b for a, b in zip(lengths, lengths[1:])):
            raise ValueError(f"lengths must be a non-empty, strictly decreasing tuple of positive ints "
                             f"(longest context first), e.g. (32, 16, 8, 4); got {lengths!r}")
        self.lengths = tuple(int(v) for v in lengths)
        self.n_buckets = len(self.lengths) + 1

    def bits_and_buckets(self, ids, start: int = 0) -> Tuple[np.ndarray, np.ndarray]:
        """``(bits, buckets)`` for t = start .. len(ids)-1, from one pass."""
        ids = _as_ids(ids, self.alphabet)
        start, a = _whole(start, "start", 0, len(ids)), self.alphabet
        bucket, guess = np.zeros(len(ids), np.int64), np.full(len(ids), -1, np.int64)
        prefix = _prefix_hashes(ids)
        for rung, length in enumerate(self.lengths):
            if length >= len(ids):
                continue
            ctx = _windows(prefix, length)
            order = np.argsort(ctx, kind="stable")   # by (context, position): a run's previous
            same = ctx[order[1:]] == ctx[order[:-1]]   # entry is the most recent earlier match
            earlier = np.full(len(ctx), -1, np.int64)
            earlier[order[1:][same]] = order[:-1][same] + length
            free = (earlier >= 0) & (bucket[length:] == 0)   # no longer rung matched here
            bucket[length:][free] = rung + 1
            guess[length:][free] = ids[earlier[free]]
        if a == 1:
            return np.zeros(len(ids) - start), bucket[start:]
        hit, p = guess == ids, np.full(len(ids), 1.0 / a)
        for b in range(1, self.n_buckets):
            inb = bucket == b
            tries, hits = np.cumsum(inb) - inb, np.cumsum(inb & hit) - (inb & hit)
            q = (hits[inb] + 0.5) / (tries[inb] + 1)
            p[inb] = np.where(hit[inb], q, (1 - q) / (a - 1))
        return -np.log2(p[start:]), bucket[start:]

    def bits(self, ids, start: int = 0) -> np.ndarray:
        """``-log2 p(ids[t] | ids[:t])`` for t = start .. len(ids)-1 (float64, bits)."""
        return self.bits_and_buckets(ids, start)[0]

    def buckets(self, ids, start: int = 0) -> np.ndarray:
        """Each position's bucket (int64; 0 = no match, else the matched rung's index + 1)."""
        return self.bits_and_buckets(ids, start)[1]

    def state(self) -> "MatchState":
        """An empty incremental state."""
        return MatchState(self)


class MatchState(_History):
    """Incremental :class:`MatchModel`: per rung a dict context hash -> the latest position u whose
    ``L`` preceding tokens had that hash; per bucket the counts of tries and hits."""

    def __init__(self, model: MatchModel):
        super().__init__(model.alphabet, model.lengths)  # _contexts()[rung]
        self.lengths, self._tables = model.lengths, [{} for _ in model.lengths]
        self._tries, self._hits = [0] * model.n_buckets, [0] * model.n_buckets
        self._next: Optional[Tuple[int, int]] = None  # _predict()'s answer until the history changes

    def _predict(self) -> Tuple[int, int]:
        """(bucket, predicted token) of the next position; a coding step asks three times
        (``bucket``, ``probs``, ``absorb``), so the answer is kept until the history changes."""
        if self._next is None:
            t, self._next = len(self._ids), (0, -1)
            for rung, (length, ctx) in enumerate(zip(self.lengths, self._contexts())):
                if t > length:                # an earlier match needs L <= u < t
                    u = self._tables[rung].get(ctx)
                    if u is not None:
                        self._next = (rung + 1, self._ids[u])
                        break
        return self._next

    def _changed(self) -> None:
        super()._changed()
        self._next = None

    def bucket(self) -> int:
        """The next position's bucket (0 = no match)."""
        return self._predict()[0]

    def absorb(self, token) -> None:
        """Score this position's prediction, record where each context ended, append the token."""
        x = self._check(token)
        b, y = self._predict()
        t, undo = len(self._ids), [(self._tries, b, self._tries[b]), (self._hits, b, self._hits[b])]
        for table, ctx in zip(self._tables, self._contexts()):
            if ctx is not None:
                undo.append((table, ctx, table.get(ctx)))
                table[ctx] = t
        self._tries[b] += 1
        self._hits[b] += int(y == x)
        self._append(x, undo)

    def probs(self) -> np.ndarray:
        """The next-token distribution (float64, length A, sums to 1, all > 0)."""
        a, (b, y) = self.alphabet, self._predict()
        if a == 1:
            return np.ones(1)
        if b == 0:
            return np.full(a, 1.0 / a)
        q = (self._hits[b] + 0.5) / (self._tries[b] + 1)
        p = np.full(a, (1 - q) / (a - 1))
        p[y] = q
        return p
