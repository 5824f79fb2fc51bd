"""Online mixing of K predictors' next-token distributions: fixed-share exponential weights.

At each token t the mixture codes with

    p_t(x) = sum_k  w_{t,k} p_{t,k}(x)                                    (a linear mixture)

where p_{t,k} is expert k's distribution and w_t the weights of the *weight set* s_t chosen by
a small context (``contexts``: for example the match model's length bucket, as PAQ's mixers pick
a weight set by context; one set when no context is given). After the token x_t is known, only
that set is updated, in two steps:

    v_k  = (1 - eta) w_k + eta w_k p_{t,k}(x_t) / sum_j w_j p_{t,j}(x_t)        (Soft-Bayes)
    w_k <- (1 - share) v_k + share / K                                      (fixed share)

``eta = 1`` is Bayes' rule. With ``share = 0`` its code length is at most the best expert's +
log2 K bits over the whole input. ``eta < 1`` is Orseau, Lattimore and Legg's Soft-Bayes (2017):
it competes with the best *fixed mixture* of the experts, not only the best single one, with a
regret that grows like sqrt(T) instead of a constant; it wins when the experts are complementary.
The fixed share of Herbster and Warmuth (1998) bounds how far a weight can fall: with
``share = a`` the code length is at most the best *sequence* of experts' with m switches +
``(m + 1) log2 K + m log2(1 / a) + T log2(1 / (1 - a))`` (eta = 1). That is what a conditional
code C(Y | X) = C(XY) - C(X) needs: an expert that lost on X starts Y with a weight of at least
``share / K``, not with the vanishing weight of a Bayesian mixture, so the mixture follows the
locally best expert into Y at a cost of about log2(K / share) bits per switch.

Weights are Python floats (IEEE float64) updated with + - * / only (no exp or pow, whose last bit
may depend on the C library), in one fixed order, by :class:`MixerState`, which
the ideal code lengths (:meth:`MixerState.run` over the experts' bits) and the real coder (one
:meth:`MixerState.update` per coded token) share: the same operations on the same inputs give the
same weights on every machine. The real coder's expert probabilities come from its one-token
steps, the ideal's from batched passes, so the two agree to float tolerance, not bit for bit.

A *stack* (:class:`MixerStack`, ``eta`` a tuple) runs one such mixer per rate ``eta_n`` on the same
weight sets and mixes their mixtures with a Bayes mixer of its own (one set, share ``TOP_SHARE``,
eta 1), the linear counterpart of PAQ's two-layer mixer network::

    p_t(x) = sum_n v_{t,n} sum_k w^(n)_{t,k} p_{t,k}(x)  =  sum_k (sum_n v_{t,n} w^(n)_{t,k}) p_{t,k}(x)

so it is one linear mixture with effective weights sum_n v_n w^(n)_k, coded like a single mixer's.
No rate is best everywhere (Soft-Bayes' slow rates win on long complementary stretches, Bayes'
rule where one expert dominates); the top mixer follows the best of them, with the fixed-share
bound over the N mixers: at most the best mixer's + log2 N bits + T log2(1 / (1 - TOP_SHARE)),
plus ``log2(N / TOP_SHARE)`` per switch of the best mixer.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np

from ...options import check_int

#: the default share: about 13 bits per switch of the best expert with 4 experts, 1.4e-4 bits per token
SHARE = 1e-4
#: a stack's top mixer's share: the mixers are few and each follows its experts, so the top switches
#: freely (benchmarks/saved/default_sweeps.json, top_share)
TOP_SHARE = 1e-2


class MixerState:
    """The weights of ``sets`` weight sets over ``experts`` predictors (module docstring)."""

    def __init__(self, experts: int, *, sets: int = 1, share: float = SHARE, eta: float = 1.0,
                 prior: Optional[Sequence[float]] = None):
        check_int("experts", experts)
        check_int("sets", sets)
        if prior is not None and (len(prior) != experts
                                  or not all(isinstance(v, (int, float)) and v > 0 for v in prior)):
            raise ValueError(f"prior must hold {experts} positive numbers (the starting weights), got {prior!r}")
        if not (isinstance(share, (int, float)) and 0.0 <= share < 1.0):
            raise ValueError(f"share must be a number in [0, 1), got {share!r}")
        if not (isinstance(eta, (int, float)) and 0.0 < eta <= 1.0):
            raise ValueError(f"eta must be a number in (0, 1], got {eta!r}")
        self.experts, self.sets, self.share, self.eta = experts, sets, float(share), float(eta)
        start = [1.0 / experts] * experts if prior is None else [float(v) / float(sum(prior)) for v in prior]
        #: every set starts at ``prior`` normalised (uniform by default): the Bayes mixture's regret
        #: against expert k is at most log2(1 / w_k) bits per set at the start
        self.weights: List[List[float]] = [list(start) for _ in range(sets)]

    def copy(self) -> "MixerState":
        out = MixerState(self.experts, sets=self.sets, share=self.share, eta=self.eta)
        out.weights = [list(w) for w in self.weights]
        return out

    def _set(self, context: int) -> List[float]:
        if not 0 <= context < self.sets:
            raise ValueError(f"mixer context {context} is outside its {self.sets} weight sets")
        return self.weights[context]

    def mix(self, context: int) -> List[float]:
        """The weights the next token is coded with (a copy)."""
        return list(self._set(context))

    def update(self, context: int, probs: Sequence[float]) -> float:
        """Learn from one coded token: ``probs[k]`` is expert k's probability of it (> 0). Returns
        the mixture's probability of the token, ``sum_k w_k probs[k]``, before the update."""
        w = self._set(context)
        k_all = range(self.experts)
        mixed = 0.0
        for k in k_all:
            mixed += w[k] * probs[k]
        if not mixed > 0.0:  # every expert gave the token probability 0: keep the weights
            return mixed
        eta, keep, even = self.eta, 1.0 - self.share, self.share / self.experts
        for k in k_all:
            w[k] = keep * ((1.0 - eta) * w[k] + eta * (w[k] * probs[k] / mixed)) + even
        return mixed

    def run(self, expert_bits: np.ndarray, contexts: Optional[np.ndarray] = None) -> np.ndarray:
        """Code lengths in bits of a run of tokens, learning as it goes: ``expert_bits`` (T, K)
        holds each expert's -log2 p of each token; ``contexts`` (T,) each token's weight set
        (default 0). Returns (T,) float64: -log2 sum_k w_k 2^(-bits_k), w before each update."""
        return _run(self, expert_bits, contexts)


def _run(mixer, expert_bits, contexts) -> np.ndarray:
    bits = np.asarray(expert_bits, dtype=np.float64)
    if bits.ndim != 2 or bits.shape[1] != mixer.experts:
        raise ValueError(f"expert_bits must be (tokens, {mixer.experts}), got shape {bits.shape}")
    T = bits.shape[0]
    ctx = np.zeros(T, dtype=np.int64) if contexts is None else np.asarray(contexts, dtype=np.int64)
    if ctx.shape != (T,):
        raise ValueError(f"contexts must be ({T},), got shape {ctx.shape}")
    probs = np.exp2(-bits).tolist()
    out = np.empty(T)
    update = mixer.update
    for t, (c, p) in enumerate(zip(ctx.tolist(), probs)):
        out[t] = update(c, p)
    with np.errstate(divide="ignore"):
        return -np.log2(out)


class MixerStack:
    """One :class:`MixerState` per rate in ``etas`` over the same experts and weight sets, mixed by
    a Bayes mixer with share ``top_share`` (module docstring); :class:`MixerState`'s interface."""

    def __init__(self, experts: int, *, sets: int = 1, share: float = SHARE, etas: Sequence[float],
                 top_share: float = TOP_SHARE):
        if not isinstance(etas, (tuple, list)) or len(etas) < 2:
            raise ValueError(f"a stack mixes at least two mixers: etas must be a tuple of two or more rates, got {etas!r}")
        self.members = [MixerState(experts, sets=sets, share=share, eta=e) for e in etas]
        self.top = MixerState(len(etas), share=top_share)
        self.experts, self.sets, self.share, self.etas = experts, sets, float(share), tuple(float(e) for e in etas)

    def copy(self) -> "MixerStack":
        out = MixerStack.__new__(MixerStack)
        out.__dict__.update(self.__dict__)
        out.members, out.top = [m.copy() for m in self.members], self.top.copy()
        return out

    def mix(self, context: int) -> List[float]:
        """The effective weights ``sum_n v_n w^(n)_k`` the next token is coded with, summed over
        n = 0, 1, ... in order."""
        v = self.top.weights[0]
        sets = [m.mix(context) for m in self.members]
        out = [0.0] * self.experts
        for n, w in enumerate(sets):
            vn = v[n]
            for k in range(self.experts):
                out[k] += vn * w[k]
        return out

    def update(self, context: int, probs: Sequence[float]) -> float:
        """Each mixer learns from the token, then the top mixer from their probabilities of it.
        Returns the stack's probability of the token, ``sum_n v_n p_n``, before the updates."""
        return self.top.update(0, [m.update(context, probs) for m in self.members])

    def run(self, expert_bits: np.ndarray, contexts: Optional[np.ndarray] = None) -> np.ndarray:
        """As :meth:`MixerState.run`: -log2 of the stack's probability of each token."""
        return _run(self, expert_bits, contexts)


def new_mixer(experts: int, *, sets: int = 1, share: float = SHARE, eta=1.0):
    """A :class:`MixerState` (``eta`` a number) or a :class:`MixerStack` (``eta`` a tuple of rates)."""
    if isinstance(eta, (tuple, list)):
        return MixerStack(experts, sets=sets, share=share, etas=eta)
    return MixerState(experts, sets=sets, share=share, eta=eta)
