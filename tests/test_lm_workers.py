"""The language models at corpus scale: LM matrices through a process pool and a Dask cluster,
the same values as in one process at equal threads, each worker loading its model once, a killed
worker survived, an interrupted run resumed with only what is missing."""

import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

import kolmo  # noqa: E402
import kolmo.matrices as km  # noqa: E402
from kolmo.cache import ResultsCache  # noqa: E402
from kolmo.compressors.zstd import ZstdCompressor  # noqa: E402

DOCS = {"fox": b"The quick brown fox jumps over the lazy dog.",
        "times": b"It was the best of times, it was the worst of times.",
        "genesis": b"In the beginning God created the heaven and the earth.",
        "code": b"def f(x):\n    return x * 2 + 1\n"}


def _lm(tiny_model_dir):
    return kolmo.get_compressor("lm", model=str(tiny_model_dir), window=64, stride=32, dtype="float32",
                                progress=False)


def _online(tiny_model_dir):
    return kolmo.get_compressor("lm-online", model="scratch", block_tokens=16, window=32, layers=1, width=32,
                                heads=2, context=32, buckets=1 << 10, progress=False)


class DiesOnce(ZstdCompressor):
    """zstd whose worker process dies the first time it codes (a marker file says it has)."""

    def __init__(self, marker: str, **options):
        super().__init__(**options)
        self.marker = marker

    def __getstate__(self):
        return {**super().__getstate__(), "marker": self.marker}

    def conditional_bits_many(self, datas, context):
        if not os.path.exists(self.marker):
            Path(self.marker).write_text("died")
            os._exit(1)  # the worker is killed mid-task
        return super().conditional_bits_many(datas, context)


@pytest.mark.parametrize("which", ["lm", "lm-online"])
def test_a_pool_of_workers_gives_the_one_process_matrix(which, tiny_model_dir, tmp_path):
    comp = (_lm if which == "lm" else _online)(tiny_model_dir)
    one = kolmo.matrix(DOCS, compressor=comp, measure="conditional", cache=False, progress=False, threads=1)
    pooled = kolmo.matrix(DOCS, compressor=comp, measure="conditional", cache=tmp_path / "c.sqlite",
                          progress=False, workers=2, threads=1)
    assert np.array_equal(np.asarray(one), np.asarray(pooled))  # exactly: the same tasks, the same threads
    assert one.config == pooled.config
    for i, a in enumerate(DOCS):  # and the matrix is what the compressor says pair by pair
        assert one.values[i, 0] == pytest.approx(comp.conditional_bits(DOCS[a], DOCS["fox"]), abs=1e-3)


def test_threads_are_part_of_the_cache_key(tiny_model_dir, tmp_path):
    lm = _lm(tiny_model_dir)
    one = km.CodeLengths(lm, list(DOCS.values()), cache=tmp_path / "t.sqlite", progress=False, threads=1)
    two = km.CodeLengths(lm, list(DOCS.values()), cache=tmp_path / "t.sqlite", progress=False, threads=2)
    assert one.cfg != two.cfg
    zstd = km.CodeLengths(kolmo.get_compressor("zstd"), [b"x"], cache=False, progress=False, threads=3)
    assert zstd.threads is None  # a codec's bits do not depend on torch's threads


def test_lm_compressors_pickle_options_not_weights(tiny_model_dir):
    import pickle
    lm = _lm(tiny_model_dir)
    lm.bits(b"load the model first")
    blob = pickle.dumps(lm)
    assert len(blob) < 2000  # options, never weights
    clone = pickle.loads(blob)
    assert clone.config == lm.config and clone.bits(b"the same bits") == lm.bits(b"the same bits")


def test_a_killed_worker_costs_a_retry(tmp_path):
    comp = DiesOnce(str(tmp_path / "marker"))
    m = kolmo.matrix(DOCS, compressor=comp, measure="conditional", cache=tmp_path / "k.sqlite", workers=2,
                     progress=False)
    assert (tmp_path / "marker").exists()  # a worker did die
    plain = kolmo.matrix(DOCS, compressor="zstd", measure="conditional", cache=False, progress=False)
    assert np.array_equal(np.asarray(m), np.asarray(plain))


def test_an_interrupted_lm_matrix_resumes_with_only_the_missing(tiny_model_dir, tmp_path, monkeypatch):
    lm, cache = _lm(tiny_model_dir), tmp_path / "r.sqlite"
    real, calls = km._task, {"n": 0}

    def dies_on_third(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(km, "_task", dies_on_third)
    monkeypatch.setattr(km.time, "monotonic", lambda: float(calls["n"]) * 10)  # flush after every task
    with pytest.raises(KeyboardInterrupt):
        kolmo.matrix(DOCS, compressor=lm, measure="conditional", cache=cache, progress=False, threads=1)
    monkeypatch.setattr(km, "_task", real)
    before = len(ResultsCache(cache))
    n = len(DOCS)
    eng = km.CodeLengths(lm, list(DOCS.values()), cache=cache, progress=False, threads=1)
    eng.run(range(n), [], [(i, j) for i in range(n) for j in range(n)])
    assert 0 < before and eng.computed == n + n * n - before
    fresh = kolmo.matrix(DOCS, compressor=lm, measure="conditional", cache=False, progress=False, threads=1)
    resumed = kolmo.matrix(DOCS, compressor=lm, measure="conditional", cache=cache, progress=False, threads=1)
    assert np.array_equal(np.asarray(resumed), np.asarray(fresh))


def test_a_dask_cluster_gives_the_one_process_matrix_and_loads_once(tiny_model_dir, tmp_path):
    distributed = pytest.importorskip("distributed")
    lm = _lm(tiny_model_dir)
    one = kolmo.matrix(DOCS, compressor=lm, measure="ncd", cache=False, progress=False, threads=1)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as lc, \
            distributed.Client(lc) as client:
        m = kolmo.matrix(DOCS, compressor=lm, measure="ncd", cache=False, executor=client.get_executor(),
                         progress=False)  # threads=1 on another executor

        def loads():
            from kolmo.lm.models import loading
            return dict(loading.LOADS)

        per_worker = client.run(loads)
    assert np.array_equal(np.asarray(m), np.asarray(one))
    assert per_worker and all(all(n == 1 for n in counts.values()) for counts in per_worker.values())
    assert sum(len(counts) for counts in per_worker.values()) >= 1  # someone loaded it, each at most once


def test_a_dask_worker_killed_mid_run_is_survived(tmp_path):
    distributed = pytest.importorskip("distributed")
    comp = DiesOnce(str(tmp_path / "marker"))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as lc, \
            distributed.Client(lc) as client:
        m = kolmo.matrix(DOCS, compressor=comp, measure="conditional", cache=False, executor=client.get_executor(),
                         progress=False)
    assert (tmp_path / "marker").exists()
    plain = kolmo.matrix(DOCS, compressor="zstd", measure="conditional", cache=False, progress=False)
    assert np.array_equal(np.asarray(m), np.asarray(plain))
