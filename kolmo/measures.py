"""Measures built on a compressor C, all in bits.

Definitions (X first, then Y, in ``XY``):

* ``c_x = C(X)``, ``c_y = C(Y)``, ``c_xy = C(XY)``, ``c_yx = C(YX)``: code lengths of the
  inputs and of their byte concatenations (no separator is inserted), from
  ``Compressor.joint_bits``: compressors compress the concatenated bytes, except zstd and zlib
  with ``joint="two-part"``, which code XY in two parts, C(X) + C(Y | X) primed by a dictionary.
  ``shape_x`` / ``shape_y`` record the shapes of numpy array inputs (None for other inputs).
* ``gap = C(X) + C(Y) - C(XY)``: the saving from compressing X and Y together, an estimate of
  the algorithmic mutual information I(X:Y). Order: X first, so the compressor reads X and then
  uses it to code Y. ``c_yx`` is reported so the asymmetry C(XY) - C(YX) can be checked.
* ``ncd = (min(C(XY), C(YX)) - min(C(X), C(Y))) / max(C(X), C(Y))``: Cilibrasi and Vitanyi's
  normalized compression distance, made symmetric by taking the better of the two orders (as
  textdistance and most NCD tools do); 0.0 when C(X) = C(Y) = 0.
* ``c_y_given_x = C(Y | X)``, ``c_x_given_y = C(X | Y)``: the compressor's conditional code length
  (``Compressor.conditional_bits``); ``conditional_method`` says whether the codec was primed
  with the context (``dictionary``, ``kv-cache``) or it was ``C(XY) - C(X)`` (``concatenation``).

``bits_kind`` says whether the numbers are sizes of real decodable streams (``compressed``) or
ideal code lengths sum(-log2 p) (``ideal``, the language-model compressor).

Every measure (these, ``kolmo.matrix``, the significance tests, ``kolmo.explain``) issues the
compressor's window warnings through :func:`warn_window` and records them in its result.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, Optional, Tuple, Union

from . import progress as _progress
from .compressors.base import Compressor
from .errors import WindowWarning
from .inputs import Data, as_dataset, shape_of
from .registry import resolve

CompressorLike = Union[str, Compressor]


def ncd_from(c_x: float, c_y: float, c_xy: float, c_yx: float) -> float:
    """(min(C(XY), C(YX)) - min(C(X), C(Y))) / max(C(X), C(Y)); 0.0 when both are empty."""
    hi = max(c_x, c_y)
    if hi <= 0:
        return 0.0
    return (min(c_xy, c_yx) - min(c_x, c_y)) / hi


def ncd_array(c_x, c_y, c_xy, c_yx):
    """:func:`ncd_from` elementwise on numpy arrays (broadcasting), with the same float operations."""
    import numpy as np
    hi = np.maximum(c_x, c_y)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (np.minimum(c_xy, c_yx) - np.minimum(c_x, c_y)) / hi
    return np.where(hi > 0, out, 0.0)


@dataclass(frozen=True)
class JointGapResult:
    """C(X), C(Y), C(XY) and what follows from them; see :mod:`kolmo.measures` for definitions."""

    c_x: float
    c_y: float
    c_xy: float
    c_yx: float
    c_y_given_x: float
    c_x_given_y: float
    n_x: int
    n_y: int
    compressor: str
    config: Dict[str, Any] = field(repr=False)
    bits_kind: str = "compressed"
    conditional_method: str = "concatenation"
    warnings: Tuple[str, ...] = ()
    #: the shapes of numpy array inputs (their bytes are the elements in C order); None for other inputs
    shape_x: Optional[Tuple[int, ...]] = None
    shape_y: Optional[Tuple[int, ...]] = None
    #: documents joined into X and Y when a dataset was given (kolmo.inputs.as_dataset); None: one input
    documents_x: Optional[int] = None
    documents_y: Optional[int] = None
    #: the bytes put between documents (as Latin-1 text), where a side was a dataset
    separator: Optional[str] = None

    @property
    def gap(self) -> float:
        """C(X) + C(Y) - C(XY), in bits."""
        return self.c_x + self.c_y - self.c_xy

    @property
    def ncd(self) -> float:
        """(min(C(XY), C(YX)) - min(C(X), C(Y))) / max(C(X), C(Y)); dimensionless."""
        return ncd_from(self.c_x, self.c_y, self.c_xy, self.c_yx)

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["warnings"] = list(self.warnings)
        d.update(gap=self.gap, ncd=self.ncd, units="bits")
        return d

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "JointGapResult":
        """Rebuild a result saved with :meth:`to_dict` (or read back from :meth:`to_json`)."""
        names = [f.name for f in fields(cls)]
        optional = ("bits_kind", "conditional_method", "warnings", "shape_x", "shape_y")  # older saves lack some
        missing = [n for n in names if n not in d and n not in optional]
        if missing:
            raise ValueError(f"not a saved JointGapResult: missing {', '.join(missing)}")
        kw = {n: d[n] for n in names if n in d}
        kw["warnings"] = tuple(kw.get("warnings", ()))
        for k in ("shape_x", "shape_y"):  # JSON keeps tuples as lists
            if kw.get(k) is not None:
                kw[k] = tuple(int(v) for v in kw[k])
        return cls(**kw)

    def __repr__(self) -> str:
        kind = "real compressed sizes" if self.bits_kind == "compressed" else "ideal code lengths"
        def size(n: int, shape: Optional[Tuple[int, ...]]) -> str:
            return f"{n} bytes" + ("" if shape is None else f", array of shape {shape}")

        rows = [
            ("C(X)", self.c_x, size(self.n_x, self.shape_x)),
            ("C(Y)", self.c_y, size(self.n_y, self.shape_y)),
            ("C(XY)", self.c_xy, ""),
            ("C(YX)", self.c_yx, ""),
            ("C(Y|X)", self.c_y_given_x, self.conditional_method),
            ("C(X|Y)", self.c_x_given_y, self.conditional_method),
            ("gap", self.gap, "C(X)+C(Y)-C(XY)"),
        ]
        lines = [f"JointGapResult({self.compressor}, {kind}, bits)"]
        lines += [f"  {k:<7}{v:>14.1f}  {note}".rstrip() for k, v, note in rows]
        lines.append(f"  {'ncd':<7}{self.ncd:>14.4f}")
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def warn_window(comp: Compressor, n_bytes: int, *, stacklevel: int) -> Tuple[str, ...]:
    """Issue ``comp.window_warnings(n_bytes)`` as :class:`~kolmo.errors.WindowWarning`; return them.

    Every measure calls this once, before it compresses, and records what it returns in its
    result's ``warnings``. ``stacklevel`` is counted as :func:`warnings.warn` counts it from here:
    2 is the caller of this function; pass the frames up to the user's call (3 when a public
    function calls this directly).
    """
    found = tuple(comp.window_warnings(n_bytes))
    for w in found:
        warnings.warn(w, WindowWarning, stacklevel=stacklevel)
    return found


def joint_gap(x: Data, y: Data, compressor: CompressorLike = "zstd", *, progress: Optional[bool] = None,
              **options: Any) -> JointGapResult:
    """Compress X, Y, XY and YX with one compressor and return a :class:`JointGapResult`.

    ``compressor`` is a registry name (built with ``options``) or a Compressor instance.
    ``progress=False`` silences every progress bar underneath (the LM's, model loading);
    None shows them for long work only.
    """
    with _progress.silenced(progress is False):
        return _joint_gap(x, y, compressor, options)


def _joint_gap(x: Data, y: Data, compressor: CompressorLike, options: Dict[str, Any]) -> JointGapResult:
    comp = resolve(compressor, **options)
    (bx, docs_x), (by, docs_y) = (as_dataset(x, comp.document_separator, name="x"),
                                  as_dataset(y, comp.document_separator, name="y"))
    found = warn_window(comp, len(bx) + len(by), stacklevel=4)  # warn_window, _joint_gap, joint_gap, caller
    c_x, c_y = comp.bits_many([bx, by])
    c_xy, c_yx = comp.joint_bits([(bx, by), (by, bx)])
    if comp.conditional_method in ("concatenation", "dictionary"):
        # C(Y|X) = C(XY) - C(X) exactly for both: by definition for "concatenation", and because a
        # primed codec's joint code is the two-part C(X) + C(Y|X) (Compressor.joint_bits)
        c_y_given_x, c_x_given_y = c_xy - c_x, c_yx - c_y
    else:
        c_y_given_x = comp.conditional_bits(by, bx)
        c_x_given_y = comp.conditional_bits(bx, by)
    return JointGapResult(
        c_x=c_x, c_y=c_y, c_xy=c_xy, c_yx=c_yx, c_y_given_x=c_y_given_x, c_x_given_y=c_x_given_y,
        n_x=len(bx), n_y=len(by), compressor=comp.name, config=dict(comp.config),
        bits_kind=comp.bits_kind, conditional_method=comp.conditional_method, warnings=found,
        shape_x=shape_of(x), shape_y=shape_of(y), documents_x=docs_x, documents_y=docs_y,
        separator=None if docs_x is None and docs_y is None else comp.document_separator.decode("latin-1"))


def ncd(x: Data, y: Data, compressor: CompressorLike = "zstd", *, progress: Optional[bool] = None,
        **options: Any) -> float:
    """Normalized compression distance (min(C(XY), C(YX)) - min(C(X), C(Y))) / max(C(X), C(Y))."""
    with _progress.silenced(progress is False):
        comp = resolve(compressor, **options)
        bx, by = (as_dataset(v, comp.document_separator, name=n)[0] for v, n in ((x, "x"), (y, "y")))
        warn_window(comp, len(bx) + len(by), stacklevel=3)
        c_x, c_y = comp.bits_many([bx, by])
        c_xy, c_yx = comp.joint_bits([(bx, by), (by, bx)])
        return ncd_from(c_x, c_y, c_xy, c_yx)


def conditional_bits(y: Data, given: Data, compressor: CompressorLike = "zstd", *,
                     progress: Optional[bool] = None, **options: Any) -> float:
    """C(Y | X=given) in bits: see ``Compressor.conditional_bits`` for how each codec conditions."""
    with _progress.silenced(progress is False):
        comp = resolve(compressor, **options)
        by, bx = (as_dataset(v, comp.document_separator, name=n)[0] for v, n in ((y, "y"), (given, "given")))
        warn_window(comp, len(bx) + len(by), stacklevel=3)
        return comp.conditional_bits(by, bx)
