"""Benchmark: NCD matrices, kolmo against textdistance (speed), and the joint codes (language families).

    python -m benchmarks.matrix_bench [--docs 200] [--doc-bytes 2000] [--workers 2] [--levels 1,3]
                                      [--zstd-joint concat,two-part] [--zlib-joint two-part,concat]
                                      [--repeat 1] [--json out.json]
    python -m benchmarks.matrix_bench --families [--sizes 2000,4000,8000,16000,30000] [--windows 8]

Speed (the default). Baseline: textdistance's ``zlib_ncd`` in a pairwise loop over the n(n-1)/2
unordered pairs (NCD is symmetric; each call compresses x, y, xy and yx with ``zlib.compress`` at
zlib's default level, 6). kolmo: ``kolmo.matrix(..., measure="ncd")`` with the same definition,
(min(C(xy), C(yx)) - min(C(x), C(y))) / max(C(x), C(y)), from n single compressions and the n^2
joint codes, cold cache (a fresh SQLite file), then again warm. Two comparisons:

* zstd at each level in ``--levels`` (1, the fastest standard level, and 3, zstd's default), with
  kolmo's default joint code or those in ``--zstd-joint``: another codec than the baseline's;
* the same codec and level: kolmo's zlib at level 6, once per joint code in ``--zlib-joint``.

A third line times a floor: n^2 deflates of one item each at level 6, on one core, the least work
that any code of every ordered pair at the baseline's codec and level must do (the baseline's
deflates of x + y do it too, and priming or concatenating only adds match-finding work).

Goals: cold >= 10x faster than the baseline; warm < 5% of cold. ``--repeat R`` runs everything R
times (the baseline too) and reports the median of each time and of each ratio, as the machine's
load varies. Documents: 2 kB pieces of ../shared/corpus (genesis translations and canterbury texts)
when present, else of Python's own module sources.

Families (``--families``): eight Genesis versions (../shared/corpus/genesis) whose grouping is known:
English (KJV, WEB, lolcat) with German and Swedish in the Germanic branch, French and Portuguese
in the Romance one, Finnish apart. Known distances: 1 within English, 2 within a branch, 3 across
Germanic and Romance, 4 to Finnish. For each text size in ``--sizes`` and each of ``--windows``
windows spread over the texts (the same window position in every text), one NCD matrix per
compressor (zstd 19 and zlib 9, kolmo's default levels) and joint code, scored three ways, each
averaged over the windows (higher is better):

``spearman``    rank correlation of the NCD with the known distance over the 28 pairs;
``cophenetic``  correlation of the average-linkage tree's cophenetic distances with the known ones;
``triplets``    over triples (a, b, c) where b is known to be nearer to a than c is, the share with
                NCD(a, b) < NCD(a, c) (ties count half).

It also counts the windows where concat scores more triplets than two-part, and compares the
joint code lengths themselves: the share of ordered pairs where concat's C(XY) is the shorter
code, and the mean difference in bits.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
TEXTDISTANCE_LEVEL = 6  # textdistance's zlib_ncd: codecs.encode(data, "zlib_codec") = zlib.compress(data), level 6
JOINT_MODES = ("two-part", "concat")


def documents(n: int, size: int):
    root = CORPUS
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


# -- speed -----------------------------------------------------------------------------------------
def textdistance_matrix(docs):
    import numpy as np
    import textdistance
    n = len(docs)
    base = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            base[i, j] = base[j, i] = textdistance.zlib_ncd(docs[i], docs[j])
    return base


def floor_work(docs):
    """What any code of each ordered pair at the baseline's codec and level must at least do: deflate
    the second item (here without the first in its window, which only adds match-finding work)."""
    import zlib
    for _ in docs:
        for y in docs:
            co = zlib.compressobj(TEXTDISTANCE_LEVEL, zlib.DEFLATED, -15, 9)  # kolmo's zlib settings
            co.compress(y)
            co.flush()


def time_kolmo(docs, comp, workers: int):
    """Cold (fresh cache file) and warm times of one NCD matrix, and the matrix."""
    import numpy as np

    import kolmo
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "bench.sqlite"
        t = time.perf_counter()
        cold = kolmo.matrix(docs, compressor=comp, measure="ncd", cache=cache, workers=workers, progress=False)
        t_cold = time.perf_counter() - t
        t = time.perf_counter()
        warm = kolmo.matrix(docs, compressor=comp, measure="ncd", cache=cache, workers=workers, progress=False)
        t_warm = time.perf_counter() - t
    assert np.array_equal(np.asarray(cold), np.asarray(warm))
    return t_cold, t_warm, np.asarray(cold)


def speed(a):
    import numpy as np
    import textdistance

    import kolmo

    from ._env import environment
    docs, source = documents(a.docs, a.doc_bytes)
    n = len(docs)
    runs = [(f"zstd-{lv}" + (f" {j}" if j else ""), kolmo.get_compressor("zstd", level=lv, **({"joint": j} if j else {})))
            for j in (a.zstd_joint.split(",") if a.zstd_joint else [""]) for lv in [int(v) for v in a.levels.split(",") if v]]
    runs += [(f"zlib-{TEXTDISTANCE_LEVEL} {j}", kolmo.get_compressor("zlib", level=TEXTDISTANCE_LEVEL, joint=j))
             for j in a.zlib_joint.split(",") if j]
    off = ~np.eye(n, dtype=bool)
    t_base, t_floor, times, base = [], [], {k: [] for k, _ in runs}, None
    for _ in range(a.repeat):
        t = time.perf_counter()
        base = textdistance_matrix(docs)
        t_base.append(time.perf_counter() - t)
        t = time.perf_counter()
        floor_work(docs)
        t_floor.append(time.perf_counter() - t)
        for key, comp in runs:
            times[key].append(time_kolmo(docs, comp, a.workers))
    res = {"benchmark": "matrix", "env": environment("cpu"),
           "settings": {"docs": n, "doc_bytes": a.doc_bytes, "source": source, "workers": a.workers, "repeat": a.repeat,
                        "baseline": f"textdistance {textdistance.__version__} zlib_ncd (zlib level {TEXTDISTANCE_LEVEL}), "
                                    "n(n-1)/2 calls"},
           "baseline_s": statistics.median(t_base), "baseline_runs_s": t_base, "kolmo": {}}
    print(f"NCD matrix, {n} docs x ~{a.doc_bytes} B ({source})  [kolmo {res['env']['kolmo']}, "
          f"textdistance {textdistance.__version__}, {res['env']['cpu_count']} CPUs, {a.workers} workers, "
          f"median of {a.repeat} run(s)]")
    print(f"  textdistance zlib_ncd loop (zlib level {TEXTDISTANCE_LEVEL}){'':10} {res['baseline_s']:8.3f} s")
    res["floor_s"] = statistics.median(t_floor)
    res["floor_speedup_one_core"] = statistics.median(tb / tf for tb, tf in zip(t_base, t_floor))
    print(f"  floor at zlib level {TEXTDISTANCE_LEVEL}: n^2 deflates of an item alone, one core {res['floor_s']:6.3f} s = "
          f"{res['floor_speedup_one_core']:5.1f}x the baseline (no per-pair code of the same codec does less work)")
    for key, comp in runs:
        cold = statistics.median(t for t, _, _ in times[key])
        warm = statistics.median(w for _, w, _ in times[key])
        speedup = statistics.median(tb / t for tb, (t, _, _) in zip(t_base, times[key]))  # ratios within each run
        m = times[key][-1][2]
        rank = float(np.corrcoef(np.argsort(np.argsort(m[off])), np.argsort(np.argsort(base[off])))[0, 1])
        same = key.startswith("zlib")
        res["kolmo"][key] = {"config": comp.config, "cold_s": cold, "warm_s": warm, "cold_runs_s": [t for t, _, _ in times[key]],
                             "speedup_cold": speedup, "warm_over_cold": warm / cold, "same_codec_as_baseline": same,
                             "mean_ncd": float(m[off].mean()), "rank_correlation_with_baseline": rank}
        label = f"kolmo {key.split()[0]} {comp.config['joint']}" + (" (same codec)" if same else "")
        print(f"  {label:<40} cold {cold:6.3f} s = {speedup:5.1f}x faster (goal >= 10x); warm {warm:6.4f} s = "
              f"{100 * warm / cold:4.1f}% of cold (goal < 5%); rank correlation with zlib's NCD {rank:.3f}")
    return res


# -- language families -----------------------------------------------------------------------------
GENESIS = {"english-kjv": ("english", "germanic"), "english-web": ("english", "germanic"), "lolcat": ("english", "germanic"),
           "german": ("german", "germanic"), "swedish": ("swedish", "germanic"), "french": ("french", "romance"),
           "portuguese": ("portuguese", "romance"), "finnish": ("finnish", "uralic")}


def known_distances(names):
    """The known tree's distances: 1 same language, 2 same branch, 3 Germanic-Romance, 4 to Finnish."""
    import numpy as np

    def d(a, b):
        (la, ba), (lb, bb) = GENESIS[a], GENESIS[b]
        if a == b:
            return 0
        if la == lb:
            return 1
        if ba == bb:
            return 2
        return 4 if "uralic" in (ba, bb) else 3
    return np.array([[d(a, b) for b in names] for a in names], dtype=float)


def family_scores(D, K):
    """(spearman, cophenetic, triplets) of the distance matrix D against the known distances K."""
    import numpy as np
    from scipy.cluster.hierarchy import cophenet, linkage
    from scipy.spatial.distance import squareform
    from scipy.stats import spearmanr
    iu = np.triu_indices(len(D), 1)
    rho = float(spearmanr(D[iu], K[iu]).correlation)
    coph = float(np.corrcoef(cophenet(linkage(squareform(D, checks=False), "average")), K[iu])[0, 1])
    ok = total = 0.0
    n = len(D)
    for a in range(n):
        for b in range(n):
            for c in range(n):
                if len({a, b, c}) == 3 and K[a, b] < K[a, c]:
                    total += 1
                    ok += 1.0 if D[a, b] < D[a, c] else 0.5 if D[a, b] == D[a, c] else 0.0
    return rho, coph, ok / total


def families(a):
    import numpy as np

    import kolmo

    from ._env import environment
    root = CORPUS / "genesis"
    if not root.is_dir():
        raise SystemExit(f"--families needs the Genesis translations in {root}")
    names = list(GENESIS)
    texts = {n: (root / f"{n}.txt").read_bytes() for n in names}
    K = known_distances(names)
    specs = [(c, lv, j) for c, lv in (("zstd", 19), ("zlib", 9)) for j in JOINT_MODES]
    res = {"benchmark": "families", "env": environment("cpu"),
           "settings": {"texts": names, "sizes": a.sizes, "windows": a.windows}, "results": {}}
    print(f"Language families from NCD matrices of {len(names)} Genesis versions, {a.windows} windows per size "
          f"[kolmo {res['env']['kolmo']}]   scores: spearman / cophenetic / triplets (higher is better)")
    for size in [int(v) for v in a.sizes.split(",") if v]:
        scores = {s: [] for s in specs}
        c_xy = {s: [] for s in specs}
        off = ~np.eye(len(names), dtype=bool)
        for w in range(a.windows):
            docs = {n: t[int(w / a.windows * max(0, len(t) - size)):][:size] for n, t in texts.items()}
            for c, lv, j in specs:
                comp = kolmo.get_compressor(c, level=lv, joint=j)
                with warnings.catch_warnings(), tempfile.TemporaryDirectory() as tmp:
                    warnings.simplefilter("ignore")  # zlib beyond its 32 KiB window: measured as it is
                    m = np.asarray(kolmo.matrix(docs, compressor=comp, cache=Path(tmp) / "c.sqlite", progress=False))
                    j_xy = np.asarray(kolmo.matrix(docs, compressor=comp, measure="c_xy", cache=Path(tmp) / "c.sqlite",
                                                   progress=False))  # from the cache
                D = (m + m.T) / 2
                np.fill_diagonal(D, 0.0)
                scores[(c, lv, j)].append(family_scores(D, K))
                c_xy[(c, lv, j)].append(j_xy[off])
        for c, lv in (("zstd", 19), ("zlib", 9)):
            row = {}
            for j in JOINT_MODES:
                s = np.array(scores[(c, lv, j)])
                row[j] = dict(zip(("spearman", "cophenetic", "triplets"), s.mean(0).tolist()))
            tp, cc = np.array(scores[(c, lv, "two-part")]), np.array(scores[(c, lv, "concat")])
            row["windows_concat_better_triplets"] = int((cc[:, 2] > tp[:, 2]).sum())
            d = np.concatenate(c_xy[(c, lv, "concat")]) - np.concatenate(c_xy[(c, lv, "two-part")])
            row["pairs_concat_shorter_c_xy"] = float((d < 0).mean())
            row["mean_c_xy_concat_minus_two_part_bits"] = float(d.mean())
            res["results"][f"{c}-{lv} {size}"] = row
            print(f"  {c}-{lv:<2} {size:6d} B  " + "   ".join(
                f"{j} {row[j]['spearman']:.3f} / {row[j]['cophenetic']:.3f} / {row[j]['triplets']:.3f}" for j in JOINT_MODES)
                + f"   concat: more triplets in {row['windows_concat_better_triplets']}/{a.windows} windows, "
                f"shorter C(XY) in {100 * row['pairs_concat_shorter_c_xy']:.0f}% of pairs "
                f"(mean {row['mean_c_xy_concat_minus_two_part_bits']:+.0f} bits)")
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--docs", type=int, default=200)
    p.add_argument("--doc-bytes", type=int, default=2000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--levels", default="1,3", help="zstd levels to run, comma-separated")
    p.add_argument("--zstd-joint", default="", help="joint codes of the zstd runs, comma-separated (default: zstd's default)")
    p.add_argument("--zlib-joint", default=",".join(JOINT_MODES),
                   help=f"joint codes of the same-codec run (zlib level {TEXTDISTANCE_LEVEL}), comma-separated; empty to skip")
    p.add_argument("--repeat", type=int, default=1, help="runs of everything; medians are reported")
    p.add_argument("--families", action="store_true", help="score the joint codes on the Genesis language families instead")
    p.add_argument("--sizes", default="2000,4000,8000,16000,30000", help="--families: bytes of each text")
    p.add_argument("--windows", type=int, default=8, help="--families: windows per size")
    p.add_argument("--json")
    a = p.parse_args(argv)
    res = families(a) if a.families else speed(a)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
