"""The token n-gram memory of the mixture compressor, and what its sibling :mod:`kolmo.lm.mixing.match` shares.

Both predict ``ids[t]`` from ``ids[:t]`` over the alphabet ``0 .. A-1``, in two ways that agree to
float rounding: ``bits(ids, start)`` (vectorised: numpy sorts and cumulative sums, a Python loop per
order or rung, none per token) gives the ideal code lengths ``-log2 p(ids[t] | ids[:t])`` in bits for
t >= start; ``state()`` is the coder's incremental view (``absorb``, ``probs``, ``mark``/``rollback``).

:class:`TokenNGram`, interpolated Witten-Bell. The order-n context of position t is ``ids[t-n:t]``
(it exists when t >= n). Over earlier positions u < t with that context, ``c_n(x)`` counts those
followed by x, ``C_n = sum_x c_n(x)`` and ``D_n = #{x : c_n(x) > 0}``:

    p_{-1}(x) = 1 / A,   p_n(x) = (c_n(x) + D_n p_{n-1}(x)) / (C_n + D_n)  if C_n > 0, else p_{n-1}(x),

and ``p = p_{max_order}``, each level normalised by construction. Unrolled, ``p(x) = Lam_{-1} / A +
sum_n Lam_n c_n(x) / (C_n + D_n)`` with ``Lam_n = prod_{m > n} D_m / (C_m + D_m)``: ``probs()`` fills
one dense vector and adds each order's sparse successors, O(A + successors) rather than O(A * orders).

Contexts are keyed by a 64-bit polynomial hash: ``P_0 = 0``, ``P_{t+1} = P_t B + ids[t] + 1 mod 2^64``
(B odd), and ``ids[t-n:t]`` hashes to ``P_t - P_{t-n} B^n mod 2^64``. Equal hashes of two windows of
one length make one context, alike in ``bits`` and in a state; likely only past ~2^32 distinct windows.

Costs: ``bits`` makes two stable argsorts per order and one per rung (~0.4 s per million tokens each).
A state grows by about one ~100-byte dict entry per order or rung and absorbed token. ``absorb`` and
``probs`` make O(orders) dict operations; ``probs`` adds O(A) elementwise float64 numpy work (no
reductions, so the same floats on every machine).
"""

from __future__ import annotations

import operator
from array import array
from typing import Optional, Sequence, Tuple

import numpy as np

from ...options import check_int

_BITS64 = 1 << 64
_MASK = _BITS64 - 1
_B = 0x9E3779B97F4A7C15           # odd, so invertible mod 2^64 (the vectorised prefix needs B^-1)
_B_INV = pow(_B, -1, _BITS64)


def _as_ids(ids, alphabet: int) -> np.ndarray:
    """ids as a 1-D int64 array, checked against the alphabet."""
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise ValueError(f"ids must be a 1-D sequence of token ids; got shape {arr.shape}. Flatten it first.")
    if arr.size == 0:
        return np.zeros(0, np.int64)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"ids must be integers; got dtype {arr.dtype}. Pass ints, e.g. np.asarray(ids, np.int64).")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= alphabet:
        raise ValueError(f"ids must lie in [0, {alphabet}) (the model's alphabet); got values from {lo} to "
                         f"{hi}. Build the model with alphabet > {hi} or map the ids into range.")
    return arr.astype(np.int64, copy=False)


def _prefix_hashes(ids: np.ndarray) -> np.ndarray:
    """P (uint64, length N+1): ``P_t = sum_{i<t} (ids[i]+1) B^(t-1-i) mod 2^64``, computed as
    ``B^t * cumsum((ids[i]+1) B^-(i+1))`` (numpy's uint64 arithmetic wraps mod 2^64)."""
    pows, inv = np.multiply.accumulate(np.full((2, len(ids)), [[_B], [_B_INV]], np.uint64), axis=1)
    out = np.zeros(len(ids) + 1, np.uint64)     # pows[t-1] = B^t, inv[i] = B^-(i+1)
    out[1:] = pows * np.cumsum((ids.astype(np.uint64) + np.uint64(1)) * inv, dtype=np.uint64)
    return out


def _windows(prefix: np.ndarray, n: int) -> np.ndarray:
    """Hashes of the n-token contexts of positions t = n .. N-1 (index t - n)."""
    return prefix[n:-1] - prefix[:len(prefix) - 1 - n] * np.uint64(pow(_B, n, _BITS64))


def _runs(sorted_keys: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """For sorted keys: each entry's run (group) id, and each run's first index."""
    new = np.ones(len(sorted_keys), bool)
    new[1:] = sorted_keys[1:] != sorted_keys[:-1]
    return np.cumsum(new) - 1, np.flatnonzero(new)


def _counts_before(ctx: np.ndarray, tok: np.ndarray, alphabet: int) -> np.ndarray:
    """Rows c, C, D per position (float64): earlier positions with this context and this token,
    with this context, and the distinct tokens among those; all ranks within sorted runs."""
    order = np.argsort(ctx, kind="stable")       # by (context, position)
    grp, starts = _runs(ctx[order])
    rank = np.arange(len(ctx))
    # A context's run is in time order, so a stable sort by (run, token) keeps (context, token) runs so.
    key = grp * alphabet + tok[order]
    order2 = np.argsort(key, kind="stable")
    grp2, starts2 = _runs(key[order2])
    small_c = np.empty_like(rank)
    small_c[order2] = rank - starts2[grp2]
    first = (small_c == 0).astype(np.int64)      # the token's first time after this context
    before = np.cumsum(first) - first
    out = np.empty((3, len(ctx)), np.float64)
    out[:, order] = small_c, rank - starts[grp], before - before[starts][grp]
    return out


class _History:
    """The absorbed tokens, their prefix hashes, and the undo log since the last mark."""

    def __init__(self, alphabet: int, lengths: Sequence[int]):
        self.alphabet, self._lengths = alphabet, tuple(lengths)  # the context lengths the model reads
        self._pows = [pow(_B, n, _BITS64) for n in self._lengths]
        self._ids, self._prefix = [], [0]                # the tokens; P_0 .. P_t
        self._log, self._mark = None, 0                  # since the mark, per absorb: [(where, key, old)]
        self._hashes: Optional[list] = None              # _contexts() of the current history

    def __len__(self) -> int:
        return len(self._ids)

    def _contexts(self) -> list:
        """The hashes of the last n tokens for each n of ``lengths`` (None where n > t): the next
        position's contexts. A coding step reads them twice (``probs``, then ``absorb``), so they
        are kept until the history changes."""
        if self._hashes is None:
            t, pre = len(self._ids), self._prefix
            last = pre[t]
            self._hashes = [(last - pre[t - n] * b) & _MASK if n <= t else None
                            for n, b in zip(self._lengths, self._pows)]
        return self._hashes

    def _check(self, token) -> int:
        token = operator.index(token)
        if not 0 <= token < self.alphabet:
            raise ValueError(f"token must lie in [0, {self.alphabet}) (the model's alphabet); got {token}")
        return token

    def _append(self, token: int, undo: list) -> None:
        if self._log is not None:
            self._log.append(undo)
        self._ids.append(token)
        self._prefix.append((self._prefix[-1] * _B + token + 1) & _MASK)
        self._changed()

    def mark(self) -> None:
        """Remember this point: :meth:`rollback` returns here (and the mark stays)."""
        self._log, self._mark = [], len(self._ids)

    def rollback(self) -> None:
        """Undo every absorb since the last :meth:`mark`, newest first."""
        if self._log is None:
            raise RuntimeError("rollback() needs an earlier mark(): call mark() before the absorbs to undo")
        while self._log:
            for where, key, old in reversed(self._log.pop()):
                if old is None:           # a new key: deleting the newest key restores a dict's order
                    del where[key]
                else:
                    where[key] = old
        del self._ids[self._mark:], self._prefix[self._mark + 1:]
        self._changed()

    def _changed(self) -> None:
        """The history changed (a token appended or rolled back): drop what was kept for the last one."""
        self._hashes = None


class TokenNGram:
    """Interpolated Witten-Bell over token ids (see the module docstring). ``orders``: an int (the
    highest order) or an increasing tuple of orders, each a prediction of its own (the mixture
    mixes them as separate experts); the highest is ``max_order``."""

    def __init__(self, alphabet: int, orders):
        self.alphabet = check_int("alphabet", alphabet, 1)
        seq = (orders,) if isinstance(orders, (int, np.integer)) and not isinstance(orders, bool) else orders
        if not isinstance(seq, (tuple, list)) or not seq or list(seq) != sorted(set(seq)):
            raise ValueError(f"orders must be an int >= 0 or an increasing tuple of them, e.g. (1, 2, 4); got {orders!r}")
        self.orders = tuple(check_int("every order (max_order)", n, 0) for n in seq)
        self.max_order = self.orders[-1]

    def bits(self, ids, start: int = 0) -> np.ndarray:
        """``-log2 p(ids[t] | ids[:t])`` for t = start .. len(ids)-1 (float64, bits), at ``max_order``."""
        return self.bits_by_order(ids, start)[:, -1]

    def bits_by_order(self, ids, start: int = 0) -> np.ndarray:
        """(len(ids) - start, len(orders)) float64: column j the bits of the estimate of order ``orders[j]``."""
        ids = _as_ids(ids, self.alphabet)
        start = check_int("start", start, 0, len(ids))
        p = np.full(len(ids), 1.0 / self.alphabet)
        out = np.empty((len(ids) - start, len(self.orders)))
        prefix = _prefix_hashes(ids)
        for n in range(self.max_order + 1):
            if n < len(ids):
                c, big_c, big_d = _counts_before(_windows(prefix, n), ids[n:], self.alphabet)
                seen = big_c > 0
                lower = p[n:]             # a view: positions t >= n, where order n exists
                lower[seen] = (c[seen] + big_d[seen] * lower[seen]) / (big_c[seen] + big_d[seen])
            if n in self.orders:
                out[:, self.orders.index(n)] = -np.log2(p[start:])
        return out

    def state(self) -> "NGramState":
        """An empty incremental state (the decoder's view: it learns a token after decoding it)."""
        return NGramState(self)


class NGramState(_History):
    """Incremental :class:`TokenNGram`. Order 0 is a dense count vector; order n >= 1 maps a context
    hash to its successors: a bare int (one token seen once: most contexts, kept small), later a list
    [tokens, counts, token -> slot, C] whose arrays ``probs`` reads without a Python loop over them."""

    def __init__(self, model: TokenNGram):
        super().__init__(model.alphabet, range(1, model.max_order + 1))  # _contexts()[n - 1]: order n
        self.max_order, self._tables = model.max_order, [{} for _ in range(model.max_order)]
        self.model_orders = model.orders
        self._count0, self._distinct0 = np.zeros(model.alphabet, np.float64), [0]
        self._row = np.empty(model.alphabet)  # probs_by_order's working distribution

    def absorb(self, token) -> None:
        """Count ``token`` after each context of the next position, then append it."""
        x, undo = self._check(token), []
        for table, ctx in zip(self._tables, self._contexts()[:len(self._ids)]):
            succ = table.get(ctx)
            if type(succ) is list:
                toks, cnts, slots, total = succ
                i = slots.get(x)
                if i is None:             # undone newest first: the pops leave the arrays as they were
                    undo += [(slots, x, None), (toks, -1, None), (cnts, -1, None)]
                    slots[x] = len(toks)
                    toks.append(x)
                    cnts.append(1.0)
                else:
                    undo.append((cnts, i, cnts[i]))
                    cnts[i] += 1.0
                undo.append((succ, 3, total))
                succ[3] = total + 1
            elif succ is None:            # a new context
                undo.append((table, ctx, None))
                table[ctx] = x
            else:                         # a one-token context's second occurrence: widen it
                undo.append((table, ctx, succ))
                two, counts = ([x], [2.0]) if succ == x else ([succ, x], [1.0, 1.0])
                table[ctx] = [array("q", two), array("d", counts), {v: i for i, v in enumerate(two)}, 2]
        undo += [(self._count0, x, self._count0[x]), (self._distinct0, 0, self._distinct0[0])]
        self._distinct0[0] += int(self._count0[x] == 0)
        self._count0[x] += 1
        self._append(x, undo)

    def probs(self) -> np.ndarray:
        """``p(x | history)`` for every x (float64, length A, sums to 1, all > 0): the unrolled
        interpolation, each order's ``Lam_n / (C_n + D_n)`` times its counts."""
        t = len(self._ids)
        if not t:
            return np.full(self.alphabet, 1.0 / self.alphabet)
        terms = [(None, self._count0, t, self._distinct0[0])]
        for table, ctx in zip(self._tables, self._contexts()[:t]):
            succ = table.get(ctx)
            if type(succ) is int:         # (None: C_n = 0, the order passes p_{n-1} through)
                terms.append((succ, 1.0, 1, 1))
            elif succ is not None:        # views, released on return (an array.array can't grow under one)
                terms.append((np.frombuffer(succ[0], np.int64), np.frombuffer(succ[1]), succ[3], len(succ[0])))
        lam, coef = 1.0, []
        for _, _, big_c, big_d in reversed(terms):
            coef.insert(0, lam / (big_c + big_d))
            lam *= big_d / (big_c + big_d)
        p = self._count0 * coef[0]        # two dense passes: counts_0 * coef_0, then + Lam_{-1} / A
        p += lam / self.alphabet
        for (toks, cnt, _, _), k in zip(terms[1:], coef[1:]):
            p[toks] += cnt * k            # distinct tokens: one add per entry
        return p

    def probs_by_order(self, out: Optional[np.ndarray] = None) -> np.ndarray:
        """The distributions of every order in ``orders``: row j of a (len(orders), A) float64 array
        (``out``, filled in place, or a new one), by the recursion of the module docstring, in the
        operations of :meth:`TokenNGram.bits_by_order` (in place: no array is allocated per order)."""
        orders, t, a = self.model_orders, len(self._ids), self.alphabet
        if out is None:
            out = np.empty((len(orders), a))
        p = self._row
        p.fill(1.0 / a)
        hashes, j = self._contexts(), 0
        for n in range(orders[-1] + 1):
            if n == 0 and t:
                np.multiply(p, self._distinct0[0], out=p)
                p += self._count0
                p /= t + self._distinct0[0]
            elif 0 < n <= t:
                succ = self._tables[n - 1].get(hashes[n - 1])
                if succ is not None:
                    toks, cnt, big_c, big_d = ((succ, 1.0, 1, 1) if type(succ) is int else
                                               (np.frombuffer(succ[0], np.int64), np.frombuffer(succ[1]), succ[3],
                                                len(succ[0])))
                    np.multiply(p, big_d, out=p)
                    p[toks] += cnt
                    p /= big_c + big_d
            if n == orders[j]:
                out[j] = p
                j += 1
        return out
