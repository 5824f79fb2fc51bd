"""The byte-context memory of the mixture: a byte-level context model turned into token probabilities.

A token vocabulary splits text where a byte model would not, and token n-grams see only whole
tokens: on the Finnish Genesis the best token n-gram codes Y given 150 kB of X in 4760 bits where
byte-level PPMd needs 4176. :class:`ByteContext` predicts the next *token* from a byte model.

The byte model, interpolated Witten-Bell over the bytes h of everything absorbed so far (the
tokens' spellings) and the bytes already chosen on the way down the vocabulary's trie. The
order-n context of the next byte is its n preceding bytes; over earlier bytes with that context
``c_n(b)`` counts those equal to b, ``C_n = sum_b c_n(b)``, ``D_n = #{b : c_n(b) > 0}``:

    p_{-1}(b) = 1 / 256,   p_n(b) = (c_n(b) + D_n p_{n-1}(b)) / (C_n + D_n)  if C_n > 0, else p_{n-1}(b)

up to ``order`` (n <= the bytes there are). Tokens from bytes: a token t spelling bytes
b_1 .. b_k is reached by the walk down the trie with probability ``P(t) = prod_i p(b_i | h b_<i)``,
and the tokenizer ends a token where the text cannot go on inside the vocabulary, so::

    q(t) = P(t) (1 - sum_{c : t c is a trie node} p(c | h t))          (stop where no token goes on)
    p(t) = (1 - FLOOR) q(t) / Z + FLOOR / A,     Z = sum_t q(t)

Over a vocabulary where every prefix of a token is a token, sum_t q(t) = 1; other trie nodes lose
their stopping mass, hence Z. The walk is pruned: a child whose ``P`` falls below ``prune`` is not
entered, and its token (if it is one) gets its whole ``P`` instead of its stopping mass (an upper
bound; tokens below it get FLOOR / A only). Tokens that spell no bytes (special tokens) get FLOOR / A.

Contexts and (context, byte) pairs are 64-bit hashed keys in open-addressing tables (two equal
keys make one context: likely only past ~2^32 of them). Every float comes from one compiled walk
(numba, no fast-math, + - * / only, a fixed order), shared by the ideal code lengths and the coder:
the same floats on every machine, and ``bits`` equals the coder's ``-log2 probs()[token]``.
"""

from __future__ import annotations

import operator
from typing import Optional, Sequence

import numpy as np

from .kernels import njit

#: the mass every token keeps whatever the walk says (a valid code for any token)
FLOOR = 2.0 ** -20
_EMPTY = np.uint64(0)
_ONE = np.uint64(1)
_K1, _K2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_B = np.uint64(0x9E3779B97F4A7C15)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


@njit(cache=True, nogil=True, inline="always")
def _mix(x):
    """splitmix64's finaliser, never 0 (0 marks an empty slot)."""
    x = (x ^ (x >> _S30)) * _K1
    x = (x ^ (x >> _S27)) * _K2
    return (x ^ (x >> _S31)) | _ONE


@njit(cache=True, nogil=True)
def _slot(keys, key):
    """The slot of ``key`` in an open-addressing table (linear probing): its own or the empty one
    where it would go."""
    mask = np.uint64(len(keys) - 1)
    i = key & mask
    while keys[i] != _EMPTY and keys[i] != key:
        i = (i + _ONE) & mask
    return i


@njit(cache=True, nogil=True)
def _contexts(hist, n_hist, path, depth, order, out):
    """The keys of the contexts of orders 0 .. of the byte after ``hist[:n_hist] + path[:depth]``
    into ``out``; returns how many orders exist."""
    h = _B
    out[0] = _mix(h)
    for n in range(1, order + 1):
        pos = n_hist + depth - n
        if pos < 0:
            return n
        b = path[pos - n_hist] if pos >= n_hist else hist[pos]
        h = h * _B + np.uint64(b) + _ONE
        out[n] = _mix(h + np.uint64(n))
    return order + 1


@njit(cache=True, nogil=True, inline="always")
def _pair(ctx, b):
    return _mix(ctx ^ (np.uint64(b + 1) * _K2))


@njit(cache=True, nogil=True)
def _count(hist, start, stop, order, ctx_keys, totals, distinct, pair_keys, pairs, sign, keys_buf):
    """Count (sign = 1) or uncount (sign = -1, newest first) the bytes hist[start:stop]; returns the
    number of new keys."""
    new = 0
    for k in range(stop - start):
        i = stop - 1 - k if sign < 0 else start + k
        m = _contexts(hist, i, hist, 0, order, keys_buf)
        for n in range(m):
            s = _slot(ctx_keys, keys_buf[n])
            if ctx_keys[s] == _EMPTY:
                ctx_keys[s] = keys_buf[n]
                new += 1
            j = _slot(pair_keys, _pair(keys_buf[n], hist[i]))
            if pair_keys[j] == _EMPTY:
                pair_keys[j] = _pair(keys_buf[n], hist[i])
                new += 1
            if sign > 0 and pairs[j] == 0:
                distinct[s] += 1
            pairs[j] += sign
            totals[s] += sign
            if sign < 0 and pairs[j] == 0:
                distinct[s] -= 1
    return new


@njit(cache=True, nogil=True)
def _walk(hist, n_hist, order, prune, delta, beta, starts, edge_byte, edge_node, node_token, stops, passes,
          sigma0, alpha, ctx_keys, totals, distinct, pair_keys, pairs, target, dense, work_keys, stack_node, stack_p,
          stack_depth, stack_byte, path):
    """The walk of the module docstring: q(t) into ``dense`` (zeroed here; length A) unless it is
    empty; returns (q(target), Z)."""
    for i in range(len(dense)):
        dense[i] = 0.0
    z, q_target, top = 0.0, 0.0, 0
    stack_node[0], stack_p[0], stack_depth[0], stack_byte[0] = 0, 1.0, 0, 0
    top = 1
    tot = np.empty(order + 1)
    dis = np.empty(order + 1)
    slots = np.empty(order + 1, np.int64)
    while top > 0:
        top -= 1
        v, pv, d = stack_node[top], stack_p[top], stack_depth[top]
        if d > 0:
            path[d - 1] = stack_byte[top]
        more = 0.0
        sigma = 0.0 if d == 0 else (stops[v] + alpha * sigma0) / (stops[v] + passes[v] + alpha)
        if starts[v + 1] > starts[v]:
            m = _contexts(hist, n_hist, path, d, order, work_keys)
            for n in range(m):
                s = _slot(ctx_keys, work_keys[n])
                slots[n], tot[n], dis[n] = s, totals[s], distinct[s]
            for e in range(starts[v], starts[v + 1]):
                b = edge_byte[e]
                p = 1.0 / 256.0
                for n in range(m):
                    if tot[n] > 0.0:
                        c = pairs[_slot(pair_keys, _pair(work_keys[n], b))]
                        p = (max(c - delta, 0.0) + (delta + beta) * dis[n] * p) / (tot[n] + beta * dis[n])
                more += p
                pc = pv * p * (1.0 - sigma)
                u = edge_node[e]
                if pc >= prune:
                    stack_node[top], stack_p[top], stack_depth[top], stack_byte[top] = u, pc, d + 1, b
                    top += 1
                elif node_token[u] >= 0:
                    z += pc
                    if node_token[u] == target:
                        q_target = pc
                    if len(dense):
                        dense[node_token[u]] = pc
        t = node_token[v]
        if d > 0 and t >= 0:
            q = pv * (max(0.0, 1.0 - more) + sigma * more)
            z += q
            if t == target:
                q_target = q
            if len(dense):
                dense[t] = q
    return q_target, z


@njit(cache=True, nogil=True)
def _child(starts, edge_byte, edge_node, v, b):
    """The child of node v along byte b, or -1."""
    lo, hi = starts[v], starts[v + 1]
    while lo < hi:
        mid = (lo + hi) // 2
        if edge_byte[mid] < b:
            lo = mid + 1
        else:
            hi = mid
    return edge_node[lo] if lo < starts[v + 1] and edge_byte[lo] == b else -1


@njit(cache=True, nogil=True)
def _tokenizer_counts(word, prev, starts, edge_byte, edge_node, stops, passes, totals, sign):
    """The tokenizer's choices a token shows: the previous token's node ``prev`` stopped (counted if
    the token's first byte could have gone on inside the vocabulary), and the token went on through
    each of its proper prefixes. Returns the token's node."""
    if prev > 0 and _child(starts, edge_byte, edge_node, prev, word[0]) >= 0:
        stops[prev] += sign
        totals[0] += sign
    v = 0
    for i in range(len(word)):
        if i > 0:
            passes[v] += sign
            totals[1] += sign
        v = _child(starts, edge_byte, edge_node, v, word[i])
    return v


def _trie(spellings: Sequence[bytes]):
    """CSR arrays of the vocabulary's byte trie: children of node v are edges starts[v] ..
    starts[v+1]-1 (byte, node); node_token[v] the token spelling the node's bytes, else -1 (the
    first id where two spell the same bytes); node 0 is the root (no bytes)."""
    children, token = [{}], [-1]
    for tid, word in enumerate(spellings):
        v = 0
        for b in word:
            nxt = children[v].get(b)
            if nxt is None:
                nxt = children[v][b] = len(children)
                children.append({})
                token.append(-1)
            v = nxt
        if v and token[v] < 0:
            token[v] = tid
    starts = np.zeros(len(children) + 1, np.int64)
    starts[1:] = np.cumsum([len(c) for c in children])
    edge_byte = np.array([b for c in children for b in sorted(c)], np.int64)
    edge_node = np.array([c[b] for c in children for b in sorted(c)], np.int64)
    return starts, edge_byte, edge_node, np.array(token, np.int64), max(map(len, spellings), default=0)


class ByteContext:
    """Next-token probabilities from a byte model of order ``order`` (module docstring), over the
    tokens ``spellings`` (the bytes each id spells: ``b""`` for none)."""

    def __init__(self, spellings: Sequence[bytes], order: int = 5, prune: float = 2.0 ** -20, delta: float = 0.0,
                 beta: float = 1.0, alpha: float = 2.0, learn_stops: bool = True):
        self.delta, self.beta, self.alpha, self.learn_stops = delta, beta, alpha, learn_stops
        if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or not 0 <= order <= 32:
            raise ValueError(f"order must be an int in [0, 32] (bytes of context), got {order!r}")
        if not (isinstance(prune, float) and 0.0 < prune < 1.0):
            raise ValueError(f"prune must be a float in (0, 1) (the walk's smallest path probability), got {prune!r}")
        if not spellings or not all(isinstance(s, bytes) for s in spellings):
            raise TypeError("spellings must be a non-empty sequence of bytes, one per token id")
        self.alphabet, self.order, self.prune = len(spellings), int(order), float(prune)
        self.spellings = list(spellings)
        *self._trie, self._longest = _trie(self.spellings)

    def bits(self, ids, start: int = 0) -> np.ndarray:
        """``-log2 p(ids[t] | ids[:t])`` for t = start .. len(ids)-1 (float64, bits): the coder's
        probabilities, from the same walk."""
        from .ngram import _as_ids, _whole
        ids = _as_ids(ids, self.alphabet)
        start = _whole(start, "start", 0, len(ids))
        st, out = self.state(), np.empty(len(ids) - start)
        a = self.alphabet
        for t, tok in enumerate(ids.tolist()):
            if t >= start:
                q, z = st._walk(tok, st._none)
                out[t - start] = -np.log2((1.0 - FLOOR) * (q / z) + FLOOR / a)
            st.absorb(tok)
        return out

    def state(self) -> "ByteContextState":
        """An empty incremental state."""
        return ByteContextState(self)


class ByteContextState:
    """Incremental :class:`ByteContext`: the absorbed bytes, the count tables, an undo mark."""

    def __init__(self, model: ByteContext):
        self.model = model
        self.alphabet, self._order = model.alphabet, model.order
        self._hist = np.zeros(1024, np.uint8)
        self._n, self._used, self._mark = 0, 0, None
        self._tables(1 << 12)
        self._keys = np.zeros(model.order + 1, np.uint64)
        depth = model._longest + 1
        size = max(1, len(model._trie[1])) + 1   # the stack never holds more than every edge
        self._stack = (np.zeros(size, np.int64), np.zeros(size), np.zeros(size, np.int64), np.zeros(size, np.int64),
                       np.zeros(depth, np.int64))
        self._none = np.zeros(0)
        self._dense = np.zeros(model.alphabet)
        n_nodes = len(model._trie[0]) - 1
        self._stops, self._passes, self._totals = np.zeros(n_nodes), np.zeros(n_nodes), np.zeros(2)
        self._nodes = []  # each absorbed token's trie node (the tokenizer's choices to undo)

    def _tables(self, size: int) -> None:
        self._ctx, self._tot, self._dis = np.zeros(size, np.uint64), np.zeros(size), np.zeros(size)
        self._pkeys, self._pairs = np.zeros(size, np.uint64), np.zeros(size)

    def _grow(self, extra: int) -> None:
        """Room for ``extra`` more keys at load <= 1/2: a larger table, the history counted again."""
        size = len(self._ctx)
        if 2 * (self._used + extra) <= size:
            return
        while 2 * (self._used + extra) > size:
            size *= 2
        self._tables(size)
        self._used = 0
        self._used = self._count(0, self._n, 1)

    def _count(self, start: int, stop: int, sign: int) -> int:
        return _count(self._hist, start, stop, self._order, self._ctx, self._tot, self._dis, self._pkeys,
                      self._pairs, sign, self._keys)

    def _walk(self, target: int, dense: np.ndarray):
        m = self.model
        sigma0 = (self._totals[0] + 1.0) / (self._totals[0] + self._totals[1] + 2.0) if m.learn_stops else 0.0
        return _walk(self._hist, self._n, self._order, m.prune, m.delta, m.beta, *m._trie, self._stops, self._passes,
                     sigma0, m.alpha, self._ctx, self._tot, self._dis,
                     self._pkeys, self._pairs, target, dense, self._keys, *self._stack)

    def __len__(self) -> int:
        return self._n

    def absorb(self, token) -> None:
        """Count the bytes ``token`` spells, then append them."""
        token = operator.index(token)
        if not 0 <= token < self.alphabet:
            raise ValueError(f"token must lie in [0, {self.alphabet}) (the model's alphabet); got {token}")
        word = self.model.spellings[token]
        if not word:
            return
        k = len(word)
        self._grow(2 * (self._order + 1) * k)
        if self._n + k > len(self._hist):
            self._hist = np.concatenate([self._hist, np.zeros(max(k, len(self._hist)), np.uint8)])
        self._hist[self._n:self._n + k] = np.frombuffer(word, np.uint8)
        self._used += self._count(self._n, self._n + k, 1)
        self._n += k
        if self.model.learn_stops:
            prev = self._nodes[-1] if self._nodes else 0
            self._nodes.append(_tokenizer_counts(self._hist[self._n - k:self._n], prev, *self.model._trie[:3],
                                                 self._stops, self._passes, self._totals, 1.0))

    def probs(self, out: Optional[np.ndarray] = None) -> np.ndarray:
        """The next-token distribution (float64, length A, sums to 1, all >= FLOOR / A)."""
        q = self._dense
        _, z = self._walk(-1, q)
        if out is None:
            out = np.empty(self.alphabet)
        np.divide(q, z, out=out)
        out *= 1.0 - FLOOR
        out += FLOOR / self.alphabet
        return out

    def mark(self) -> None:
        """Remember this point: :meth:`rollback` returns here (and the mark stays)."""
        self._mark = (self._n, len(self._nodes))

    def rollback(self) -> None:
        """Uncount every byte absorbed since the last :meth:`mark`."""
        if self._mark is None:
            raise RuntimeError("rollback() needs an earlier mark(): call mark() before the absorbs to undo")
        n, k = self._mark
        self._count(n, self._n, -1)
        ends = np.cumsum([0] + [len(self.model.spellings[self.model._trie[3][v]]) for v in self._nodes[k:]]) + n
        for i in range(len(self._nodes) - 1, k - 1, -1):
            a, b = ends[i - k], ends[i - k + 1]
            _tokenizer_counts(self._hist[a:b], self._nodes[i - 1] if i else 0, *self.model._trie[:3],
                              self._stops, self._passes, self._totals, -1.0)
        del self._nodes[k:]
        self._n = n
