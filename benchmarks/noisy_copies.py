"""Calibration of conditional code lengths on noisy copies, where H(Y|X) is known.

    python -m benchmarks.noisy_copies [--n 8000] [--rates 0.01,0.1,0.3] [--alphabets 8,32]
                                      [--indel-rate 0.01] [--compressors zstd,lzma,zlib,bz2,ppmd,lm-online-scratch]
                                      [--lm] [--ratio-only] [--device cpu] [--threads 1] [--seed 0]
                                      [--out out.json]

X is ``n`` symbols drawn i.i.d. uniformly from an alphabet of A symbols (bytes 0 .. A-1); Y copies
X through a noisy channel:

* **substitution** at rate r: each symbol is replaced, with probability r, by one of the A - 1
  *other* symbols, uniformly. Then, in bits,

      H(Y|X) = n (h(r) + r log2(A - 1)),   h(r) = -r log2 r - (1 - r) log2(1 - r),

  Y is uniform like X, so I(X;Y) = H(Y) - H(Y|X) = n log2 A - H(Y|X);
* **indel** at rate d: before each symbol of X a uniformly random symbol is inserted with
  probability d, and each symbol of X is deleted with probability d (independently). Y is a
  function of X and these choices, so H(Y|X) <= H(choices) = n (2 h(d) + d log2 A), the bound
  reported (the true H(Y|X) is smaller by what the choices leave ambiguous, e.g. which of two equal
  neighbours was deleted); its C(Y|X) / bound is a lower bound on C(Y|X) / H(Y|X).

For every compressor, from :func:`kolmo.joint_gap`: C(Y|X) = C(XY) - C(X) in bits, its ratio to
H(Y|X) (1.00 is perfect; below 1 only by chance on one draw of the noise, or for indels), and
the gap C(X) + C(Y) - C(XY) against the true I(X;Y) (ratio and difference, bits; indels: against
the lower bound ``n log2 A - bound`` on I, with Y's length in place of n where they differ).

Compressors: zstd, lzma, zlib, bz2, ppmd, and ``lm-online-scratch`` (lm-online with
``model="scratch"``, the default mixture: learner, n-grams, match model); ``--lm`` adds ``lm``
(the pretrained default model alone), ``lm-match`` (``lm`` with ``match=True``: mixed with the
match model) and ``lm-online`` with the pretrained default model (slow on a CPU).
``--ratio-only`` measures only C(Y|X) (``compressor.conditional_bits(y, x)``: for ``lm`` and
``lm-online`` a third or less of ``joint_gap``'s work) and leaves out the gap. Every figure is printed beside
the versions and the device (:mod:`benchmarks._env`); ``--out`` writes the whole result as JSON
(benchmarks/saved/noisy_copies.json holds a run).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np

from ._env import environment

CLASSICAL = ["zstd", "lzma", "zlib", "bz2", "ppmd"]
SCRATCH = "lm-online-scratch"


def binary_entropy(r: float) -> float:
    """h(r) in bits (0 at r = 0 or 1)."""
    return 0.0 if r <= 0.0 or r >= 1.0 else -r * math.log2(r) - (1 - r) * math.log2(1 - r)


def substitution_entropy(alphabet: int, r: float) -> float:
    """H(Y|X) per symbol in bits when each symbol is replaced w.p. r by a uniform *other* symbol."""
    return binary_entropy(r) + (r * math.log2(alphabet - 1) if alphabet > 1 else 0.0)


def indel_bound(alphabet: int, d: float) -> float:
    """An upper bound on H(Y|X) per symbol of X in bits for :func:`indel_copy`: the entropy of its
    choices, 2 h(d) + d log2 A."""
    return 2 * binary_entropy(d) + d * math.log2(alphabet)


def substituted_copy(alphabet: int, r: float, n: int, seed: int) -> Tuple[bytes, bytes]:
    """(X, Y): X uniform i.i.d.; Y = X with each symbol replaced w.p. r by a uniform other symbol."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, alphabet, n)
    hit = rng.random(n) < r
    y = x.copy()
    y[hit] = (x[hit] + rng.integers(1, alphabet, int(hit.sum()))) % alphabet
    return x.astype(np.uint8).tobytes(), y.astype(np.uint8).tobytes()


def indel_copy(alphabet: int, d: float, n: int, seed: int) -> Tuple[bytes, bytes]:
    """(X, Y): X uniform i.i.d.; Y = X with a uniform symbol inserted before each symbol w.p. d and
    each symbol deleted w.p. d."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, alphabet, n)
    insert, delete = rng.random(n) < d, rng.random(n) < d
    extra = rng.integers(0, alphabet, n)
    y: List[int] = []
    for i in range(n):
        if insert[i]:
            y.append(int(extra[i]))
        if not delete[i]:
            y.append(int(x[i]))
    return x.astype(np.uint8).tobytes(), bytes(y)


def cases(n: int, rates, alphabets, indel: float, seed: int) -> List[Dict[str, Any]]:
    """Every case: its name, X, Y, H(Y|X) (or the bound), whether that is exact, and the true I (or its bound)."""
    out = []
    for a in alphabets:
        for r in rates:
            x, y = substituted_copy(a, r, n, seed)
            h = n * substitution_entropy(a, r)
            out.append({"case": f"substitute A={a} r={r}", "alphabet": a, "rate": r, "kind": "substitution",
                        "x": x, "y": y, "h_y_given_x": h, "exact": True, "true_mi": n * math.log2(a) - h})
        if indel > 0:
            x, y = indel_copy(a, indel, n, seed)
            h = n * indel_bound(a, indel)
            out.append({"case": f"indel A={a} d={indel}", "alphabet": a, "rate": indel, "kind": "indel",
                        "x": x, "y": y, "h_y_given_x": h, "exact": False,
                        "true_mi": len(y) * math.log2(a) - h})  # H(Y) <= |Y| log2 A: a bound, as h is
    return out


def make(name: str, a) -> Any:
    import kolmo
    if name == SCRATCH:
        return kolmo.get_compressor("lm-online", model="scratch", device=a.device, progress=False)
    if name in ("lm", "lm-online"):
        return kolmo.get_compressor(name, device=a.device, progress=False)
    if name == "lm-match":
        return kolmo.get_compressor("lm", device=a.device, match=True, progress=False)
    return kolmo.get_compressor(name)


def measure(comp, case: Dict[str, Any], ratio_only: bool = False) -> Dict[str, Any]:
    import kolmo
    t = time.perf_counter()
    if ratio_only:
        c = kolmo.conditional_bits(case["y"], case["x"], compressor=comp, progress=False)
        return {"c_y_given_x": c, "h_y_given_x": case["h_y_given_x"], "ratio": c / case["h_y_given_x"],
                "seconds": time.perf_counter() - t}
    r = kolmo.joint_gap(case["x"], case["y"], compressor=comp, progress=False)
    h, mi = case["h_y_given_x"], case["true_mi"]
    return {"c_x": r.c_x, "c_y": r.c_y, "c_xy": r.c_xy, "c_y_given_x": r.c_y_given_x,
            "h_y_given_x": h, "ratio": r.c_y_given_x / h, "gap": r.gap, "true_mi": mi,
            "gap_ratio": r.gap / mi, "mi_shortfall": mi - r.gap, "seconds": time.perf_counter() - t}


def _cell(v) -> str:
    return f"{v:18.3f}" if v is not None else f"{'-':>18s}"


def table(res: Dict[str, Any]) -> None:
    names = list(res["compressors"])
    print("\nC(Y|X) / H(Y|X)   (indel rows: / an upper bound on H(Y|X), so a lower bound on the ratio)")
    print(f"{'case':26s}" + "".join(f"{n:>18s}" for n in names))
    for c in res["cases"]:
        print(f"{c['case']:26s}" + "".join(f"{res['compressors'][n]['cases'][c['case']]['ratio']:18.3f}" for n in names))
    print("\ngap C(X)+C(Y)-C(XY) / true I(X;Y)   (indel rows: / a lower bound on I)")
    print(f"{'case':26s}" + "".join(f"{n:>18s}" for n in names))
    for c in res["cases"]:
        print(f"{c['case']:26s}" + "".join(_cell(res['compressors'][n]['cases'][c['case']].get('gap_ratio'))
                                            for n in names))
    env = res["env"]
    print(f"\nkolmo {env['kolmo']}, torch {env.get('torch')}, numpy {env['numpy']}, device {env['device']}, "
          f"threads {env.get('torch_threads')}, cpu kernels {env.get('cpu_kernels')}; n = {res['settings']['n']}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.noisy_copies", description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=8000, help="symbols of X (and of Y before indels); 50000 for the long run")
    p.add_argument("--rates", default="0.01,0.1,0.3", help="substitution rates r")
    p.add_argument("--alphabets", default="8,32", help="alphabet sizes A (2 .. 256)")
    p.add_argument("--indel-rate", type=float, default=0.01, help="insertion and deletion rate d (0: no indel rows)")
    p.add_argument("--compressors", default=",".join(CLASSICAL + [SCRATCH]))
    p.add_argument("--lm", action="store_true", help="add lm, lm-match and lm-online with the pretrained default "
                                                      "model (slow)")
    p.add_argument("--ratio-only", action="store_true", help="measure C(Y|X) only (no gap): faster for the LMs")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="write the result as JSON")
    a = p.parse_args(argv)
    rates = [float(v) for v in a.rates.split(",") if v]
    alphabets = [int(v) for v in a.alphabets.split(",") if v]
    if any(not 0 < r < 1 for r in rates) or any(not 2 <= v <= 256 for v in alphabets):
        p.error(f"rates must lie in (0, 1) and alphabets in [2, 256]; got {rates} and {alphabets}")
    names = [n for n in a.compressors.split(",") if n] + (["lm", "lm-match", "lm-online"] if a.lm else [])
    try:
        import torch
        torch.set_num_threads(a.threads)
    except ImportError:
        pass
    todo = cases(a.n, rates, alphabets, a.indel_rate, a.seed)
    res: Dict[str, Any] = {
        "benchmark": "noisy_copies", "argv": list(sys.argv[1:] if argv is None else argv),
        "env": environment(a.device),
        "settings": {"n": a.n, "rates": rates, "alphabets": alphabets, "indel_rate": a.indel_rate, "seed": a.seed,
                     "threads": a.threads, "ratio_only": a.ratio_only},
        "cases": [{**{k: v for k, v in c.items() if k not in ("x", "y")}, "len_y": len(c["y"])} for c in todo],
        "compressors": {}}
    for name in names:
        comp = make(name, a)
        sec: Dict[str, Any] = {"config": comp.config, "cases": {}}
        t = time.perf_counter()
        for c in todo:
            sec["cases"][c["case"]] = got = measure(comp, c, a.ratio_only)
            print(f"[{name} {c['case']}: C(Y|X) {got['c_y_given_x']:.0f} bits, {got['ratio']:.3f} x H(Y|X), "
                  f"{got['seconds']:.1f} s]", file=sys.stderr, flush=True)
        sec["seconds"] = time.perf_counter() - t
        res["compressors"][name] = sec
    table(res)
    if a.out:
        a.out.write_text(json.dumps(res, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
