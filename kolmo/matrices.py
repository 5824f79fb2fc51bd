"""Distance matrices over many items: ``kolmo.matrix`` and its result object.

    m = kolmo.matrix({"kjv": Path("kjv.txt"), "web": Path("web.txt"), ...}, compressor="zstd")
    np.asarray(m); m.labels; m.to_pandas(); m.save("m.json"); kolmo.load_matrix("m.json")

Measures (row i, column j; see :mod:`kolmo.measures` for the definitions, all in bits):

``ncd``          (min(C(ij), C(ji)) - min(C(i), C(j))) / max(C(i), C(j)), symmetric
``gap``          C(i) + C(j) - C(ij), row item first
``conditional``  C(row | column) = ``conditional_bits(items[i], context=items[j])``
``c_xy``         C(ij), row item first

Every entry equals what ``joint_gap(items[i], items[j])`` gives for the same pair.

Cost: n compressions of single items, then one task per conditioning item: its row of C(ij)
(for zstd and zlib, one prepared dictionary serves the whole row, so item i is never recompressed
from scratch) or its column of C(. | j) (the LM reuses one KV cache per context). Results go to
the persistent cache (:mod:`kolmo.cache`) as each task finishes, so an interrupted run resumes
with only what is missing. ``workers=N`` runs the tasks in a pool of N processes (started again
for the unfinished tasks if a worker dies); ``executor=`` takes any ``concurrent.futures.Executor``
of processes (a Dask ``client.get_executor()``, a Ray pool), which does its own retries.

The language models (``lm``, ``lm-online``) run the same way. A task carries the compressor's
options and the data it needs, never weights: each worker process loads the model once and keeps
it for its later tasks (:func:`_worker_compressor`). Their floats depend on torch's CPU thread
count, so ``threads`` is explicit (:func:`task_threads`: by default torch's count in this process,
``cpu_count // workers`` in a pool, 1 on another executor), set around every task and part of the
cache key; the task plan is the same in one process or many (singles in chunks of
:data:`SINGLES_PER_TASK`, one row per task: ``lm`` reuses the anchor's KV cache along its column
of C(. | x), ``lm-online`` learns the anchor once for the column), so at equal threads every value
is the same whichever process computed it. For GPUs, one worker per device: Dask's
``dask_cuda.LocalCUDACluster()`` and ``executor=client.get_executor()``.
"""

from __future__ import annotations

import contextlib
import json
import time
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import progress as _progress
from .cache import ResultsCache, config_hash, content_hash, open_cache, result_key
from .compressors.base import Compressor
from .errors import KolmoError
from .inputs import as_collection
from .measures import ncd_array, warn_window
from .options import check_int
from .registry import resolve

MEASURES = ("ncd", "gap", "conditional", "c_xy")
FORMAT = "kolmo-matrix"


@dataclass(frozen=True)
class DistanceMatrix:
    """An n x n matrix of one measure, with its labels, per-item C(x) and compressor config."""

    values: np.ndarray
    labels: Tuple[str, ...]
    measure: str
    compressor: str
    config: Dict[str, Any] = field(repr=False)
    singles: np.ndarray = field(repr=False)
    bits_kind: str = "compressed"
    warnings: Tuple[str, ...] = ()

    def __array__(self, dtype=None, copy=None):
        return self.values if dtype is None else self.values.astype(dtype)

    @property
    def shape(self) -> Tuple[int, int]:
        return self.values.shape

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key):
        if isinstance(key, tuple) and all(isinstance(k, str) for k in key):
            i, j = (self.labels.index(k) for k in key)
            return float(self.values[i, j])
        return self.values[key]

    def to_pandas(self):
        import pandas as pd
        return pd.DataFrame(self.values, index=list(self.labels), columns=list(self.labels))

    def to_csv(self, path: Union[str, Path]) -> None:
        import csv
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["label", *self.labels])
            for lab, row in zip(self.labels, self.values):
                w.writerow([lab, *(repr(float(v)) for v in row)])

    def to_dict(self) -> Dict[str, Any]:
        return {"format": FORMAT, "version": 1, "measure": self.measure, "units": "bits" if self.measure != "ncd" else "ratio",
                "compressor": self.compressor, "config": self.config, "bits_kind": self.bits_kind,
                "labels": list(self.labels), "values": self.values.tolist(), "singles_bits": self.singles.tolist(),
                "warnings": list(self.warnings)}

    def save(self, path: Union[str, Path]) -> None:
        """Write the matrix as JSON (floats are written exactly); read it back with load_matrix."""
        tmp = Path(str(path) + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        tmp.replace(path)

    def __repr__(self) -> str:
        return (f"DistanceMatrix({self.measure}, {len(self)} items, {self.compressor}, "
                f"{'real compressed sizes' if self.bits_kind == 'compressed' else 'ideal code lengths'})")


def load_matrix(path: Union[str, Path]) -> DistanceMatrix:
    """Read a matrix written by ``DistanceMatrix.save``."""
    d = json.loads(Path(path).read_text())
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise ValueError(f"{path} is not a kolmo matrix file (expected JSON with format={FORMAT!r})")
    return DistanceMatrix(values=np.array(d["values"], dtype=np.float64), labels=tuple(d["labels"]),
                          measure=d["measure"], compressor=d["compressor"], config=d["config"],
                          singles=np.array(d["singles_bits"], dtype=np.float64), bits_kind=d["bits_kind"],
                          warnings=tuple(d["warnings"]))


# -- tasks (module-level so that process pools and Dask can pickle them) ------------------------
#: single items per task for compressors with float_threads (the LMs): a task's batch plan is its own
SINGLES_PER_TASK = 8
#: times a pool whose worker died is started again for the tasks it had not finished
RETRIES = 2
_WORKER_COMPRESSORS: Dict[bytes, Compressor] = {}  # this process's built compressors, by their options


def _worker_compressor(comp: Compressor) -> Compressor:
    """The compressor this process already built with ``comp``'s options, or ``comp`` (remembered):
    a worker loads a model once and keeps it (with its scorer and heads) for its later tasks."""
    import pickle
    key = type(comp).__qualname__.encode() + pickle.dumps(comp.__getstate__())
    return _WORKER_COMPRESSORS.setdefault(key, comp)


def _task(comp: Compressor, kind: str, data: Dict[int, bytes], work: List[Tuple[Optional[int], List[int]]],
          threads: Optional[int] = None, shared: bool = True) -> List[float]:
    """Run one task: for each (anchor, others) in ``work``, the code lengths in order. ``threads``:
    torch's CPU thread count while it runs (a compressor with float_threads); ``shared``: reuse this
    process's copy of the compressor (in a worker)."""
    comp = _worker_compressor(comp) if shared else comp
    with _torch_threads(threads):
        out: List[float] = []
        for anchor, others in work:
            if kind == "bits":
                out += comp.bits_many([data[o] for o in others])
            elif kind == "joint":  # C(anchor + o) for each o
                out += comp.joint_bits([(data[anchor], data[o]) for o in others])
            else:  # "cond": C(o | anchor)
                out += comp.conditional_bits_many([data[o] for o in others], data[anchor])
    return out


def _torch_threads(n: Optional[int]):
    """Torch's CPU thread count set to ``n`` for a block and restored after (None: a no-op, torch untouched)."""
    if not n:
        return contextlib.nullcontext()
    from .lm.machine import using_threads
    return using_threads(n, "cpu")


def task_threads(comp: Compressor, threads: Optional[int], workers: int, executor: Optional[Executor]) -> Optional[int]:
    """torch's CPU threads per task for a compressor whose floats depend on it (None for the
    others): ``threads`` if given; else in this process torch's current count, in a pool of
    ``workers`` processes ``cpu_count // workers``, and 1 on another executor (one per worker slot)."""
    if not getattr(comp, "float_threads", False):
        return None
    if threads is not None:
        return check_int("threads", threads)
    if executor is not None:
        return 1
    if workers > 1:
        import os
        return max(1, (os.cpu_count() or 1) // workers)
    import torch
    return torch.get_num_threads()


class CodeLengths:
    """Computes singles, joint and conditional code lengths for index pairs, with cache and executor."""

    def __init__(self, comp: Compressor, data: Sequence[bytes], *, cache=True, workers: int = 1,
                 executor: Optional[Executor] = None, progress: bool = True, threads: Optional[int] = None):
        check_int("workers", workers)
        if executor is not None and not isinstance(executor, Executor):
            raise TypeError(f"executor must be a concurrent.futures.Executor, got {type(executor).__name__}")
        self.comp, self.data = comp, list(data)
        self.cache: Optional[ResultsCache] = open_cache(cache)
        self.workers, self.executor, self.progress = workers, executor, progress
        #: torch's threads per task (LMs: the floats depend on it, so the cache key holds it)
        self.threads = task_threads(comp, threads, workers, executor)
        self.cfg = config_hash(comp.config if self.threads is None else {**comp.config, "threads": self.threads})
        self.hashes = [content_hash(d) for d in self.data]
        self.digests = [bytes.fromhex(h) for h in self.hashes]
        self.digest_array = np.array(self.digests, dtype="S16")
        self.computed = 0  # quantities computed (not found in the cache), for reporting

    def _key(self, kind: str, *idx: int) -> str:
        return result_key(self.cfg, kind, *(self.hashes[i] for i in idx))

    def _lookup(self, kind: str, pairs: np.ndarray, out: np.ndarray) -> None:
        """Fill out[a, b] from the cache for each (a, b) in ``pairs``: one row read per a."""
        if not len(pairs):
            return
        order = np.argsort(pairs[:, 0], kind="stable")
        firsts, starts = np.unique(pairs[order, 0], return_index=True)
        for a, seconds in zip(firsts.tolist(), np.split(pairs[order, 1], starts[1:])):
            digests, bits = self.cache.get_row_arrays(self._key(kind, a))
            if not len(digests):
                continue
            want = self.digest_array[seconds]  # (m,) S16: fixed 16 bytes, compared exactly
            pos = np.minimum(np.searchsorted(digests, want), len(digests) - 1)
            hit = digests[pos] == want
            out[a, seconds[hit]] = bits[pos[hit]]

    def run(self, singles: Sequence[int], joint: Sequence[Tuple[int, int]], cond: Sequence[Tuple[int, int]]):
        """Code lengths in bits: arrays S[i] = C(i), J[i, j] = C(ij), K[i, j] = C(i | j) (NaN where not asked)."""
        n = len(self.data)
        S = np.full(n, np.nan)
        J = np.full((n, n), np.nan)
        K = np.full((n, n), np.nan)
        s_idx = np.unique(np.asarray(list(singles), dtype=np.int64))
        j_idx = np.asarray(joint, dtype=np.int64).reshape(-1, 2)
        k_idx = np.asarray(cond, dtype=np.int64).reshape(-1, 2)
        if self.cache is not None:
            found = self.cache.get_many([self._key("bits", int(i)) for i in s_idx])
            for i in s_idx.tolist():
                S[i] = found.get(self._key("bits", i), np.nan)
            self._lookup("joint", j_idx, J)
            K_t = np.full((n, n), np.nan)  # cond rows are keyed by the context (column)
            self._lookup("cond", k_idx[:, ::-1], K_t)
            K = K_t.T.copy()
        s_miss = s_idx[np.isnan(S[s_idx])]
        j_miss = np.zeros((n, n), dtype=bool)
        j_miss[j_idx[:, 0], j_idx[:, 1]] = True
        j_miss &= np.isnan(J)
        k_miss = np.zeros((n, n), dtype=bool)  # indexed [context, item]
        k_miss[k_idx[:, 1], k_idx[:, 0]] = True
        k_miss &= np.isnan(K.T)
        self.computed = int(len(s_miss) + j_miss.sum() + k_miss.sum())
        rows = {"joint": [(a, np.nonzero(j_miss[a])[0]) for a in np.nonzero(j_miss.any(1))[0].tolist()],
                "cond": [(a, np.nonzero(k_miss[a])[0]) for a in np.nonzero(k_miss.any(1))[0].tolist()]}
        self._execute(self._tasks(s_miss, rows), S, J, K)
        return S, J, K

    def _tasks(self, singles: np.ndarray, rows: Dict[str, List[Tuple[int, np.ndarray]]]) -> List[Tuple[str, list]]:
        """Tasks (kind, [(anchor, others)]): singles in chunks; rows of one anchor each, grouped.
        For a compressor with float_threads the plan is the same in one process or many (singles in
        chunks of SINGLES_PER_TASK, one row per task), so no value depends on where it ran."""
        if self.threads is not None:
            return ([("bits", [(None, singles[k:k + SINGLES_PER_TASK])]) for k in range(0, len(singles), SINGLES_PER_TASK)]
                    + [(kind, [row]) for kind, work in rows.items() for row in work])
        parallel = self.executor is not None or self.workers > 1
        tasks: List[Tuple[str, list]] = []
        if len(singles):
            step = max(1, -(-len(singles) // (4 * self.workers))) if parallel else len(singles)
            tasks += [("bits", [(None, singles[k:k + step])]) for k in range(0, len(singles), step)]
        for kind, work in rows.items():
            per_task = max(1, len(work) // (4 * max(self.workers, 2))) if parallel else 1
            tasks += [(kind, work[k:k + per_task]) for k in range(0, len(work), per_task)]
        return tasks

    def _task_args(self, task):
        """What a task carries: the compressor (its options, never weights), the data it needs, its work."""
        kind, work = task
        needed = {int(i) for _, others in work for i in others} | {a for a, _ in work if a is not None}
        return (self.comp, kind, {i: self.data[i] for i in needed}, [(a, others.tolist()) for a, others in work],
                self.threads)

    def _execute(self, tasks, S: np.ndarray, J: np.ndarray, K: np.ndarray) -> None:
        total = sum(len(o) for t in tasks for _, o in t[1])
        # one bar for the whole job; the compressors' own bars (the LM's per row) stay silent
        bar = _progress.bar(total, f"kolmo matrix ({self.comp.name})", "code", bool(self.progress))
        singles: List[Tuple[str, float]] = []
        rows: Dict[str, Dict[bytes, float]] = {}
        last = [time.monotonic()]

        def flush():
            if self.cache is not None:
                self.cache.put_many(singles)
                self.cache.put_rows(rows)
            singles.clear()
            rows.clear()
            last[0] = time.monotonic()

        def done(task, result):
            kind, work = task
            values = np.asarray(result, dtype=np.float64)
            k = 0
            for a, others in work:
                seg = values[k:k + len(others)]
                k += len(others)
                if kind == "bits":
                    S[others] = seg
                    singles.extend((self._key("bits", i), v) for i, v in zip(others.tolist(), seg.tolist()))
                    continue
                if kind == "joint":
                    J[a, others] = seg
                else:  # C(other | anchor): the anchor is the context, the column
                    K[others, a] = seg
                # rows are keyed by the anchor: the first item of a joint pair, a condition's context
                row = rows.setdefault(self._key(kind, a), {})
                row.update(zip([self.digests[o] for o in others.tolist()], seg.tolist()))
            bar.update(len(values))
            if time.monotonic() - last[0] > 1.0:  # commit about once a second: resumable, and cheap
                flush()


        try:
            if not tasks:
                return
            if self.executor is None and self.workers == 1:
                with _progress.silenced():
                    for t in tasks:
                        done(t, _task(*self._task_args(t), shared=False))
                return
            self._run_parallel(tasks, done)
        finally:
            flush()
            bar.close()


    def _run_parallel(self, tasks, done) -> None:
        """Run ``tasks`` on the executor, or on a pool of ``workers`` processes started again (up to
        RETRIES times) for the unfinished tasks when a worker dies; results reach ``done`` as they
        arrive, so a dead worker costs its tasks a retry, never a partial result."""
        if self.executor is not None:
            futures = {self.executor.submit(_task, *self._task_args(t)): t for t in tasks}
            for fut in as_completed(futures):
                done(futures[fut], fut.result())
            return
        import multiprocessing
        from concurrent.futures.process import BrokenProcessPool
        # a fresh interpreter per worker for the LMs (torch's threads do not survive a fork)
        ctx = multiprocessing.get_context("spawn") if self.threads is not None else None
        pending = list(range(len(tasks)))
        for attempt in range(RETRIES + 1):
            ex = ProcessPoolExecutor(self.workers, mp_context=ctx)
            futures = {ex.submit(_task, *self._task_args(tasks[i])): i for i in pending}
            try:
                for fut in as_completed(futures):
                    done(tasks[futures[fut]], fut.result())
                    pending.remove(futures[fut])
                return
            except BrokenProcessPool:
                if attempt == RETRIES:
                    raise KolmoError(f"a worker process died {RETRIES + 1} times while computing the matrix "
                                     f"({len(pending)} tasks unfinished; what finished is in the cache)") from None
            finally:
                ex.shutdown(wait=True, cancel_futures=True)


def matrix(items: Any, compressor: Union[str, Compressor] = "zstd", measure: str = "ncd", *,
           cache: Union[bool, str, Path, ResultsCache, None] = True, workers: int = 1,
           executor: Optional[Executor] = None, progress: bool = True, threads: Optional[int] = None,
           **options: Any) -> DistanceMatrix:
    """An n x n matrix of ``measure`` over ``items`` (see the module docstring).

    ``workers``: processes of a local pool; ``executor``: any ``concurrent.futures.Executor`` of
    processes (Dask's ``client.get_executor()``); ``threads``: torch's CPU threads per task for
    the language models (see :func:`task_threads`).

    ``items``: a dict label -> input, a list of inputs, or a folder (one item per file), labelled as
    :func:`kolmo.inputs.as_collection` says.
    """
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {', '.join(MEASURES)}; got {measure!r}")
    with _progress.silenced(progress is False):  # False silences everything underneath too
        return _matrix(items, compressor, measure, cache, workers, executor, progress, threads, options)


def _matrix(items, compressor, measure, cache, workers, executor, show, threads, options) -> DistanceMatrix:
    labels, data = as_collection(items, name="items")
    comp = resolve(compressor, **options)
    n = len(data)
    found: Tuple[str, ...] = ()
    if n >= 2:  # the two longest items; stacklevel: warn_window, _matrix, matrix, caller
        found = warn_window(comp, sum(sorted(map(len, data))[-2:]), stacklevel=4)
    eng = CodeLengths(comp, data, cache=cache, workers=workers, executor=executor, progress=show, threads=threads)
    pairs = np.stack(np.meshgrid(np.arange(n), np.arange(n), indexing="ij"), axis=-1).reshape(-1, 2)
    if measure == "conditional":
        c, _, m = eng.run(range(n), [], pairs)
    else:
        c, jn, _ = eng.run(range(n), pairs, [])
        if measure == "ncd":
            m = ncd_array(c[:, None], c[None, :], jn, jn.T)
        elif measure == "gap":
            m = c[:, None] + c[None, :] - jn
        else:
            m = jn
    return DistanceMatrix(values=m, labels=tuple(labels), measure=measure, compressor=comp.name,
                          config=dict(comp.config), singles=c, bits_kind=comp.bits_kind, warnings=found)
