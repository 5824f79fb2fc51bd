"""The match model of the mixture compressor: a pointer into the past that keeps its alignment.

It predicts ``ids[t]`` from ``ids[:t]`` as :mod:`kolmo.lm.mixing.ngram`'s model does (``bits`` over a whole
sequence, ``state()`` incremental, the same hashes and undo logs), both through the one per-token
rule below (:func:`_decide`, :func:`_dist`, :func:`_learn`), so they agree to the last bit.

Two predictions per position t:

* **B, the longest recent repeat** (PAQ's match-model lookup). For each L of the decreasing ladder
  ``lengths``, the most recent u < t (u >= L) with ``ids[u-L:u] == ids[t-L:t]``; the longest L with
  one gives ``u_B`` (rung r = its index + 1; r = 0: none).
* **A, the aligned pointer** ``p``: the position whose token it predicts, ``y_A = ids[p]``. After
  each token it moves to ``p + 1`` whether it predicted right or not, so a copy with a changed
  token stays aligned (an LZ coder's repeat offset; paq8px's recovery mode). It keeps ``run``, the
  tokens it predicted right in a row (``ids[p-k] == ids[t-k]`` for k = 1 .. run), and ``misses``,
  how many of its last ``HISTORY`` (8) predictions were wrong. Before predicting it may move:

  1. *re-synchronisation* after an insertion or a deletion: while it has missed in the last 8, it
     tries ``p + d`` for 0 < |d| <= ``SLIP`` (8, nearest first) and moves to the first whose run
     reaches ``run + k``, taking that run. ``k`` is the least k >= 2 with ``D^k >= 2 SLIP 256``,
     D the distinct tokens seen so far: over D equally likely tokens, one of the 2 SLIP shifts
     agrees on k more tokens by chance with probability below 1/256 (8 symbols: k = 4; 32: 3;
     English bytes or a tokenizer's tokens: 2);
  2. *a better repeat*: when ``u_B != p`` and ``run < L_B``, it moves to ``u_B`` if ``u_B`` agrees
     with the recent past on more of the last ``W = lengths[0]`` positions than ``p`` does
     (``score(q) = #{k in 1..W : ids[q-k] == ids[t-k]}``), with ``run`` recounted there;
  3. with no pointer yet, it takes ``u_B`` (when B has one);
  4. where B has no repeat apart from ``p`` and the pointer missed in the last 8, B is the shift of
     rule 1 with the longest run beyond ``run`` (short of ``k``), as rung ``len(lengths) + 1``: after
     an edit both alignments predict until one wins, the counts learning how often a shift is right.

The distribution comes from counts (updated alike by encoder and decoder after each token) in a
context ``c`` of ``run`` (buckets 0, 1, 2-3, 4-7, 8-15, 16+), ``misses`` (0, 1, 2, 3-4, 5-8) and B's
rung ``r`` (B at ``p`` or predicting ``y_A``: agreement). The tokens not predicted share the rest by
an escape estimate (PPM's method C): with ``c(x) = #{u < t : ids[u] = x}`` and D tokens seen so far,
``f(x) = c(x)`` for a token seen and ``f(x) = D / (A - D)`` for each of the A - D unseen ones, so
together they weigh D and ``F = sum_x f(x) = t + D`` (t + 0 once every token is seen). Not 1 / A over
a mostly unused alphabet, nor a pseudo-count on every token: over a tokenizer's 49,000 tokens a
pseudo-count of 1/2 gave three quarters of a miss's mass to tokens a copy of 8 symbols never holds.

* one prediction y (A and B agree, or B has none): with ``n_c`` tries and ``h_c`` hits,
  ``q = (h_c + 1/2) / (n_c + 1)``, ``p(y) = q`` and ``p(x) = (1 - q) f(x) / (F - f(y))`` for x != y,
  ``F = sum_x f(x)``;
* A and B disagree: with counts ``a_c, b_c, o_c`` of A right, B right, neither (n = their sum),
  ``p(y_A) = (a_c + 1/2) / (n + 3/2)``, ``p(y_B) = (b_c + 1/2) / (n + 3/2)`` and the rest,
  ``(o_c + 1/2) / (n + 3/2)``, shared by the other tokens as ``f(x) / (F - f(y_A) - f(y_B))``
  (over an alphabet of two: ``(a_c + 1/2) / (a_c + b_c + 1)`` and ``(b_c + 1/2) / (a_c + b_c + 1)``);
* no pointer: ``p = 1 / A``; ``p = 1`` if A = 1.

``bits`` returns ``-log2 p(ids[t] | ids[:t])`` in bits. The mixer's weight set (``gate="match"``) is
the bucket :func:`_gate` of the model's largest probability (0: no prediction, 1 .. 8 by the edges
``GATE_EDGES``). ``MatchModel.version`` names the rule in stream configurations. Costs: ``bits``
loops in Python per token (~20 us a byte of English); ``probs`` adds O(A) elementwise float64 work.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

from ...options import check_int
from .ngram import _as_ids, _History, _prefix_hashes, _windows

#: the recent predictions of the pointer whose misses it counts (a bit mask of the last 8)
HISTORY = 8
#: how far from the pointer re-synchronisation looks (tokens, either way)
SLIP = 8
#: the run and miss buckets of the counts' contexts (index: the run capped at 16; the misses 0 .. 8)
_RUN_BUCKET = (0, 1, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4, 5)
_MISS_BUCKET = (0, 1, 2, 3, 3, 4, 4, 4, 4)
_N_RUN, _N_MISS = 6, 5
#: the mixer's weight sets: the model's largest probability below each edge (and one above them all)
GATE_EDGES = (0.25, 0.5, 0.7, 0.85, 0.93, 0.97, 0.99)
_POPCOUNT = tuple(bin(i).count("1") for i in range(1 << HISTORY))


def _run_length(ids, p: int, t: int, cap: int) -> int:
    """The k <= cap tokens before p that equal the k before t, in a row: ``ids[p-j] == ids[t-j]``."""
    k = 0
    while k < cap and k < p and ids[p - 1 - k] == ids[t - 1 - k]:
        k += 1
    return k


def _score(ids, p: int, t: int, w: int) -> int:
    """How many of the last w positions the pointer p agrees on: ``#{k <= w : ids[p-k] == ids[t-k]}``."""
    n = min(w, p)
    return sum(a == b for a, b in zip(ids[p - n:p], ids[t - n:t]))


def _shift_evidence(distinct: int) -> int:
    """The tokens a shifted pointer must agree on beyond the pointer's own run: the least k >= 2 with
    ``distinct^k >= 2 SLIP 256``, so that one of the 2 SLIP shifts agrees by chance with probability
    below 1/256 over ``distinct`` equally likely tokens (integers only: the same on every machine)."""
    k = 2
    while k < 16 and distinct ** k < 2 * SLIP * 256:
        k += 1
    return k


def _decide(ids, t: int, ptr: int, run: int, misses: int, u: int, rung: int, lengths, cap: int, shift: int):
    """The pointer used for position t and the second prediction (rules 1-4 of the module docstring):
    ``(ptr, run, u, rung)``, ``ptr`` -1 where there is none, ``u`` -1 where no second one. ``ids`` is
    read at positions < t only; ``u``, ``rung``: B's repeat; ``shift``: k."""
    if ptr < 0:
        if u < 0:
            return -1, 0, -1, 0
        return u, _run_length(ids, u, t, cap), u, rung
    best, best_run = -1, run
    if misses:
        need = run + shift
        for d in range(1, SLIP + 1):
            for c in (ptr - d, ptr + d):
                if 0 < c < t:
                    k = _run_length(ids, c, t, need)
                    if k >= need:
                        return c, _run_length(ids, c, t, cap), u, rung
                    if k > best_run:
                        best, best_run = c, k
    if u >= 0 and u != ptr and run < lengths[rung - 1]:
        w = lengths[0]
        if _score(ids, u, t, w) > _score(ids, ptr, t, w):
            return u, _run_length(ids, u, t, cap), u, rung
    if (u < 0 or u == ptr) and best >= 0:
        return ptr, run, best, len(lengths) + 1
    return ptr, run, u, rung


def _context(run: int, misses: int, rung: int, agree: bool, n_rungs: int) -> int:
    """The counts' context index: agreeing contexts first, then disagreeing ones (rung >= 1)."""
    base = _RUN_BUCKET[min(run, 16)] * _N_MISS + _MISS_BUCKET[misses]
    if agree:
        return base * (n_rungs + 1) + rung
    return _N_RUN * _N_MISS * (n_rungs + 1) + base * n_rungs + rung - 1


def _dist(counts: List[float], ctx: int, agree: bool, alphabet: int) -> Tuple[float, float, float]:
    """(p(y_A), p(y_B), the mass of every other token together) in context ctx (p(y_B) = 0 when they agree)."""
    if agree:
        q = (counts[3 * ctx] + 0.5) / (counts[3 * ctx + 1] + 1.0)
        return q, 0.0, 1.0 - q
    a, b, o = counts[3 * ctx], counts[3 * ctx + 1], counts[3 * ctx + 2]
    if alphabet == 2:
        return (a + 0.5) / (a + b + 1.0), (b + 0.5) / (a + b + 1.0), 0.0
    n = a + b + o + 1.5
    return (a + 0.5) / n, (b + 0.5) / n, (o + 0.5) / n


def _escape(distinct: int, alphabet: int) -> Tuple[float, int]:
    """(f of each unseen token, the unseen tokens' total weight): ``D / (A - D)`` and D, or 0 and 0
    once every token is seen (module docstring)."""
    return (distinct / (alphabet - distinct), distinct) if distinct < alphabet else (0.0, 0)


def _spread(rest: float, freq, total: float, ya: int, yb: int, agree: bool) -> float:
    """The factor k with ``p(x) = k f(x)`` for the tokens other than the predicted ones: ``rest`` over
    their frequencies ``f`` (``total`` = the sum of all f)."""
    if rest == 0.0:
        return 0.0
    return rest / (total - freq[ya] if agree else total - freq[ya] - freq[yb])


def _gate(top: float) -> int:
    """The mixer's weight set for the model's largest probability ``top`` (1 .. len(GATE_EDGES) + 1)."""
    for i, edge in enumerate(GATE_EDGES):
        if top < edge:
            return i + 1
    return len(GATE_EDGES) + 1


def _learn(counts: List[float], ctx: int, agree: bool, ya: int, yb: int, x: int) -> Tuple[int, int]:
    """The count slots that token x increments in context ctx (its tries and hits, or one of a, b, o)."""
    if agree:
        return (3 * ctx + 1, 3 * ctx) if ya == x else (3 * ctx + 1, -1)
    return (3 * ctx if ya == x else 3 * ctx + 1 if yb == x else 3 * ctx + 2), -1


class MatchModel:
    """The aligned pointer and the longest recent repeat (see the module docstring). ``lengths``: a
    strictly decreasing tuple of context lengths; ``n_buckets``: the mixer's weight sets."""

    #: the rule's name in stream configurations: a stream coded with another rule is refused
    version = "aligned-3"

    def __init__(self, alphabet: int, lengths: Sequence[int] = (32, 16, 8, 4)):
        self.alphabet = check_int("alphabet", alphabet, 1)
        ok = isinstance(lengths, (tuple, list)) and len(lengths) > 0 and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in lengths)
        if not ok or any(a <= b for a, b in zip(lengths, lengths[1:])):
            raise ValueError(f"lengths must be a non-empty, strictly decreasing tuple of positive ints "
                             f"(longest context first), e.g. (32, 16, 8, 4); got {lengths!r}")
        self.lengths = tuple(int(v) for v in lengths)
        self.n_buckets = len(GATE_EDGES) + 2
        #: the longest run the pointer counts (the run buckets stop at 16; rule 2 compares with lengths)
        self.cap = max(16, self.lengths[0])
        self.n_contexts = _N_RUN * _N_MISS * (2 * len(self.lengths) + 3)
        #: _shift_evidence of each count of distinct tokens seen, 0 .. A
        self._shifts = [_shift_evidence(d) for d in range(self.alphabet + 1)]

    def _repeats(self, ids: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """B for every position: (u_B, rung) arrays (u_B = -1, rung 0 where no context recurs)."""
        rung_of, where = np.zeros(len(ids), np.int64), np.full(len(ids), -1, np.int64)
        prefix = _prefix_hashes(ids)
        for rung, length in enumerate(self.lengths):
            if length >= len(ids):
                continue
            ctx = _windows(prefix, length)
            order = np.argsort(ctx, kind="stable")   # by (context, position): a run's previous
            same = ctx[order[1:]] == ctx[order[:-1]]   # entry is the most recent earlier match
            earlier = np.full(len(ctx), -1, np.int64)
            earlier[order[1:][same]] = order[:-1][same] + length
            free = (earlier >= 0) & (rung_of[length:] == 0)   # no longer rung matched here
            rung_of[length:][free] = rung + 1
            where[length:][free] = earlier[free]
        return where, rung_of

    def bits_and_buckets(self, ids, start: int = 0) -> Tuple[np.ndarray, np.ndarray]:
        """``(bits, buckets)`` for t = start .. len(ids)-1, from one pass."""
        ids = _as_ids(ids, self.alphabet)
        start, a = check_int("start", start, 0, len(ids)), self.alphabet
        where, rung_of = self._repeats(ids)
        seq, lengths, cap, n_r = ids.tolist(), self.lengths, self.cap, len(self.lengths) + 1
        counts = [0.0] * (3 * self.n_contexts)
        freq, total, distinct, shifts = [0.0] * a, 0.0, 0, self._shifts
        gates, probs = np.zeros(len(seq), np.int64), np.ones(len(seq))
        ptr, run, hist = -1, 0, 0
        for t, (x, u, rung) in enumerate(zip(seq, where.tolist(), rung_of.tolist())):
            ptr, run, u, rung = _decide(seq, t, ptr, run, _POPCOUNT[hist], u, rung, lengths, cap, shifts[distinct])
            if ptr < 0:
                probs[t] = 1.0 / a
            else:
                ya = seq[ptr]
                yb = seq[u] if u >= 0 and u != ptr else ya
                agree = yb == ya
                ctx = _context(run, _POPCOUNT[hist], rung, agree, n_r)
                if a > 1:
                    pa, pb, rest = _dist(counts, ctx, agree, a)
                    if x == ya or x == yb:
                        probs[t] = pa if x == ya else pb
                    else:
                        esc, unseen = _escape(distinct, a)
                        probs[t] = (freq[x] or esc) * _spread(rest, freq, total + unseen, ya, yb, agree)
                    gates[t] = _gate(max(pa, pb))
                i, j = _learn(counts, ctx, agree, ya, yb, x)
                counts[i] += 1.0
                if j >= 0:
                    counts[j] += 1.0
                hit = ya == x
                ptr, run, hist = ptr + 1, min(run + 1, cap) if hit else 0, ((hist << 1) | (not hit)) & 0xFF
            distinct += freq[x] == 0.0
            freq[x] += 1.0
            total += 1.0
        return -np.log2(probs[start:]), gates[start:]

    def bits(self, ids, start: int = 0) -> np.ndarray:
        """``-log2 p(ids[t] | ids[:t])`` for t = start .. len(ids)-1 (float64, bits)."""
        return self.bits_and_buckets(ids, start)[0]

    def buckets(self, ids, start: int = 0) -> np.ndarray:
        """Each position's weight set (int64; 0 = no prediction, else :func:`_gate` of its largest p)."""
        return self.bits_and_buckets(ids, start)[1]

    def state(self) -> "MatchState":
        """An empty incremental state."""
        return MatchState(self)


class MatchState(_History):
    """Incremental :class:`MatchModel`: per rung a dict context hash -> the latest position u whose
    ``L`` preceding tokens had that hash; the pointer ``[p, run, miss mask]``; the counts."""

    def __init__(self, model: MatchModel):
        super().__init__(model.alphabet, model.lengths)  # _contexts()[rung]
        self.model, self.lengths, self._tables = model, model.lengths, [{} for _ in model.lengths]
        self._counts = [0.0] * (3 * model.n_contexts)
        self._pointer = [-1, 0, 0]  # p (after the last token), run, the mask of the last misses
        self._freq, self._total = np.zeros(model.alphabet), [0.0]  # the counts c(x), and t
        self._distinct = [0]  # the tokens seen at least once
        #: _predict()'s answer until the history changes: (gate, ptr, run, y_A, y_B, agree, context)
        self._next: Optional[tuple] = None

    def _repeat(self) -> Tuple[int, int]:
        """B: (u_B, rung), (-1, 0) where no context recurs."""
        t = len(self._ids)
        for rung, (length, ctx) in enumerate(zip(self.lengths, self._contexts())):
            if t > length:                # an earlier match needs L <= u < t
                u = self._tables[rung].get(ctx)
                if u is not None:
                    return u, rung + 1
        return -1, 0

    def _predict(self) -> tuple:
        """The next position's prediction; a coding step asks three times (``bucket``, ``probs``,
        ``absorb``), so the answer is kept until the history changes."""
        if self._next is None:
            m, ids, t = self.model, self._ids, len(self._ids)
            u, rung = self._repeat()
            ptr, run, hist = self._pointer
            misses = _POPCOUNT[hist]
            ptr, run, u, rung = _decide(ids, t, ptr, run, misses, u, rung, m.lengths, m.cap,
                                        m._shifts[self._distinct[0]])
            if ptr < 0:
                self._next = (0, -1, 0, -1, -1, True, -1)
            else:
                ya = ids[ptr]
                yb = ids[u] if u >= 0 and u != ptr else ya
                agree = yb == ya
                ctx = _context(run, misses, rung, agree, len(m.lengths) + 1)
                gate = _gate(max(_dist(self._counts, ctx, agree, self.alphabet)[:2])) if self.alphabet > 1 else 0
                self._next = (gate, ptr, run, ya, yb, agree, ctx)
        return self._next

    def _changed(self) -> None:
        super()._changed()
        self._next = None

    def pointer(self) -> int:
        """The position whose token the aligned pointer predicts next (rules 1-3 applied; -1: none)."""
        return self._predict()[1]

    def bucket(self) -> int:
        """The next position's weight set (0 = no prediction)."""
        return self._predict()[0]

    def absorb(self, token) -> None:
        """Learn this position's outcome, move the pointer, record where each context ended, append the token."""
        x = self._check(token)
        _, ptr, run, ya, yb, agree, ctx = self._predict()
        t, pointer, counts = len(self._ids), self._pointer, self._counts
        undo = [(pointer, 0, pointer[0]), (pointer, 1, pointer[1]), (pointer, 2, pointer[2])]
        if ptr >= 0:
            i, j = _learn(counts, ctx, agree, ya, yb, x)
            for k in (i, j) if j >= 0 else (i,):
                undo.append((counts, k, counts[k]))
                counts[k] += 1.0
            hit = ya == x
            pointer[:] = [ptr + 1, min(run + 1, self.model.cap) if hit else 0, ((pointer[2] << 1) | (not hit)) & 0xFF]
        undo += [(self._freq, x, self._freq[x]), (self._total, 0, self._total[0]), (self._distinct, 0, self._distinct[0])]
        self._distinct[0] += int(self._freq[x] == 0.0)
        self._freq[x] += 1.0
        self._total[0] += 1.0
        for table, h in zip(self._tables, self._contexts()):
            if h is not None:
                undo.append((table, h, table.get(h)))
                table[h] = t
        self._append(x, undo)

    def parts(self) -> Optional[Tuple[int, float, int, float, float, float]]:
        """The next-token distribution's parameters ``(y_A, p(y_A), y_B, p(y_B), k, esc)``: every other
        token x has ``p(x) = k f(x)``, with ``f(x) = c(x)`` for a token seen and ``esc`` for one unseen
        (module docstring); ``y_B == y_A`` where they agree. None: no prediction (uniform)."""
        a = self.alphabet
        _, ptr, _, ya, yb, agree, ctx = self._predict()
        if ptr < 0 or a == 1:
            return None
        pa, pb, rest = _dist(self._counts, ctx, agree, a)
        esc, unseen = _escape(self._distinct[0], a)
        return ya, pa, yb, pb, _spread(rest, self._freq, self._total[0] + unseen, ya, yb, agree), esc

    def probs(self) -> np.ndarray:
        """The next-token distribution (float64, length A, sums to 1, all > 0)."""
        a, got = self.alphabet, self.parts()
        if got is None:
            return np.full(a, 1.0 / a)
        ya, pa, yb, pb, k, esc = got
        p = np.where(self._freq > 0.0, self._freq, esc) * k
        p[ya] = pa
        if yb != ya:
            p[yb] = pb
        return p
