"""Calibration of kolmo's significance tests: false-positive rate and power on synthetic data.

    python -m benchmarks.calibration [--trials 200] [--pool 99] [--pairs 20] [--seed 0] [--level 3]
                                     [--json out.json]

Prints one JSON object: the versions and machine (as every benchmark does), the settings, and the
share of p < 0.05 for :func:`kolmo.gap_test` and :func:`kolmo.pairing_test` with zstd at
``--level``, on items of 300-399 bytes of random words drawn (Zipf-like) from a shared 500-word
vocabulary (:func:`vocabulary`, :func:`random_text`):

* on independent pairs: the false-positive rate (gap_test: X, Y and a pool of ``--pool`` items
  drawn independently; pairing_test: ``--pairs`` independent pairs, 999 random permutations);
* on related pairs, where Y holds a random chunk of X (:func:`related`) of each size in
  ``gap_chunks`` (32 and 80 bytes) / ``pairing_chunks`` (8 and 16 bytes): the power.

The figures in :mod:`kolmo.significance`'s docstring were measured with ``--trials 1000``
(under two minutes on one core). The tests (tests/test_significance.py) draw their data from the
same generators.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np


def vocabulary(rng: np.random.Generator, size: int = 500) -> List[bytes]:
    """``size`` random lowercase words of 2 to 8 letters."""
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
    return [letters[rng.integers(0, 26, rng.integers(2, 9))].tobytes() for _ in range(size)]


def random_text(rng: np.random.Generator, vocab: Sequence[bytes], n_bytes: int) -> bytes:
    """Words drawn i.i.d. (Zipf-like weights) from ``vocab``, joined by spaces, cut to ``n_bytes``."""
    w = 1.0 / np.arange(1, len(vocab) + 1)
    words = rng.choice(len(vocab), size=n_bytes, p=w / w.sum())
    out = b" ".join(vocab[i] for i in words[: n_bytes // 2 + 1])
    return out[:n_bytes]


def related(rng: np.random.Generator, x: bytes, y: bytes, chunk: int) -> bytes:
    """``y`` with a random ``chunk``-byte piece of ``x`` inserted at a random place."""
    a = int(rng.integers(0, len(x) - chunk + 1))
    b = int(rng.integers(0, len(y) + 1))
    return y[:b] + x[a:a + chunk] + y[b:]


def calibrate(trials: int = 200, pool: int = 99, pairs: int = 20, seed: int = 0, level: int = 3,
              gap_chunks: Sequence[int] = (32, 80), pairing_chunks: Sequence[int] = (8, 16)) -> Dict[str, Any]:
    """Share of p < 0.05 for both tests on synthetic data (zstd at ``level``, items of 300-399 bytes
    of random words): on independent pairs (the false-positive rate) and on related pairs, where Y
    holds a random chunk of X of each size in ``gap_chunks`` / ``pairing_chunks`` (the power)."""
    from kolmo import gap_test, get_compressor, pairing_test
    rng = np.random.default_rng(seed)
    vocab = vocabulary(rng)
    comp = get_compressor("zstd", level=level)
    size = lambda: int(rng.integers(300, 400))  # noqa: E731
    out: Dict[str, Any] = {"trials": trials, "pool": pool, "pairs": pairs, "zstd_level": level}
    fp, pw = 0, dict.fromkeys(gap_chunks, 0)
    for _ in range(trials):
        x, y = random_text(rng, vocab, size()), random_text(rng, vocab, size())
        null = [random_text(rng, vocab, size()) for _ in range(pool)]
        fp += gap_test(x, y, null, comp, n_boot=0, cache=False).p_value < 0.05
        for c in gap_chunks:
            pw[c] += gap_test(x, related(rng, x, y, c), null, comp, n_boot=0, cache=False).p_value < 0.05
    out["gap_test_false_positive_rate"] = fp / trials
    out["gap_test_power"] = {f"chunk {c} bytes": v / trials for c, v in pw.items()}
    fp, pw = 0, dict.fromkeys(pairing_chunks, 0)
    for t in range(trials):
        xs = [random_text(rng, vocab, size()) for _ in range(pairs)]
        ys = [random_text(rng, vocab, size()) for _ in range(pairs)]
        kw = dict(n_perm=999, n_boot=0, cache=False, progress=False, seed=t)
        fp += pairing_test(xs, ys, comp, **kw).p_value < 0.05
        for c in pairing_chunks:
            pw[c] += pairing_test(xs, [related(rng, a, b, c) for a, b in zip(xs, ys)], comp, **kw).p_value < 0.05
    out["pairing_test_false_positive_rate"] = fp / trials
    out["pairing_test_power"] = {f"chunk {c} bytes": v / trials for c, v in pw.items()}
    return out


def main(argv=None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=200, help="trials per figure (default 200; 1000 for the docs)")
    p.add_argument("--pool", type=int, default=99, help="null pool of gap_test (default 99)")
    p.add_argument("--pairs", type=int, default=20, help="pairs per pairing_test (default 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--level", type=int, default=3, help="zstd level (default 3)")
    p.add_argument("--json", help="also write the result to this file")
    a = p.parse_args(argv)

    from ._env import environment
    res = {"benchmark": "calibration", "env": environment("cpu"),
           **calibrate(trials=a.trials, pool=a.pool, pairs=a.pairs, seed=a.seed, level=a.level)}
    print(json.dumps(res, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
