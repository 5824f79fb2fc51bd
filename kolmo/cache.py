"""A persistent cache of code lengths in SQLite (stdlib ``sqlite3``, WAL mode).

Keys join a SHA-256 of the compressor's full ``config`` (codec and library versions, level, model
fingerprint), the kind of quantity (``bits``, ``joint``, ``cond``) and the SHA-256 of every input
involved (each truncated to 128 bits), so a cached number is only reused for the same bytes
measured the same way. Two tables:

``results``  one row per single quantity: ``key -> bits`` (C(x), keyed by x).
``rows``     one row per (config, kind, anchor item), a blob of (16-byte digest of the other item,
             float64 bits) records: a matrix row of C(anchor + other) or C(other | anchor) is
             read and written as one row, so a warm 200 x 200 matrix is 200 reads, not 40,000.

Several processes may read and write at once (WAL journal, busy timeout). Every write is a
transaction, so a process killed mid-write leaves the previous state and no partial entry.
The default file is ``<cache>/results.sqlite`` (``$KOLMO_CACHE_DIR`` or the user cache dir).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence, Tuple, Union

import numpy as np


def cache_dir() -> Path:
    """kolmo's cache directory: ``$KOLMO_CACHE_DIR`` or the platform's user cache dir."""
    env = os.environ.get("KOLMO_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs
    return Path(platformdirs.user_cache_dir("kolmo"))


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def config_hash(config: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:32]


def result_key(cfg_hash: str, kind: str, *hashes: str) -> str:
    return ":".join((cfg_hash, kind) + hashes)


class ResultsCache:
    """Code lengths keyed by :func:`result_key`, stored in one SQLite file."""

    def __init__(self, path: Union[str, Path, None] = None):
        if path is None:
            path = cache_dir() / "results.sqlite"
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._conn() as con:
            con.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, bits REAL NOT NULL) WITHOUT ROWID")
            con.execute("CREATE TABLE IF NOT EXISTS rows (key TEXT PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID")

    def _conn(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(str(self.path), timeout=60.0, isolation_level=None)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            self._local.con = con
        return con

    def get_many(self, keys: Sequence[str]) -> Dict[str, float]:
        out: Dict[str, float] = {}
        con = self._conn()
        for i in range(0, len(keys), 500):
            part = list(keys[i:i + 500])
            q = f"SELECT key, bits FROM results WHERE key IN ({','.join('?' * len(part))})"
            out.update(con.execute(q, part).fetchall())
        return out

    def get_row(self, key: str) -> Dict[bytes, float]:
        """The row ``key``: 16-byte digest of the other item -> bits (empty if absent)."""
        got = self._conn().execute("SELECT data FROM rows WHERE key = ?", (key,)).fetchone()
        return _unpack_row(got[0]) if got else {}

    def get_row_arrays(self, key: str) -> Tuple[np.ndarray, np.ndarray]:
        """The row ``key`` as arrays: digests (dtype S16, sorted) and their bits (float64)."""
        got = self._conn().execute("SELECT data FROM rows WHERE key = ?", (key,)).fetchone()
        arr = np.frombuffer(got[0], dtype=_ROW) if got else np.empty(0, dtype=_ROW)
        order = np.argsort(arr["digest"], kind="stable")
        return arr["digest"][order], arr["bits"][order]

    def put_rows(self, rows: Mapping[str, Mapping[bytes, float]]) -> None:
        """Merge entries into rows, all in one transaction (atomic if the process dies)."""
        if not rows:
            return
        con = self._conn()
        con.execute("BEGIN IMMEDIATE")
        try:
            for key, entries in rows.items():
                got = con.execute("SELECT data FROM rows WHERE key = ?", (key,)).fetchone()
                merged = _unpack_row(got[0]) if got else {}
                merged.update(entries)
                con.execute("INSERT OR REPLACE INTO rows (key, data) VALUES (?, ?)", (key, _pack_row(merged)))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def put_many(self, items: Iterable[Tuple[str, float]]) -> None:
        rows = [(k, float(v)) for k, v in items]
        if not rows:
            return
        con = self._conn()
        con.execute("BEGIN IMMEDIATE")
        try:
            con.executemany("INSERT OR REPLACE INTO results (key, bits) VALUES (?, ?)", rows)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def __len__(self) -> int:
        """Number of cached quantities (single entries plus the entries of every row)."""
        con = self._conn()
        n = con.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        n += con.execute(f"SELECT COALESCE(SUM(LENGTH(data)), 0) / {_ROW.itemsize} FROM rows").fetchone()[0]
        return int(n)

    def clear(self) -> None:
        con = self._conn()
        con.execute("DELETE FROM results")
        con.execute("DELETE FROM rows")

    def __repr__(self) -> str:
        return f"ResultsCache({str(self.path)!r})"


_ROW = np.dtype([("digest", "S16"), ("bits", "<f8")])


def _pack_row(entries: Mapping[bytes, float]) -> bytes:
    arr = np.empty(len(entries), dtype=_ROW)
    arr["digest"] = list(entries.keys())
    arr["bits"] = list(entries.values())
    return arr.tobytes()


def _unpack_row(blob: bytes) -> Dict[bytes, float]:
    arr = np.frombuffer(blob, dtype=_ROW)
    raw = arr["digest"].tobytes()  # not .tolist(): numpy would strip a digest's trailing NUL bytes
    return dict(zip((raw[k:k + 16] for k in range(0, len(raw), 16)), arr["bits"].tolist()))


def open_cache(cache: Union[bool, str, Path, ResultsCache, None]) -> Optional[ResultsCache]:
    """``True``: the default file; ``False``/``None``: no cache; a path; or a ResultsCache."""
    if cache is True:
        return ResultsCache()
    if cache is False or cache is None:
        return None
    if isinstance(cache, ResultsCache):
        return cache
    if isinstance(cache, (str, Path)):
        return ResultsCache(cache)
    raise TypeError(f"cache must be True, False, a file path or a ResultsCache, got {type(cache).__name__}")
