"""A persistent cache of code lengths in SQLite (stdlib ``sqlite3``, WAL mode).

One row per result: ``key -> bits``. The key is a SHA-256 over the compressor's full ``config``
(codec and library versions, level, model fingerprint), the kind of quantity (``bits``, ``joint``,
``cond``) and the SHA-256 of every input involved, so a cached number is only reused for the same
bytes measured the same way.

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


def cache_dir() -> Path:
    """kolmo's cache directory: ``$KOLMO_CACHE_DIR`` or the platform's user cache dir."""
    env = os.environ.get("KOLMO_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs
    return Path(platformdirs.user_cache_dir("kolmo"))


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def config_hash(config: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def result_key(cfg_hash: str, kind: str, *hashes: str) -> str:
    return hashlib.sha256("|".join((cfg_hash, kind) + hashes).encode()).hexdigest()


class ResultsCache:
    """Code lengths keyed by :func:`result_key`, stored in one SQLite file."""

    def __init__(self, path: Union[str, Path, None] = None):
        if path is None:
            path = cache_dir() / "results.sqlite"
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._conn() as con:
            con.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, bits REAL NOT NULL)")

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
        return self._conn().execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def clear(self) -> None:
        self._conn().execute("DELETE FROM results")

    def __repr__(self) -> str:
        return f"ResultsCache({str(self.path)!r})"


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
