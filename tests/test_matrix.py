import json
import multiprocessing
import pickle
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

import kolmo
from kolmo.cache import ResultsCache

DOCS = {
    "cat1": b"the cat sat on the mat and looked at the rat. " * 12,
    "cat2": b"the cat sat on the hat and looked at the bat. " * 12,
    "lorem": b"lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 10,
    "digits": bytes(str(list(range(300))), "ascii"),
    "empty": b"",
}


@pytest.mark.parametrize("name", ["zstd", "zlib", "lzma", "ppmd"])
@pytest.mark.parametrize("measure", ["ncd", "gap", "conditional", "c_xy"])
def test_matrix_equals_joint_gap_pair_by_pair(name, measure, tmp_path):
    m = kolmo.matrix(DOCS, compressor=name, measure=measure, cache=tmp_path / "c.sqlite", progress=False)
    labels = list(DOCS)
    assert np.asarray(m).shape == (5, 5) and m.labels == tuple(labels)
    for i, a in enumerate(labels):
        for j, b in enumerate(labels):
            r = kolmo.joint_gap(DOCS[a], DOCS[b], compressor=name)
            want = {"ncd": r.ncd, "gap": r.gap, "c_xy": r.c_xy, "conditional": r.c_x_given_y}[measure]
            assert m.values[i, j] == pytest.approx(want, abs=1e-9), (a, b)
        assert m.singles[i] == kolmo.get_compressor(name).bits(DOCS[a])


def test_matrix_structure_and_io(tmp_path):
    m = kolmo.matrix(DOCS, cache=False, progress=False)
    v = np.asarray(m)
    assert np.allclose(v, v.T)  # NCD is symmetric
    assert m["cat1", "cat2"] < m["cat1", "lorem"]
    assert m.to_pandas().loc["cat1", "cat2"] == m["cat1", "cat2"]
    m.save(tmp_path / "m.json")
    back = kolmo.load_matrix(tmp_path / "m.json")
    assert np.array_equal(np.asarray(back), v) and back.labels == m.labels and back.config == m.config
    m.to_csv(tmp_path / "m.csv")
    rows = (tmp_path / "m.csv").read_text().splitlines()
    assert rows[0].split(",")[1:] == list(DOCS) and float(rows[1].split(",")[2]) == v[0, 1]
    (tmp_path / "bad.json").write_text(json.dumps({"x": 1}))
    with pytest.raises(ValueError, match="not a kolmo matrix"):
        kolmo.load_matrix(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="measure must be one of"):
        kolmo.matrix(DOCS, measure="cosine")
    with pytest.raises(TypeError, match="items must be"):
        kolmo.matrix(42)


def test_matrix_from_folder_and_list(tmp_path):
    for k, v in DOCS.items():
        (tmp_path / f"{k}.txt").write_bytes(v)
    (tmp_path / ".hidden").write_bytes(b"x")
    m = kolmo.matrix(tmp_path, cache=False, progress=False)
    assert m.labels == tuple(sorted(f"{k}.txt" for k in DOCS))
    m2 = kolmo.matrix(list(DOCS.values()), cache=False, progress=False)
    assert m2.labels == tuple(str(i) for i in range(5))


def test_cache_resumes_and_counts(tmp_path):
    from kolmo.matrices import CodeLengths
    comp = kolmo.get_compressor("zstd")
    data = list(DOCS.values())
    path = tmp_path / "r.sqlite"
    eng = CodeLengths(comp, data[:3], cache=path, progress=False)
    eng.run(range(3), [(i, j) for i in range(3) for j in range(3)], [])
    assert eng.computed == 3 + 9
    eng2 = CodeLengths(comp, data, cache=path, progress=False)  # two more items: only what is new
    s, jn, _ = eng2.run(range(5), [(i, j) for i in range(5) for j in range(5)], [])
    assert eng2.computed == 2 + 25 - 9
    eng3 = CodeLengths(comp, data, cache=path, progress=False)
    assert np.array_equal(eng3.run(range(5), [(i, j) for i in range(5) for j in range(5)], [])[1], jn) and eng3.computed == 0
    other = CodeLengths(kolmo.get_compressor("zstd", level=3), data, cache=path, progress=False)
    other.run(range(5), [], [])
    assert other.computed == 5  # another config never reuses these numbers
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_cache_rows_keep_every_digest(tmp_path):
    c = ResultsCache(tmp_path / "r.sqlite")
    entries = {b"\x01" * 15 + b"\x00": 1.0, b"\x00" * 16: 2.0, bytes(range(16)): 3.0}
    c.put_rows({"k": entries})
    c.put_rows({"k": {b"\xff" * 16: 4.0}})
    assert c.get_row("k") == {**entries, b"\xff" * 16: 4.0} and len(c) == 4


def _writer(path, start):
    cache = ResultsCache(path)
    for k in range(20):
        cache.put_many((f"{start}-{k}-{i}", float(i)) for i in range(50))


def test_cache_concurrent_writers(tmp_path):
    path = tmp_path / "c.sqlite"
    ResultsCache(path)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), s)) for s in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert len(ResultsCache(path)) == 3 * 20 * 50


def test_cache_survives_a_killed_writer(tmp_path):
    path = tmp_path / "k.sqlite"
    ResultsCache(path).put_many([("keep", 1.5)])
    code = f"""
import os
from kolmo.cache import ResultsCache
c = ResultsCache({str(path)!r})
con = c._conn()
con.execute("BEGIN IMMEDIATE")
con.executemany("INSERT INTO results VALUES (?, ?)", [(str(i), 2.0) for i in range(1000)])
os._exit(9)  # killed mid-transaction
"""
    assert subprocess.run([sys.executable, "-c", code]).returncode == 9
    c = ResultsCache(path)
    assert len(c) == 1 and c.get_many(["keep", "5"]) == {"keep": 1.5}


def test_workers_and_executor_give_the_same_matrix(tmp_path):
    base = kolmo.matrix(DOCS, cache=False, progress=False)
    pooled = kolmo.matrix(DOCS, cache=False, workers=2, progress=False)
    assert np.array_equal(np.asarray(base), np.asarray(pooled))
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(4) as ex:  # one zstd instance shared by threads: each needs its own context
        shared = kolmo.matrix(DOCS, compressor="zstd", cache=False, executor=ex, progress=False)
    assert np.array_equal(np.asarray(shared), np.asarray(base))
    with ThreadPoolExecutor(2) as ex:
        threaded = kolmo.matrix(DOCS, compressor="lzma", measure="conditional", cache=tmp_path / "t.sqlite",
                                executor=ex, progress=False)
    assert np.array_equal(np.asarray(threaded), np.asarray(kolmo.matrix(DOCS, compressor="lzma", measure="conditional",
                                                                       cache=False, progress=False)))
    with pytest.raises(ValueError, match="workers must be"):
        kolmo.matrix(DOCS, workers=0)
    with pytest.raises(TypeError, match="executor must be"):
        kolmo.matrix(DOCS, executor="dask")


def test_dask_local_cluster(tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as lc, \
            distributed.Client(lc) as client:
        m = kolmo.matrix(DOCS, cache=False, executor=client.get_executor(), progress=False)
    assert np.array_equal(np.asarray(m), np.asarray(kolmo.matrix(DOCS, cache=False, progress=False)))


def test_compressors_pickle():
    for name in ("zstd", "lzma", "zlib", "bz2", "ppmd"):
        c = kolmo.get_compressor(name)
        c2 = pickle.loads(pickle.dumps(c))
        assert c2.config == c.config and c2.bits(b"abcabc" * 50) == c.bits(b"abcabc" * 50)


def test_cluster_and_dendrogram(tmp_path):
    docs = {f"{tag}{i}": (text * 25 + str(i)).encode() for tag, text in
            (("cat", "the cat sat on the mat "), ("lorem", "lorem ipsum dolor sit amet ")) for i in range(3)}
    m = kolmo.matrix(docs, cache=False, progress=False)
    c = kolmo.cluster(m)
    groups = c.clusters(2)
    assert len({groups[f"cat{i}"] for i in range(3)}) == 1
    assert groups["cat0"] != groups["lorem0"]
    pytest.importorskip("matplotlib")
    c.dendrogram(path=tmp_path / "d.png")
    from kolmo.plot import heatmap
    heatmap(m, path=tmp_path / "h.png")
    assert (tmp_path / "d.png").stat().st_size > 1000 and (tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="a gap is a similarity"):
        kolmo.cluster(kolmo.matrix(docs, measure="gap", cache=False, progress=False))


def test_classifier_and_honest_ties():
    train = [b"the cat sat on the mat " * 10, b"a cat and a hat " * 10, b"lorem ipsum dolor " * 10, b"ipsum lorem sit " * 10]
    y = ["cat", "cat", "lorem", "lorem"]
    clf = kolmo.NCDClassifier(k=1, cache=False).fit(train, y)
    assert list(clf.predict([b"the cat in the hat " * 8, b"dolor sit lorem " * 8])) == ["cat", "lorem"]
    assert clf.score(train, y) == 1.0
    # k=2 with one vote each: the class whose neighbour is nearer wins, exactly one answer
    clf2 = kolmo.NCDClassifier(k=2, cache=False).fit([train[0], train[2]], ["cat", "lorem"])
    d = clf2.distances([b"the cat sat " * 10])[0]
    assert d[0] < d[1] and list(clf2.predict([b"the cat sat " * 10])) == ["cat"]
    sklearn = pytest.importorskip("sklearn")
    from sklearn.base import clone
    assert clone(clf).get_params()["k"] == 1
    assert sklearn.model_selection.cross_val_score(kolmo.NCDClassifier(cache=False), train * 2, y * 2, cv=2).mean() == 1.0
    with pytest.raises(RuntimeError, match="call fit"):
        kolmo.NCDClassifier().predict([b"x"])
    with pytest.raises(ValueError, match="differ in length"):
        kolmo.NCDClassifier().fit([b"a"], [1, 2])


def test_lm_matrix_uses_kv_cache_and_matches_pairs(tiny_lm):
    docs = {"a": b"the cat sat on the mat", "b": b"the cat sat on a hat", "c": b"\x00\x01 binary"}
    m = kolmo.matrix(docs, compressor=tiny_lm, measure="conditional", cache=False, progress=False)
    for i, a in enumerate(docs):
        for j, b in enumerate(docs):
            assert m.values[i, j] == pytest.approx(tiny_lm.conditional_bits(docs[a], docs[b]), abs=1e-6)
    g = kolmo.matrix(docs, compressor=tiny_lm, measure="gap", cache=False, progress=False)
    assert g["a", "b"] == pytest.approx(kolmo.joint_gap(docs["a"], docs["b"], compressor=tiny_lm).gap, abs=1e-6)


def test_cli_matrix(tmp_path, capsys):
    from kolmo.cli import main
    for k, v in DOCS.items():
        (tmp_path / f"{k}.txt").write_bytes(v)
    out = tmp_path / "m.csv"
    assert main(["matrix", str(tmp_path), "--out", str(out), "--plot", str(tmp_path / "m.png"), "--no-progress",
                 "--workers", "2"]) == 0
    assert out.read_text().startswith("label,cat1.txt") and (tmp_path / "m.png").exists()
    assert main(["matrix", str(tmp_path / "cat1.txt"), str(tmp_path / "cat2.txt"), "--json", "--no-progress"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["measure"] == "ncd" and len(d["values"]) == 2


def test_interrupted_matrix_resumes_with_only_the_missing(tmp_path, monkeypatch):
    import kolmo.matrices as km
    cache = tmp_path / "i.sqlite"
    real = km._task
    calls = {"n": 0}

    def dies_on_third(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the user pressed Ctrl-C mid-run
        return real(*args, **kwargs)

    monkeypatch.setattr(km, "_task", dies_on_third)
    monkeypatch.setattr(km.time, "monotonic", lambda: float(calls["n"]) * 10)  # flush after every task
    with pytest.raises(KeyboardInterrupt):
        kolmo.matrix(DOCS, cache=cache, progress=False)
    monkeypatch.setattr(km, "_task", real)
    done_before = len(ResultsCache(cache))
    assert 0 < done_before < 5 + 25
    eng = km.CodeLengths(kolmo.get_compressor("zstd"), list(DOCS.values()), cache=cache, progress=False)
    s, jn, _ = eng.run(range(5), [(i, j) for i in range(5) for j in range(5)], [])
    assert eng.computed == 5 + 25 - done_before
    full = kolmo.matrix(DOCS, cache=False, progress=False)
    assert np.array_equal(np.asarray(kolmo.matrix(DOCS, cache=cache, progress=False)), np.asarray(full))


@pytest.mark.parametrize("name", ["zstd", "zlib"])
@pytest.mark.parametrize("joint", ["two-part", "concat"])
@pytest.mark.parametrize("measure", ["ncd", "gap", "conditional", "c_xy"])
def test_both_joint_modes_equal_joint_gap_pair_by_pair(name, joint, measure, tmp_path):
    comp = kolmo.get_compressor(name, joint=joint)
    assert comp.config["joint"] == joint
    m = kolmo.matrix(DOCS, compressor=name, measure=measure, cache=tmp_path / "c.sqlite", progress=False, joint=joint)
    assert m.config == comp.config
    labels = list(DOCS)
    for i, a in enumerate(labels):
        for j, b in enumerate(labels):
            r = kolmo.joint_gap(DOCS[a], DOCS[b], compressor=comp)
            want = {"ncd": r.ncd, "gap": r.gap, "c_xy": r.c_xy, "conditional": r.c_x_given_y}[measure]
            assert m.values[i, j] == want, (a, b)  # exactly: every entry is a sum of whole bytes
            if measure == "c_xy" and joint == "concat":
                assert m.values[i, j] == comp.bits(DOCS[a] + DOCS[b])


@pytest.mark.filterwarnings("ignore::kolmo.WindowWarning")  # some pairs exceed 32 KiB: measured as they are
@pytest.mark.parametrize("joint", ["two-part", "concat"])
@pytest.mark.parametrize("level", [0, 1, 6, 9])
def test_zlib_rows_share_work_and_equal_joint_gap(joint, level, rng_bytes):
    # items long enough for zlib's shared row paths: a primed dictionary of >= 16 KiB copied per
    # item (two-part), x deflated once and its state copied per item (concat, levels 1-9)
    text = b"".join(b"%d the cat sat on mat number %d; " % (i, i * i % 97) for i in range(900))
    docs = [text[:20000], text[5000:26000], rng_bytes(3000, seed=4), text[:300] * 3, b"", text[100:17000]]
    comp = kolmo.get_compressor("zlib", level=level, joint=joint)
    for measure in ("c_xy", "conditional"):
        m = kolmo.matrix(docs, compressor=comp, measure=measure, cache=False, progress=False)
        for i, x in enumerate(docs):
            for j, y in enumerate(docs):
                r = kolmo.joint_gap(x, y, compressor=comp)
                assert m.values[i, j] == (r.c_xy if measure == "c_xy" else r.c_x_given_y), (measure, i, j)
                if measure == "c_xy" and joint == "concat":
                    assert m.values[i, j] == comp.bits(x + y)
                if measure == "c_xy" and joint == "two-part":
                    assert m.values[i, j] == comp.bits(x) + comp._payload_bits(len(comp._deflate(y, x[-32768:])))


def test_joint_modes_are_cached_apart(tmp_path):
    cache = tmp_path / "c.sqlite"
    concat = kolmo.matrix(DOCS, compressor="zstd", measure="c_xy", cache=cache, progress=False, joint="concat")
    two = kolmo.matrix(DOCS, compressor="zstd", measure="c_xy", cache=cache, progress=False, joint="two-part")
    assert not np.array_equal(np.asarray(concat), np.asarray(two))  # never read back from the other's entries
    assert np.array_equal(np.asarray(two), np.asarray(kolmo.matrix(DOCS, compressor="zstd", measure="c_xy", cache=False,
                                                                   progress=False, joint="two-part")))
