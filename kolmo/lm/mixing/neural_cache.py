"""The neural cache: a mixture part that predicts the token which followed similar hidden states.

Every position the mixture has coded leaves a *key*, the frozen model's last hidden state there
(the state that predicted the token), scaled to unit length, and a *value*, the token that
followed. The next token ``x_t``, whose hidden state scaled to unit length is ``q_t``, gets (a continuous
cache, Grave, Joulin and Usunier 2017, over the whole input like kNN-LM, Khandelwal et al. 2020)::

    w_{t,j} = exp(theta * q_t . k_j) / sum_{i in J_t} exp(theta * q_t . k_i),   j in J_t
    p_t(v)  = (1 - eps) * sum_{j in J_t, x_j = v} w_{t,j} + eps / A                    (A tokens)

with ``J_t`` the last ``size`` positions before t that left a key (all of them when ``size`` is
None) and ``eps = FLOOR``, so that no token costs more than log2(A / eps) bits; with no key yet
``p_t`` is uniform. ``theta`` is large (cosine similarity times ``THETA`` = 150): in effect the tokens that
followed the nearest earlier states, so X's text in contexts the frozen model reads alike (the
same name, the same turn of phrase) is cheap in Y even where no n-gram of tokens repeats. A
memory of the *frozen* model's states, whose keys never move, is what makes the cache exact to
replay: it needs no training and the decoder rebuilds the same keys as it decodes.

Two ways to evaluate it, used by :mod:`kolmo.lm.mixing.mixture`:

``NeuralCache.bits(H, tokens)``   ideal code lengths of a run of positions from their hidden states
                                 (batched: query chunks against the keys, torch float32), keys added
``NeuralCache.probs(h)``          the coder's distribution (float64 on the host, (A,)) for one state;
                                 ``absorb(token)`` then adds that state's key

The two give the same figures up to float rounding (the keys come from the same windows; the
batched and the one-token passes of the model round differently). Exactness in coding is the
engine's: the row is a function of the frozen model's floats like that model's own row, computed
in the same order in encoder and decoder (a fixed torch matrix-vector product and softmax, then a
sequential float64 ``bincount``), and is recomputed, never replayed, in the encoder's verification run.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch

from ...options import check_float, check_int

#: the probability spread over every token (the cache's worst case is log2(A / FLOOR) bits; benchmarks/saved/default_sweeps.json, cache_floor)
FLOOR = 1e-3
#: the default inverse temperature (``lm-online``'s ``cache_theta``; benchmarks/saved/default_sweeps.json, cache_theta)
THETA = 150.0
#: positions per batched query in :meth:`NeuralCache.bits` (a (chunk, keys) float32 matrix)
QUERY_CHUNK = 256


class CacheSettings:
    """The cache's settings (module docstring): ``alphabet`` A, ``theta`` > 0 and ``size`` (most keys
    read; None: every earlier position)."""

    def __init__(self, alphabet: int, theta: float = THETA, size: Optional[int] = None):
        check_int("alphabet", alphabet, 2, what="tokens the neural cache predicts")
        check_float("cache_theta", theta)  # the inverse temperature on cosine similarity
        check_int("cache_size", size, none=True, what="the most recent keys read; None: all")
        self.alphabet, self.theta, self.size = alphabet, float(theta), size

    def state(self) -> "NeuralCache":
        """A new, empty cache for one run."""
        return NeuralCache(self)


class NeuralCache:
    """The keys and values of one run, growable, with a mark to roll back to (a block's start)."""

    def __init__(self, cache: CacheSettings):
        self.cache = cache
        self.keys: Optional[torch.Tensor] = None  # (capacity, d) float32, unit rows
        self.values = np.zeros(0, dtype=np.int64)
        self.n = 0
        self._mark = 0
        self._pending: Optional[torch.Tensor] = None  # the last probs() query, awaiting its token

    # -- bookkeeping --------------------------------------------------------------------------------
    @torch.inference_mode(False)  # plain tensors, written in and out of inference mode alike
    def _grow(self, need: int, d: int, like: torch.Tensor) -> None:
        if self.keys is None:
            self.keys = torch.zeros((max(need, 1024), d), dtype=torch.float32, device=like.device)
            self.values = np.zeros(len(self.keys), dtype=np.int64)
        elif need > len(self.keys):
            cap = max(need, 2 * len(self.keys))
            keys = torch.zeros((cap, d), dtype=torch.float32, device=self.keys.device)
            keys[:self.n] = self.keys[:self.n]
            values = np.zeros(cap, dtype=np.int64)
            values[:self.n] = self.values[:self.n]
            self.keys, self.values = keys, values

    def _add(self, keys: torch.Tensor, values: np.ndarray) -> None:
        m = len(values)
        self._grow(self.n + m, keys.shape[1], keys)
        self.keys[self.n:self.n + m] = keys
        self.values[self.n:self.n + m] = values
        self.n += m

    def truncate(self, n: int) -> None:
        """Forget every key after the first ``n``."""
        if not 0 <= n <= self.n:
            raise ValueError(f"the neural cache holds {self.n} keys; cannot keep {n}")
        self.n = n
        self._mark = min(self._mark, n)
        self._pending = None

    def mark(self) -> None:
        self._mark = self.n

    def rollback(self) -> None:
        self.truncate(self._mark)

    @staticmethod
    def unit(h: torch.Tensor) -> torch.Tensor:
        h = h.detach().float()
        return h / h.norm(dim=-1, keepdim=True).clamp_min(1e-30)

    # -- ideal code lengths -------------------------------------------------------------------------
    @torch.no_grad()
    def bits(self, hidden: torch.Tensor, tokens: np.ndarray) -> np.ndarray:
        """-log2 p_t(x_t) (float64, (T,)) of T positions from their hidden states ``hidden`` (T, d)
        and their tokens, in order, each reading the keys before it; their keys are then added."""
        c = self.cache
        tokens = np.asarray(tokens, dtype=np.int64)
        q = self.unit(hidden)
        if len(tokens) != len(q):
            raise ValueError(f"{len(q)} hidden states for {len(tokens)} tokens")
        base = self.n
        self._add(q, tokens)
        keys = self.keys[:self.n]
        vals = torch.from_numpy(self.values[:self.n]).to(keys.device)
        tok = torch.from_numpy(tokens).to(keys.device)
        p = torch.zeros(len(tokens), dtype=torch.float64)
        for a in range(0, len(tokens), QUERY_CHUNK):
            b = min(len(tokens), a + QUERY_CHUNK)
            pos = torch.arange(base + a, base + b, device=keys.device)  # each query's own position
            lo = 0 if c.size is None else max(0, base + a - c.size)
            s = (q[a:b] @ keys[lo:base + b].T) * c.theta  # (chunk, keys)
            j = torch.arange(lo, base + b, device=keys.device)
            readable = j[None, :] < pos[:, None]
            if c.size is not None:
                readable &= j[None, :] >= pos[:, None] - c.size
            s = s.masked_fill(~readable, -math.inf)
            w = torch.softmax(s, dim=1).nan_to_num_(0.0)  # a row with no keys: all zero (uniform below)
            hit = vals[lo:base + b][None, :] == tok[a:b, None]
            p[a:b] = (w * hit).sum(dim=1).double().cpu()
            empty = ~readable.any(dim=1)
            if bool(empty.any()):
                p[a:b][empty.cpu()] = 1.0 / c.alphabet  # uniform: (1 - eps)/A + eps/A
        p = (1.0 - FLOOR) * p.numpy() + FLOOR / c.alphabet
        return -np.log2(p)

    # -- the coder's distribution -------------------------------------------------------------------
    @torch.no_grad()
    def probs(self, h: torch.Tensor) -> np.ndarray:
        """p_t over the alphabet (float64, (A,)) for the hidden state ``h`` ((d,) or (1, d)); the
        next :meth:`absorb` adds its key with the token that followed."""
        c = self.cache
        q = self.unit(h.reshape(-1))
        self._pending = q
        if self.n == 0:
            return np.full(c.alphabet, 1.0 / c.alphabet)
        lo = 0 if c.size is None else max(0, self.n - c.size)
        w = torch.softmax(torch.mv(self.keys[lo:self.n], q) * c.theta, dim=0)
        row = np.bincount(self.values[lo:self.n], weights=w.double().cpu().numpy(), minlength=c.alphabet)
        return (1.0 - FLOOR) * row + FLOOR / c.alphabet

    def absorb(self, token: int) -> None:
        """Add the last :meth:`probs` query's key with ``token``, the token that followed it."""
        if self._pending is None:
            raise RuntimeError("the neural cache absorbs a token after the probs() that predicted it")
        self._add(self._pending[None], np.array([token], dtype=np.int64))
        self._pending = None
