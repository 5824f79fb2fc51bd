"""Benchmark: an NCD matrix of 200 documents of about 2 kB, kolmo against textdistance, one run.

    python -m benchmarks.matrix_bench [--docs 200] [--doc-bytes 2000] [--workers 2] [--levels 1,3] [--json out.json]

Baseline: textdistance's ``zlib_ncd`` in a pairwise loop over the n(n-1)/2 unordered pairs (NCD
is symmetric; each call compresses x, y, xy and yx). kolmo: ``kolmo.matrix(..., "zstd", "ncd")``
with the same definition, (min(C(xy), C(yx)) - min(C(x), C(y))) / max(C(x), C(y)), computing n
single compressions and n^2 dictionary-primed ones, cold cache (a fresh SQLite file), then again
warm, once per zstd level in ``--levels`` (1, the fastest standard level, and 3, zstd's default).
Goals: cold >= 10x faster than the baseline; warm < 5% of cold.
Documents: 2 kB pieces of ../shared/corpus (genesis translations and canterbury texts) when present,
else of Python's own module sources.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def documents(n: int, size: int):
    root = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
    files = sorted(root.glob("genesis/*.txt")) + sorted(root.glob("canterbury-mixed/*.txt")) if root.is_dir() else []
    if not files:
        import sysconfig
        files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:60]
    docs = []
    while len(docs) < n:
        for f in files:
            data = f.read_bytes()
            k = len(docs) // len(files)
            piece = data[k * size * 7 % max(1, len(data) - size):][:size]
            if len(piece) >= size // 2:
                docs.append(piece)
            if len(docs) == n:
                break
    return docs, ("../shared/corpus" if root.is_dir() else "python stdlib sources")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--docs", type=int, default=200)
    p.add_argument("--doc-bytes", type=int, default=2000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--levels", default="1,3", help="zstd levels to run, comma-separated")
    p.add_argument("--json")
    a = p.parse_args(argv)

    import numpy as np
    import textdistance

    import kolmo

    from ._env import environment
    docs, source = documents(a.docs, a.doc_bytes)
    n = len(docs)

    t = time.perf_counter()
    base = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            base[i, j] = base[j, i] = textdistance.zlib_ncd(docs[i], docs[j])
    t_base = time.perf_counter() - t

    off = ~np.eye(n, dtype=bool)
    res = {"benchmark": "matrix", "env": environment("cpu"),
           "settings": {"docs": n, "doc_bytes": a.doc_bytes, "source": source, "workers": a.workers,
                        "baseline": f"textdistance {textdistance.__version__} zlib_ncd, n(n-1)/2 calls"},
           "baseline_s": t_base, "kolmo": {}}
    print(f"NCD matrix, {n} docs x ~{a.doc_bytes} B ({source})  [kolmo {res['env']['kolmo']}, "
          f"textdistance {textdistance.__version__}, {res['env']['cpu_count']} CPUs, {a.workers} workers]")
    print(f"  textdistance zlib_ncd loop            {t_base:8.2f} s")
    for level in [int(v) for v in a.levels.split(",") if v]:
        comp = kolmo.get_compressor("zstd", level=level)
        with tempfile.TemporaryDirectory() as tmp:
            cache = Path(tmp) / "bench.sqlite"
            t = time.perf_counter()
            cold = kolmo.matrix(docs, compressor=comp, measure="ncd", cache=cache, workers=a.workers, progress=False)
            t_cold = time.perf_counter() - t
            t = time.perf_counter()
            warm = kolmo.matrix(docs, compressor=comp, measure="ncd", cache=cache, workers=a.workers, progress=False)
            t_warm = time.perf_counter() - t
        assert np.array_equal(np.asarray(cold), np.asarray(warm))
        rank = float(np.corrcoef(np.argsort(np.argsort(np.asarray(cold)[off])), np.argsort(np.argsort(base[off])))[0, 1])
        res["kolmo"][f"zstd-{level}"] = {"config": comp.config, "cold_s": t_cold, "warm_s": t_warm,
                                         "speedup_cold": t_base / t_cold, "warm_over_cold": t_warm / t_cold,
                                         "mean_ncd": float(np.asarray(cold)[off].mean()),
                                         "rank_correlation_with_baseline": rank}
        print(f"  kolmo zstd {comp.config['zstd_version']} level {level:<2} cold {t_cold:6.2f} s = "
              f"{t_base / t_cold:5.1f}x faster (goal >= 10x); warm {t_warm:5.3f} s = "
              f"{100 * t_warm / t_cold:4.1f}% of cold (goal < 5%); rank correlation with zlib's NCD {rank:.3f}")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
