"""Mix a benchmark run's saved per-part columns again, offline: other mixers, parts added or dropped.

``python -m benchmarks.mix_bench --save-columns PREFIX`` saves, for each run, every expert's
per-token bits (``-log2 p`` of the token that came, the expert alone) and the mixer's contexts
(the match model's buckets). The parts never see the mixture, so mixing those columns again with
other settings gives, float for float, what ``lm-online`` with those settings codes on the same
runs (the figure is an ideal code length, in bits)::

    python -m benchmarks.remix RUN.npz [--eta 0.1,0.02,1] [--share 1e-4] [--no-gate]
                               [--drop PART ...] [--add NAME=OTHER.npz[:COL] ...] [--replace PART=OTHER.npz[:COL] ...]

``--add`` and ``--replace`` take a column of another run of the same input (``COL``: a part's
name or a column number; default 0, the learner of a learner alone's run,
``--mix-opts '{"mix": ["learner"], ...}'``: the same blocks, so the same tokens); a conditional
run (X then XY, saved as "head", "x", "xy") gives C(Y|X) = C(XY) - C(X) with the mixer that read
the shared head, a single run ("xy") its total bits.
"""

from __future__ import annotations

import argparse
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

RUNS = ("head", "x", "xy")


def load(path: str) -> Tuple[Dict[str, tuple], List[str]]:
    """({run: (bits (T, K), contexts (T,) or None)}, the experts' names) of a saved run."""
    z = np.load(path)
    runs = {k: (z[f"{k}_bits"], z[f"{k}_ctx"] if f"{k}_ctx" in z else None) for k in RUNS if f"{k}_bits" in z}
    if "xy" not in runs:
        raise ValueError(f"{path} holds no run 'xy': expected a file of mix_bench --save-columns, got keys {sorted(z)}")
    k = next(iter(runs.values()))[0].shape[1]
    names = [str(n) for n in z["experts"]] if "experts" in z else [f"part{i}" for i in range(k)]
    return runs, names


def with_columns(runs: dict, names: Sequence[str], *, drop: Sequence[str] = (), add: Sequence[tuple] = (),
                 replace: Sequence[tuple] = ()) -> Tuple[dict, List[str]]:
    """The columns with ``drop`` removed (a part's name, "ngram" for every order), ``replace``'s
    (name, (other runs, column)) in place of the named one and ``add``'s appended; every run must
    have as many tokens in both."""
    names = list(names)
    for part in drop:
        if not any(n == part or (part == "ngram" and n.startswith("ngram")) for n in names):
            raise ValueError(f"--drop {part}: no such part in {names}")
    keep = [i for i, n in enumerate(names) if n not in drop and not ("ngram" in drop and n.startswith("ngram"))]
    for name, _ in replace:
        if name not in names:
            raise ValueError(f"--replace {name}: no such part in {names}")
    out = {}
    for key, (bits, ctx) in runs.items():
        cols = bits.copy()
        for name, other in replace:
            cols[:, names.index(name)] = _column(other, key, len(bits), name)
        extra = [_column(other, key, len(bits), name)[:, None] for name, other in add]
        out[key] = (np.hstack([cols[:, keep]] + extra), ctx)
    return out, [names[i] for i in keep] + [name for name, _ in add]


def _column(other: tuple, key: str, tokens: int, name: str) -> np.ndarray:
    runs, col = other
    if key not in runs or runs[key][0].shape[0] != tokens:
        got = runs[key][0].shape[0] if key in runs else "no such run"
        raise ValueError(f"{name}: run {key!r} must have {tokens} tokens, as the base run's, got {got} "
                         "(a run of another input or of other blocks)")
    return runs[key][0][:, col]


def mixed_bits(runs: dict, *, share: float, eta, gate: bool = True, sets: Optional[int] = None) -> float:
    """C(Y|X) = C(XY) - C(X) of a conditional run (the mixer reads the shared head first), or the
    total bits of a single run, mixed by :func:`kolmo.lm.mixing.mixer.new_mixer` with these settings."""
    from kolmo.lm.mixing.mixer import new_mixer
    k = next(iter(runs.values()))[0].shape[1]
    ctxs = [c for _, c in runs.values() if c is not None]
    if gate and sets is None:
        sets = int(max(int(c.max()) for c in ctxs if len(c)) + 1) if ctxs else 1
    mixer = new_mixer(k, sets=sets if gate else 1, share=share, eta=eta)

    def ctx(key):
        return runs[key][1] if gate else None
    if "head" in runs:
        mixer.run(runs["head"][0], ctx("head"))
    total = {key: float(mixer.copy().run(runs[key][0], ctx(key)).sum()) for key in ("x", "xy") if key in runs}
    return total.get("xy", 0.0) - total.get("x", 0.0)


def part_bits(runs: dict, names: Sequence[str]) -> Dict[str, float]:
    """Each expert alone: C(Y|X) (or the run's total) from its column."""
    xy = runs["xy"][0].sum(axis=0)
    x = runs["x"][0].sum(axis=0) if "x" in runs else np.zeros_like(xy)
    return dict(zip(names, (xy - x).tolist()))


def other_column(spec: str) -> tuple:
    """``FILE.npz[:COL]`` as (runs, column index): COL a part's name or a number (default 0)."""
    path, _, col = spec.partition(":") if not spec.endswith(".npz") else (spec, "", "")
    runs, names = load(path)
    if not col:
        return runs, 0
    if col in names:
        return runs, names.index(col)
    if col.isdigit() and int(col) < len(names):
        return runs, int(col)
    raise ValueError(f"{spec}: no column {col!r}; the file has {names}")


def _named(text: str) -> tuple:
    name, sep, spec = text.partition("=")
    if not sep or not name or not spec:
        raise argparse.ArgumentTypeError(f"expected NAME=FILE.npz[:COL], got {text!r}")
    return name, other_column(spec)


def _eta(text: str):
    vals = [float(v) for v in text.split(",")]
    return vals[0] if len(vals) == 1 else tuple(vals)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a file of python -m benchmarks.mix_bench --save-columns")
    p.add_argument("--eta", type=_eta, default=0.1, help="Soft-Bayes rate, or rates with commas (a stack)")
    p.add_argument("--share", type=float, default=1e-4)
    p.add_argument("--no-gate", action="store_true", help="one weight set (the default: one per match bucket)")
    p.add_argument("--drop", action="append", default=[], metavar="PART")
    p.add_argument("--add", action="append", type=_named, default=[], metavar="NAME=FILE[:COL]")
    p.add_argument("--replace", action="append", type=_named, default=[], metavar="PART=FILE[:COL]")
    a = p.parse_args(argv)
    runs, names = load(a.run)
    runs, names = with_columns(runs, names, drop=a.drop, add=a.add, replace=a.replace)
    bits = mixed_bits(runs, share=a.share, eta=a.eta, gate=not a.no_gate)
    what = "C(Y|X)" if "x" in runs else "C"
    print("parts alone: " + ", ".join(f"{n} {v:.1f}" for n, v in part_bits(runs, names).items()))
    print(f"mixture (eta {a.eta}, share {a.share}{', one weight set' if a.no_gate else ''}): {what} = {bits:.1f} bits (ideal)")
    return bits


if __name__ == "__main__":
    main()
