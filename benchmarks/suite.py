"""kolmo's regression benchmarks: quality (bits) is checked, speed is reported.

    python -m benchmarks [--corpus DIR] [--compressors zstd,lzma,...] [--lm-bytes 1500]
                         [--out results.json] [--compare benchmarks/baseline.json] [--tolerance 0.02]

Sections, for every compressor:

bits_per_byte    on the default sources (no download: synthetic sources of known entropy and the
                 source text of Python modules every installation has), and on every file of
                 ``--corpus DIR``. Entries carry the true entropy where it is known.
calibration      pairs (X, Y) whose mutual information is known analytically: X uniform random
                 bytes, Y = X with each byte replaced by a uniform random byte with probability p,
                 so I(X;Y) = n (8 - H(Y|X)) bits with H(Y|X) = -q log2 q - (255 p / 256) log2(p / 256),
                 q = 1 - p + p / 256; and Y independent of X (I = 0). Reports the gap, the true I and
                 their ratio.
genesis          the gap between parallel translations of Genesis (``DIR/genesis``: English KJV
                 against English WEB, French, German, Finnish) against controls: the same Y with its
                 lines shuffled, and an unrelated text of the same size. Slices of ``--slice`` bytes.
speed            MB/s of ``bits()`` on one text, as a ratio to zlib level 6 (the standard library)
                 timed in the same run.

The language-model compressor runs on ``--lm-bytes`` slices only (CPU time is scarce: bits per
byte of three texts and the Genesis gaps on slices of that size, the calibration on a fifth of
it); give
``--lm-bytes 0`` to skip it, or larger slices on a GPU (``--device cuda``).

``--compare BASELINE`` fails (exit 1) when any bits-per-byte figure grows, or any gap shrinks,
by more than ``--tolerance`` (relative) against the baseline; timings are never compared.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from ._env import environment

CLASSICAL = ["zstd", "lzma", "zlib", "bz2", "ppmd"]


# -- sources ---------------------------------------------------------------------------------------
def synthetic_sources(n: int = 60_000, seed: int = 0) -> Dict[str, Dict[str, Any]]:
    """Byte strings with a known entropy rate in bits per byte."""
    rng = np.random.default_rng(seed)
    out: Dict[str, Dict[str, Any]] = {}
    out["uniform-bytes"] = {"data": rng.integers(0, 256, n, dtype=np.uint8).tobytes(), "entropy_bpb": 8.0}
    p = 0.5 ** np.arange(1, 17)
    p /= p.sum()
    out["geometric-16"] = {"data": rng.choice(16, n, p=p).astype(np.uint8).tobytes(),
                           "entropy_bpb": float(-(p * np.log2(p)).sum())}
    # an order-1 Markov chain over 4 symbols ('ACGT'), stationary start
    T = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1], [0.05, 0.05, 0.8, 0.1], [0.2, 0.2, 0.2, 0.4]])
    w, v = np.linalg.eig(T.T)
    pi = np.real(v[:, np.argmin(abs(w - 1))])
    pi /= pi.sum()
    s = np.empty(n, dtype=np.int64)
    s[0] = rng.choice(4, p=pi)
    u = rng.random(n)
    cum = T.cumsum(1)
    for i in range(1, n):
        s[i] = np.searchsorted(cum[s[i - 1]], u[i])
    rate = float(-(pi[:, None] * T * np.log2(T)).sum())
    out["markov-acgt"] = {"data": np.frombuffer(b"ACGT", dtype=np.uint8)[s].tobytes(), "entropy_bpb": rate}
    return out


def python_texts(limit: int = 60_000) -> Dict[str, Dict[str, Any]]:
    """Source text every Python installation has."""
    import difflib
    import json as _json
    import textwrap
    out = {}
    for mod in (difflib, textwrap, _json.decoder):
        data = Path(mod.__file__).read_bytes()[:limit]
        out[f"py-{mod.__name__}"] = {"data": data, "entropy_bpb": None}
    return out


def corpus_files(root: Optional[Path]) -> Dict[str, Dict[str, Any]]:
    if root is None:
        return {}
    if not root.is_dir():
        raise SystemExit(f"--corpus {root}: not a folder")
    return {str(p.relative_to(root)): {"data": p.read_bytes(), "entropy_bpb": None}
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith(".") and p.suffix != ".md"}


def substitution_mi(n: int, p: float) -> float:
    """I(X;Y) in bits for n uniform bytes X and Y = X with each byte replaced w.p. p by a uniform byte."""
    if p <= 0:
        return 8.0 * n
    q = 1 - p + p / 256
    h = -q * math.log2(q) - (255 * p / 256) * math.log2(p / 256)
    return n * (8.0 - h)


# -- measurements ----------------------------------------------------------------------------------
def make(name: str, args) -> Any:
    import kolmo
    if name == "lm":
        return kolmo.get_compressor("lm", device=args.device, progress=False)
    return kolmo.get_compressor(name)


def measure_bpb(comp, sources, lm_bytes: int) -> Dict[str, Any]:
    out = {}
    for key, src in sources.items():
        data = src["data"] if comp.name != "lm" else src["data"][:lm_bytes]
        if not data:
            continue
        bits = comp.bits(data)
        out[key] = {"bytes": len(data), "bits": bits, "bits_per_byte": bits / len(data),
                    "entropy_bpb": src["entropy_bpb"]}
    return out


def measure_calibration(comp, n: int) -> Dict[str, Any]:
    import kolmo
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, n, dtype=np.uint8)
    out = {}
    for p in (0.0, 0.05, 0.2, 0.5):
        y = x.copy()
        hit = rng.random(n) < p
        y[hit] = rng.integers(0, 256, int(hit.sum()), dtype=np.uint8)
        r = kolmo.joint_gap(x.tobytes(), y.tobytes(), compressor=comp)
        true = substitution_mi(n, p)
        out[f"substitute-p{p}"] = {"gap": r.gap, "true_mi": true, "ratio": r.gap / true}
    z = rng.integers(0, 256, n, dtype=np.uint8)
    r = kolmo.joint_gap(x.tobytes(), z.tobytes(), compressor=comp)
    out["independent"] = {"gap": r.gap, "true_mi": 0.0, "ratio": None, "gap_per_byte": r.gap / n}
    return out


def measure_genesis(comp, root: Optional[Path], size: int) -> Dict[str, Any]:
    import kolmo
    g = root / "genesis" if root else None
    if g is None or not g.is_dir():
        return {}
    x = (g / "english-kjv.txt").read_bytes()[:size]
    out = {}
    for other in ("english-web", "french", "german", "finnish"):
        y = (g / f"{other}.txt").read_bytes()[:size]
        lines = y.split(b"\n")
        random.Random(0).shuffle(lines)
        shuffled = b"\n".join(lines)
        row = {"related": kolmo.joint_gap(x, y, compressor=comp).gap,
               "shuffled_lines": kolmo.joint_gap(x, shuffled, compressor=comp).gap}
        out[f"kjv~{other}"] = row
    unrelated = (root / "canterbury-mixed" / "lcet10.txt")
    if unrelated.is_file():
        out["kjv~unrelated(lcet10)"] = {"related": kolmo.joint_gap(x, unrelated.read_bytes()[:size], compressor=comp).gap}
    return out


def measure_speed(comp, text: bytes, repeat: int = 3) -> Dict[str, Any]:
    import zlib

    def rate(f):
        best = float("inf")
        for _ in range(repeat):
            t = time.perf_counter()
            f()
            best = min(best, time.perf_counter() - t)
        return len(text) / best / 1e6

    base = rate(lambda: zlib.compress(text, 6))
    mine = rate(lambda: comp.bits(text))
    return {"bytes": len(text), "MB_per_s": mine, "baseline": "zlib.compress level 6", "baseline_MB_per_s": base,
            "ratio_to_baseline": mine / base}


# -- comparison ------------------------------------------------------------------------------------
def compare(new: Dict[str, Any], old: Dict[str, Any], tol: float) -> List[str]:
    """Quality regressions beyond ``tol`` (relative): larger bits/byte, smaller related gaps."""
    bad = []
    keys = ("lm_bytes", "slice", "calibration_bytes")
    same = all(new.get("settings", {}).get(k) == old.get("settings", {}).get(k) for k in keys)
    if not same:  # gaps depend on the sizes: only bits per byte of equal-sized inputs are comparable
        print(f"note: settings differ from the baseline's ({', '.join(keys)}); gaps are not compared")
    for comp, sec in old.get("compressors", {}).items():
        cur = new.get("compressors", {}).get(comp)
        if cur is None:
            continue
        for key, e in sec.get("bits_per_byte", {}).items():
            n = cur.get("bits_per_byte", {}).get(key)
            if n is not None and n["bytes"] == e["bytes"] and n["bits_per_byte"] > e["bits_per_byte"] * (1 + tol) + 1e-9:
                bad.append(f"{comp} {key}: {n['bits_per_byte']:.4f} bits/byte, baseline {e['bits_per_byte']:.4f}")
        for key, e in sec.get("calibration", {}).items() if same else ():
            n = cur.get("calibration", {}).get(key)
            if n is not None and e["true_mi"] > 0 and n["gap"] < e["gap"] - tol * abs(e["gap"]) - 1e-9:
                bad.append(f"{comp} calibration {key}: gap {n['gap']:.0f} bits, baseline {e['gap']:.0f}")
        for key, e in sec.get("genesis", {}).items() if same else ():
            n = cur.get("genesis", {}).get(key)
            if n is not None and "shuffled_lines" in e and n["related"] < e["related"] - tol * abs(e["related"]) - 1e-9:
                bad.append(f"{comp} genesis {key}: gap {n['related']:.0f} bits, baseline {e['related']:.0f}")
    return bad


def table(res: Dict[str, Any]) -> None:
    env = res["env"]
    print(f"kolmo benchmarks  [kolmo {env['kolmo']}, python {env['python']}, numpy {env['numpy']}, "
          f"zstandard {env['zstandard']}, torch {env['torch']}, device {env['device']}]")
    for name, sec in res["compressors"].items():
        print(f"\n== {name} ({'ideal code lengths' if name == 'lm' else 'real compressed sizes'})")
        for key, e in sec["bits_per_byte"].items():
            ent = f"  (entropy {e['entropy_bpb']:.3f})" if e["entropy_bpb"] is not None else ""
            print(f"  {key:<36} {e['bits_per_byte']:7.3f} bits/byte  {e['bytes']:>8} B{ent}")
        for key, e in sec.get("calibration", {}).items():
            extra = f"ratio {e['ratio']:.3f}" if e["ratio"] is not None else f"{e['gap_per_byte']:.4f} bits/byte"
            print(f"  calibration {key:<24} gap {e['gap']:>10.0f}  true {e['true_mi']:>10.0f}  {extra}")
        for key, e in sec.get("genesis", {}).items():
            sh = f"  shuffled lines {e['shuffled_lines']:>8.0f}" if "shuffled_lines" in e else ""
            print(f"  genesis {key:<28} gap {e['related']:>10.0f}{sh}")
        sp = sec.get("speed")
        if sp:
            print(f"  speed {sp['MB_per_s']:.3f} MB/s = {sp['ratio_to_baseline']:.3f} x {sp['baseline']} "
                  f"({sp['baseline_MB_per_s']:.1f} MB/s in this run)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path)
    p.add_argument("--compressors", default=",".join(CLASSICAL + ["lm"]))
    p.add_argument("--lm-bytes", type=int, default=1500)
    p.add_argument("--slice", type=int, default=30_000, help="bytes of each Genesis text compared")
    p.add_argument("--calibration-bytes", type=int, default=20_000)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path)
    p.add_argument("--compare", type=Path)
    p.add_argument("--tolerance", type=float, default=0.02)
    a = p.parse_args(argv)

    names = [n for n in a.compressors.split(",") if n]
    if a.lm_bytes <= 0:
        names = [n for n in names if n != "lm"]
    sources = {**synthetic_sources(), **python_texts(), **corpus_files(a.corpus)}
    res: Dict[str, Any] = {"env": environment(a.device),
                           "settings": {"corpus": str(a.corpus) if a.corpus else None, "lm_bytes": a.lm_bytes,
                                        "slice": a.slice, "calibration_bytes": a.calibration_bytes},
                           "compressors": {}}
    speed_text = python_texts()["py-difflib"]["data"]
    for name in names:
        t = time.perf_counter()
        comp = make(name, a)
        sec: Dict[str, Any] = {"config": comp.config}
        if name == "lm":
            small = {k: v for k, v in sources.items() if k in ("py-difflib",) or k.endswith(("alice29.txt", "english-kjv.txt"))}
            sec["bits_per_byte"] = measure_bpb(comp, small, a.lm_bytes)
            sec["genesis"] = measure_genesis(comp, a.corpus, min(a.slice, a.lm_bytes))
            sec["calibration"] = measure_calibration(comp, max(50, min(a.calibration_bytes, a.lm_bytes // 5)))
            sec["speed"] = measure_speed(comp, speed_text[: a.lm_bytes], repeat=1)
        else:
            sec["bits_per_byte"] = measure_bpb(comp, sources, 0)
            sec["calibration"] = measure_calibration(comp, a.calibration_bytes)
            sec["genesis"] = measure_genesis(comp, a.corpus, a.slice)
            sec["speed"] = measure_speed(comp, speed_text)
        sec["seconds"] = time.perf_counter() - t
        res["compressors"][name] = sec
        print(f"[{name}: {sec['seconds']:.1f} s]", file=sys.stderr)
    table(res)
    if a.out:
        a.out.write_text(json.dumps(res, indent=1))
    if a.compare:
        old = json.loads(a.compare.read_text())
        bad = compare(res, old, a.tolerance)
        print(f"\ncompared with {a.compare} (tolerance {a.tolerance:.0%} on quality; timings not compared): "
              + ("no regression" if not bad else f"{len(bad)} regression(s)"))
        for b in bad:
            print(f"  REGRESSION {b}")
        return 1 if bad else 0
    return 0
