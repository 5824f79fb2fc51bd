"""The single place that knows which input types kolmo accepts.

Every public function turns its data arguments into ``bytes`` with :func:`as_bytes`:

* ``bytes``, ``bytearray``, ``memoryview``: taken as they are (a copy is made);
* ``str``: the text itself, encoded as UTF-8 (a ``str`` is never read as a file name);
* ``pathlib.Path`` (any ``os.PathLike``): the file's contents, read as bytes.

Anything else raises ``TypeError``. Empty input is valid.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

Data = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]"]

_EXPECTED = "bytes, bytearray, memoryview, str (UTF-8 text) or a pathlib.Path"


def as_bytes(data: Data, *, name: str = "data") -> bytes:
    """Return ``data`` as ``bytes`` (see the module docstring for the accepted types)."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, os.PathLike):
        path = Path(data)
        if not path.is_file():
            what = "a directory" if path.is_dir() else "missing"
            raise FileNotFoundError(f"{name}: expected a readable file, but {str(path)!r} is {what}")
        return path.read_bytes()
    hint = ""
    if isinstance(data, (list, tuple)):
        hint = " (to compare many items, use kolmo.matrix)"
    raise TypeError(f"{name}: expected {_EXPECTED}, got {type(data).__name__}{hint}")
