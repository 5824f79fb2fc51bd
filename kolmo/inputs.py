"""The single place that knows which input types kolmo accepts.

Every public function turns its data arguments into ``bytes`` with :func:`as_bytes`:

* ``bytes``, ``bytearray``, ``memoryview``: taken as they are (a copy is made);
* ``str``: the text itself, encoded as UTF-8 (a ``str`` is never read as a file name);
* ``pathlib.Path`` (any ``os.PathLike``): the file's contents, read as bytes;
* a numpy array (or numpy scalar) of dtype ``uint8``, ``int8`` or ``bool``: its elements' bytes
  in C order (row after row, whatever the array's memory layout, so a transposed view gives the
  transpose's rows), one byte per element: ``int8`` as two's complement (the bytes of
  ``arr.view(np.uint8)``), ``bool`` as 0 or 1 (not bit-packed: ``np.packbits(arr)`` packs eight
  to a byte). Other dtypes raise ``TypeError``: their bytes depend on choices kolmo will not guess
  (scale to 0..255 and ``astype(np.uint8)``, or fix a byte order with
  ``arr.astype("<i2").tobytes()``). Masked arrays are refused (fill them first). Measures record
  an array's shape (``JointGapResult.shape_x`` / ``shape_y``, from :func:`shape_of`).

Anything else raises ``TypeError``. Empty input is valid. numpy is never imported here: an object
can only be a numpy array once numpy has been imported.

Functions over many items (``kolmo.matrix``, the significance tests, the classifier) take a
collection of inputs, turned into labels and bytes by :func:`as_collection`:

* a dict label -> input: its labels (as ``str``) and inputs, in the dict's order;
* a list or tuple of inputs: paths labelled by their file names, other items by their positions
  ``"0"``, ``"1"``, ...; all by their positions if two labels would be the same;
* a folder (a ``pathlib.Path`` or a ``str`` naming a directory): one item per file directly in
  it, hidden files left out, sorted by name and labelled by it.

A single input (bytes, a ``str`` that names no folder, a file's path, a numpy array) is refused
with ``TypeError``, as is anything else. Any other iterable of inputs (a pandas Series, a Hugging
Face ``datasets`` column, a generator) counts as a list of them; no library is imported to tell.

A **dataset** is one argument too: where a measure takes one input (``joint_gap``'s x and y,
``conditional_bits``' y and ``given``, ``ncd``, ``explain``, ``gap_test``), a collection of
documents is joined into one input by :func:`as_dataset`, with the compressor's
``document_separator`` between documents (one rule per family: ``b"\n\n"`` for the language
models, a paragraph break every text model has seen; ``b"\x1e"``, ASCII's record separator, for
the classical codecs). Results record how many documents each side joined.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, List, Mapping, Optional, Tuple, Union

Data = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]", "numpy.ndarray"]

_EXPECTED = "bytes, bytearray, memoryview, str (UTF-8 text), a pathlib.Path or a numpy uint8 array"
#: numpy dtypes taken as their bytes, one byte per element
ARRAY_DTYPES = ("uint8", "int8", "bool")


def _ndarray(data: Any):
    """``data`` if it is a numpy array (a numpy scalar as a 0-d array), else None; never imports numpy."""
    np = sys.modules.get("numpy")
    if np is not None and isinstance(data, np.ndarray):
        return data
    if np is not None and isinstance(data, np.generic):
        return np.asarray(data)
    return None


def _array_bytes(arr: Any, name: str) -> bytes:
    if arr.dtype.name not in ARRAY_DTYPES:
        how = "pass arr.tobytes() if its raw memory is what you mean"
        if arr.dtype.kind in "US":
            how = "join its strings and pass them as one str or bytes"
        elif arr.dtype.kind in "iuf":
            how = ("convert it first: scale it to 0..255 and use arr.astype(np.uint8), or take its raw bytes "
                   f"in a fixed byte order, arr.astype('<{arr.dtype.kind}{arr.dtype.itemsize}').tobytes()")
        raise TypeError(f"{name}: expected a numpy array of dtype uint8 (or int8, bool: one byte per element), "
                        f"got a {arr.dtype} array of shape {arr.shape}; {how}")
    ma = sys.modules.get("numpy.ma")  # not imported: arr cannot be a masked array
    if ma is not None and isinstance(arr, ma.MaskedArray):
        raise TypeError(f"{name}: a masked array's masked elements have no defined bytes; "
                        "fill them first, e.g. arr.filled(0)")
    return arr.tobytes(order="C")


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
    arr = _ndarray(data)
    if arr is not None:
        return _array_bytes(arr, name)
    hint = ""
    if isinstance(data, (list, tuple)):
        hint = " (to compare many items, use kolmo.matrix)"
    raise TypeError(f"{name}: expected {_EXPECTED}, got {type(data).__name__}{hint}")


def as_collection(items: Any, *, name: str = "items") -> Tuple[List[str], List[bytes]]:
    """Labels and bytes of a collection of inputs (see the module docstring); ``name`` is used in errors."""
    if isinstance(items, (str, os.PathLike)) and os.path.isdir(items):
        files = sorted(p for p in Path(items).iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise ValueError(f"{name}: folder {str(items)!r} holds no files to compare")
        return [p.name for p in files], [p.read_bytes() for p in files]
    if isinstance(items, Mapping):
        return [str(k) for k in items], [as_bytes(v, name=f"{name}[{k!r}]") for k, v in items.items()]
    if not isinstance(items, (list, tuple)) and _iterable_collection(items):
        items = list(items)
    if isinstance(items, (list, tuple)):
        labels = [Path(v).name if isinstance(v, os.PathLike) else str(i) for i, v in enumerate(items)]
        if len(set(labels)) < len(labels):
            labels = [str(i) for i in range(len(items))]
        return labels, [as_bytes(v, name=f"{name}[{i}]") for i, v in enumerate(items)]
    if isinstance(items, (bytes, bytearray, memoryview, str, os.PathLike)) or _ndarray(items) is not None:
        where = f" ({str(items)!r} is not a folder)" if isinstance(items, os.PathLike) else ""
        raise TypeError(f"{name} must be a sequence of items (a list, a dict label -> item, or a folder), "
                        f"not a single {type(items).__name__}{where}")
    raise TypeError(f"{name} must be a list of items, a dict label -> item, or a folder; got {type(items).__name__}")


def _iterable_collection(data: Any) -> bool:
    """An iterable that is no single input (a Series, a datasets column, a generator, a set)."""
    if isinstance(data, (bytes, bytearray, memoryview, str, os.PathLike, Mapping)) or _ndarray(data) is not None:
        return False
    return hasattr(data, "__iter__")


def is_dataset(data: Any) -> bool:
    """Whether ``data`` is a collection of documents rather than one input (module docstring)."""
    if isinstance(data, os.PathLike):
        return Path(data).is_dir()
    return isinstance(data, (Mapping, list, tuple)) or _iterable_collection(data)


def as_dataset(data: Any, separator: bytes, *, name: str = "data") -> Tuple[bytes, Optional[int]]:
    """``(bytes, documents)``: one input as :func:`as_bytes` gives it (documents None), or a
    collection's documents joined with ``separator`` (module docstring)."""
    if not is_dataset(data):
        return as_bytes(data, name=name), None
    _, docs = as_collection(data, name=name)
    return separator.join(docs), len(docs)


def shape_of(data: Any) -> Optional[Tuple[int, ...]]:
    """The shape of a numpy array input, as a tuple of ints; ``None`` for every other input."""
    arr = _ndarray(data)
    return None if arr is None else tuple(int(k) for k in arr.shape)
