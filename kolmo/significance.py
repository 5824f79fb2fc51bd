"""Is a gap more than chance? Permutation-style tests for the gap, in bits.

A gap ``C(X) + C(Y) - C(XY)`` is positive for almost any two texts of the same kind: they share
an alphabet, common words, a format. The question is whether X tells about Y *more than X tells
about comparable items that are unrelated to it*. Both tests answer it against a null built from
such items, so the null keeps everything generic (length, language, format) and breaks only the
dependence between X and Y:

:func:`gap_test` (one pair, a pool of comparable items)
    ``null`` holds items comparable to Y but unrelated to X (other documents of the same kind and
    about the same length). The null distribution is ``gap(X, Z)`` for every Z in the pool; the
    p-value is ``(1 + #{Z: gap(X, Z) >= gap(X, Y)}) / (1 + n)``. When Y and the pool items are
    exchangeable given X (the null hypothesis), this p-value is valid: P(p <= a) <= a.
:func:`pairing_test` (paired corpora, ``xs[i] <-> ys[i]``)
    The statistic is the mean gap over the true pairs. The null re-pairs the corpora at random:
    ``mean_i gap(xs[i], ys[perm[i]])``. All n x n gaps are computed once (n^2 joint compressions,
    through the results cache), so each permutation costs an index lookup, not a compression.
    ``permutation="random"`` (the default) draws uniform random permutations: an exact test when
    the pairs are exchangeable under the null. ``permutation="derangement"`` draws permutations
    without fixed points, so every null pairing is wrong everywhere and the null mean is the mean
    over unrelated pairs (a little more power and a cleaner effect size; the p-value is then
    approximate, the difference vanishing as n grows).

Both p-values are one-sided: the alternative is "X tells about Y", a gap *larger* than the null.
Null draws within a relative 1e-9 of the observed statistic count as ties (``>=``), so sums of the
same numbers in another order never make a test anti-conservative.

What is **not** a null: shuffling Y's lines (or words) and measuring gap(X, shuffled Y). The
project's notebooks found that dictionary coders (zstd, zlib, LZMA, ...) still match whole lines
of the shuffled Y against X, so the "null" gap stays almost as large as the real one and the test
loses all power, while for a language model shuffling also destroys Y's own structure. Only items
that are unrelated to X by construction (other documents, re-pairings) break the dependence, so
those are the only nulls offered here.

Confidence intervals are percentile bootstraps (``n_boot`` resamples, ``confidence`` level):

* ``gap_test``: of the effect ``gap(X, Y) - mean null gap``, resampling the null pool with
  replacement (the observed pair is a single draw: the interval reflects how well the pool pins
  down the null mean, not the variability of gap(X, Y) itself).
* ``pairing_test``: of the mean gap over true pairs, resampling the pairs with replacement.

Effect sizes: ``effect`` = observed - null mean (bits), ``effect_sd`` = effect / null standard
deviation (the null's sample standard deviation, ddof=1).

Calibration (zstd level 3, items of 300-399 bytes of random words drawn from a shared 500-word
vocabulary, 1000 trials each; figures are the share of p < 0.05), measured by the experiment in
``benchmarks/calibration.py``, ``python -m benchmarks.calibration --trials 1000`` from a checkout:

* ``gap_test``, pool of 99: false-positive rate 0.032 on independent pairs (nominal 0.04: p < 0.05
  means at most 3 of 99 null gaps reach the observed one); power 0.621 when Y holds a random
  32-byte chunk of X, 1.000 for an 80-byte chunk.
* ``pairing_test``, 20 pairs, 999 random permutations: false-positive rate 0.041 on independent
  corpora; power 0.489 when each ys[i] holds an 8-byte chunk of xs[i], 1.000 for 16 bytes.
  With ``permutation="derangement"``: false-positive rate 0.052 over 500 corpora.

Works with every compressor (only ``bits_many`` and ``joint_bits`` of the public interface are
used, through the same engine and cache keys as ``kolmo.matrix(..., measure="gap")``), so a re-run,
or a test after a gap matrix over the same items, computes nothing new.
"""

from __future__ import annotations

import json
import math
import warnings
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from .cache import ResultsCache
from .compressors.base import Compressor
from .errors import KolmoWarning
from .inputs import Data, as_collection, as_dataset
from .matrices import CodeLengths
from .options import check_int
from .measures import warn_window
from .registry import resolve

CacheLike = Union[bool, str, Path, ResultsCache, None]
PERMUTATIONS = ("random", "derangement")
_TIE = 1e-9  # relative tolerance under which a null draw counts as equal to the observed value


@dataclass(frozen=True, repr=False)
class _TestResult:
    """The fields, properties, ``to_dict`` and repr that the two test results share."""

    observed: float
    null_mean: float
    null_sd: float
    n_null: int
    p_value: float
    ci: Optional[Tuple[float, float]]
    confidence: float
    ci_of: str
    compressor: str
    config: Dict[str, Any]
    bits_kind: str
    n_boot: int
    seed: Optional[int]
    warnings: Tuple[str, ...] = ()

    @property
    def effect(self) -> float:
        """Observed minus the null mean, in bits."""
        return self.observed - self.null_mean

    @property
    def effect_sd(self) -> float:
        """The effect in units of the null's standard deviation (inf or nan when that is 0)."""
        if self.null_sd > 0:
            return self.effect / self.null_sd
        return math.copysign(math.inf, self.effect) if self.effect else math.nan

    def to_dict(self) -> Dict[str, Any]:
        d: Dict[str, Any] = {"test": type(self).__name__}
        for f in self.__dataclass_fields__:  # type: ignore[attr-defined]
            v = getattr(self, f)
            d[f] = list(v) if isinstance(v, tuple) else v
        d.update(effect=self.effect, effect_sd=self.effect_sd, units="bits")
        return d

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def _lines(self, title: str, what: str) -> List[str]:
        kind = "real compressed sizes" if self.bits_kind == "compressed" else "ideal code lengths"
        ci = (f"[{self.ci[0]:.1f}, {self.ci[1]:.1f}]" if self.ci is not None else "not computed")
        lines = [f"{title}({self.compressor}, {kind}, bits)",
                 f"  observed  {self.observed:>12.1f}  {what}",
                 f"  null      {self.null_mean:>12.1f}  +- {self.null_sd:.1f} (mean +- sd of {self.n_null} draws)",
                 f"  effect    {self.effect:>12.1f}  = {self.effect_sd:.2f} null sd",
                 f"  p-value   {self.p_value:>12.4g}  one-sided: X tells about Y",
                 f"  {100 * self.confidence:g}% CI {ci} bits: {self.ci_of}"]
        lines += [f"  warning: {w}" for w in self.warnings]
        return lines


@dataclass(frozen=True, repr=False)
class GapTestResult(_TestResult):
    """:func:`gap_test`'s result: gap(X, Y) against gap(X, Z) for Z in a null pool (bits)."""

    null_gaps: Tuple[float, ...] = ()
    n_x: int = 0
    n_y: int = 0

    def __repr__(self) -> str:
        return "\n".join(self._lines("GapTestResult", "gap(X, Y) = C(X)+C(Y)-C(XY)"))


@dataclass(frozen=True, repr=False)
class PairingTestResult(_TestResult):
    """:func:`pairing_test`'s result: mean gap over true pairs against random re-pairings (bits)."""

    pair_gaps: Tuple[float, ...] = ()
    n_pairs: int = 0
    permutation: str = "random"
    gaps: Optional[np.ndarray] = field(default=None, compare=False)  # the n x n gaps, not in to_dict

    def to_dict(self) -> Dict[str, Any]:
        d = super().to_dict()
        d.pop("gaps", None)
        return d

    def __repr__(self) -> str:
        return "\n".join(self._lines("PairingTestResult",
                                     f"mean gap over {self.n_pairs} true pairs; null: {self.permutation} re-pairings"))


# -- argument checks -------------------------------------------------------------------------------
def _check_confidence(confidence: Any) -> float:
    if not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise ValueError(f"confidence must be a number in (0, 1), got {confidence!r}")
    return float(confidence)


def _percentiles(values: np.ndarray, confidence: float) -> Tuple[float, float]:
    a = (1.0 - confidence) / 2
    lo, hi = np.quantile(values, [a, 1.0 - a])
    return float(lo), float(hi)


def _p_value(null: np.ndarray, observed: float) -> float:
    tol = _TIE * max(1.0, abs(observed))
    return float((1 + np.count_nonzero(null >= observed - tol)) / (1 + len(null)))


def _sd(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


# -- the tests -------------------------------------------------------------------------------------
def gap_test(x: Data, y: Data, null: Any, compressor: Union[str, Compressor] = "zstd", *, n_boot: int = 1000,
             confidence: float = 0.95, seed: Optional[int] = None, cache: CacheLike = True, workers: int = 1,
             executor: Optional[Executor] = None, progress: bool = False, **options: Any) -> GapTestResult:
    """Does X tell about Y more than about comparable unrelated items? (see the module docstring)

    ``null``: items comparable to Y but unrelated to X (a list, a dict label -> item, or a folder;
    at least one, and 19 or more for a p-value that can fall below 0.05: the smallest possible p is
    1 / (1 + len(null))). Never a shuffle of Y: that is no null for dictionary coders.

    Returns a :class:`GapTestResult`: observed gap(X, Y), the null's mean and sd, the one-sided
    p-value (1 + #{gap(X, Z) >= gap(X, Y)}) / (1 + n), and a bootstrap CI of gap(X, Y) minus the null
    mean (resampling the pool). Code lengths come from the results cache when present (``cache``).
    """
    n_boot = check_int("n_boot", n_boot, 0)
    confidence = _check_confidence(confidence)
    comp = resolve(compressor, **options)
    bx, by = as_dataset(x, comp.document_separator, name="x")[0], as_dataset(y, comp.document_separator, name="y")[0]
    pool = as_collection(null, name="null")[1]
    if not pool:
        raise ValueError("null is empty: give at least one item comparable to y but unrelated to x "
                         "(19 or more for a p-value that can fall below 0.05)")
    if any(z == bx for z in pool):
        warnings.warn("the null pool contains x itself: gap(x, x) is no draw from a null of unrelated items",
                      KolmoWarning, stacklevel=2)
    found = warn_window(comp, len(bx) + max(len(by), *(len(z) for z in pool)), stacklevel=3)
    data = [bx, by, *pool]
    eng = CodeLengths(comp, data, cache=cache, workers=workers, executor=executor, progress=progress)
    S, J, _ = eng.run(range(len(data)), [(0, k) for k in range(1, len(data))], [])
    gaps = S[0] + S[1:] - J[0, 1:]
    observed, null_gaps = float(gaps[0]), gaps[1:]
    null_mean = float(null_gaps.mean())
    ci = None
    if n_boot:
        rng = np.random.default_rng(seed)
        m = len(null_gaps)
        means = np.empty(n_boot)
        step = max(1, (1 << 20) // m)
        for k in range(0, n_boot, step):
            b = min(step, n_boot - k)
            means[k:k + b] = null_gaps[rng.integers(0, m, (b, m))].mean(axis=1)
        ci = _percentiles(observed - means, confidence)
    return GapTestResult(
        observed=observed, null_mean=null_mean, null_sd=_sd(null_gaps), n_null=len(null_gaps),
        p_value=_p_value(null_gaps, observed), ci=ci, confidence=confidence,
        ci_of="gap(X, Y) minus the null mean, bootstrap over the null pool",
        null_gaps=tuple(null_gaps.tolist()), n_x=len(bx), n_y=len(by), compressor=comp.name,
        config=dict(comp.config), bits_kind=comp.bits_kind, n_boot=n_boot, seed=seed, warnings=found)


def _permutations(rng: np.random.Generator, n: int, count: int, derangement: bool) -> np.ndarray:
    """``count`` uniform random permutations of range(n) (rows); without fixed points if ``derangement``."""
    perms = rng.permuted(np.tile(np.arange(n), (count, 1)), axis=1)
    if derangement:
        bad = np.nonzero((perms == np.arange(n)).any(axis=1))[0]
        while len(bad):  # rejection: about e tries per derangement, each uniform among derangements
            perms[bad] = rng.permuted(np.tile(np.arange(n), (len(bad), 1)), axis=1)
            bad = bad[(perms[bad] == np.arange(n)).any(axis=1)]
    return perms


def pairing_test(xs: Any, ys: Any, compressor: Union[str, Compressor] = "zstd", *, n_perm: int = 9999,
                 permutation: str = "random", n_boot: int = 1000, confidence: float = 0.95,
                 seed: Optional[int] = None, cache: CacheLike = True, workers: int = 1,
                 executor: Optional[Executor] = None, progress: bool = True,
                 **options: Any) -> PairingTestResult:
    """Does each xs[i] tell about its own ys[i] more than about the others? (see the module docstring)

    ``xs``, ``ys``: paired corpora of equal length n >= 2 (lists, or dicts label -> item in pair
    order). The statistic is the mean of gap(xs[i], ys[i]); the null draws ``n_perm`` re-pairings
    (``permutation="random"``: uniform permutations, exact; ``"derangement"``: no item keeps its
    partner, approximate). The n x n gaps are computed once through the results cache (the same
    entries as ``kolmo.matrix(..., measure="gap")``), so permutations cost no compression and a
    re-run costs none at all.

    Returns a :class:`PairingTestResult`, whose ``gaps`` attribute holds the n x n matrix
    ``gaps[i, j] = gap(xs[i], ys[j])`` and whose ``ci`` is a bootstrap (over pairs) of the mean gap.
    """
    n_perm = check_int("n_perm", n_perm, 1)
    n_boot = check_int("n_boot", n_boot, 0)
    confidence = _check_confidence(confidence)
    if permutation not in PERMUTATIONS:
        raise ValueError(f"permutation must be one of {', '.join(PERMUTATIONS)}; got {permutation!r}")
    bx, by = as_collection(xs, name="xs")[1], as_collection(ys, name="ys")[1]
    if len(bx) != len(by):
        raise ValueError(f"xs and ys must pair up item for item: got {len(bx)} xs and {len(by)} ys")
    n = len(bx)
    if n < 2:
        raise ValueError(f"a pairing test needs at least 2 pairs to re-pair, got {n}")
    comp = resolve(compressor, **options)
    found = warn_window(comp, max(map(len, bx)) + max(map(len, by)), stacklevel=3)
    eng = CodeLengths(comp, bx + by, cache=cache, workers=workers, executor=executor, progress=progress)
    pairs = [(i, n + j) for i in range(n) for j in range(n)]
    S, J, _ = eng.run(range(2 * n), pairs, [])
    G = S[:n, None] + S[None, n:] - J[:n, n:]
    diag = np.diag(G).copy()
    observed = float(diag.mean())
    rng = np.random.default_rng(seed)
    null = np.empty(n_perm)
    step = max(1, (1 << 20) // n)
    rows = np.arange(n)
    for k in range(0, n_perm, step):
        b = min(step, n_perm - k)
        perms = _permutations(rng, n, b, permutation == "derangement")
        null[k:k + b] = G[rows, perms].mean(axis=1)
    ci = None
    if n_boot:
        means = np.empty(n_boot)
        for k in range(0, n_boot, step):
            b = min(step, n_boot - k)
            means[k:k + b] = diag[rng.integers(0, n, (b, n))].mean(axis=1)
        ci = _percentiles(means, confidence)
    return PairingTestResult(
        observed=observed, null_mean=float(null.mean()), null_sd=_sd(null), n_null=n_perm,
        p_value=_p_value(null, observed), ci=ci, confidence=confidence,
        ci_of="mean gap over true pairs, bootstrap over pairs", pair_gaps=tuple(diag.tolist()), n_pairs=n,
        permutation=permutation, compressor=comp.name, config=dict(comp.config), bits_kind=comp.bits_kind,
        n_boot=n_boot, seed=seed, warnings=found, gaps=G)
