"""The compressor interface.

Every compressor has a ``name``, a ``config`` dict that pins every setting that changes a result
(codec and its version, level, model fingerprint), and four operations on bytes:

``bits(data)``
    Code length of ``data`` in bits. For the classical codecs it is the size of a real, decodable
    stream minus the codec's constant overhead (see below); for the language-model compressor it is
    the ideal code length sum(-log2 p) on the same schedule that ``compress`` codes.
    ``bits_kind`` says which: ``"compressed"`` or ``"ideal"``.
``compress(data) -> bytes`` / ``decompress(blob) -> bytes``
    A real round trip. The stream is wrapped in kolmo's container (:mod:`kolmo.framing`) with the
    original length and CRC-32, so a damaged stream raises :class:`~kolmo.errors.CorruptStreamError`
    instead of returning wrong bytes.
``conditional_bits(data, context)``
    Code length of ``data`` when encoder and decoder both already hold ``context``.
    ``conditional_method`` records how: ``"dictionary"`` (the codec is primed with ``context``),
    ``"kv-cache"`` (a language model reads ``context`` first), or ``"concatenation"``
    (``bits(context + data) - bits(context)``, for codecs that cannot be primed).
``joint_bits(pairs)``
    C(XY) for each pair (x, y): the code length of the concatenation x + y, compressed as such by
    default. Codecs that can be primed with a dictionary (zstd, zlib) offer, with
    ``joint="two-part"``, the two-part code ``C(XY) = C(X) + C(Y | X)`` (X's stream, then Y's
    stream primed with X: a real decodable code of XY that never recompresses X, so a matrix over
    n items costs n compressions plus n^2 primed ones); see :class:`CodecCompressor`.
``code_parts(data, given=None, block=None)``
    The code length of ``data`` (alone, or given ``given``) split into parts of ``data``: a
    :class:`CodeParts`, which :func:`kolmo.explain` turns into an information map. The default
    measures blocks of bytes by incremental compressed sizes of prefixes (an approximation whose
    sum is exact); token models override it with their exact per-token code lengths.

Overhead, in one place: for a codec ``E``, ``bits(x) = 8 * (len(E(x)) - len(E(b"")))``, clamped at 0.
``len(E(b""))`` is the codec's constant header/trailer cost (9 bytes for zstd, 14 for bzip2, ...):
the decoder knows it in advance, so it carries no information about ``x``. Thus ``bits(b"") == 0``
and short inputs are not biased upwards by a constant. kolmo's own container is not counted either.

Window sizing: codecs whose window can grow are sized by :meth:`CodecCompressor._params` to the
total length they are given. Those that cannot (zlib's 32 KiB, bzip2's 900 kB blocks) report it
through :meth:`Compressor.window_warnings`, which the measures turn into a
:class:`~kolmo.errors.WindowWarning` and record in their result.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .. import framing
from ..errors import CorruptStreamError
from ..inputs import Data, as_bytes

#: the joint codes a primed codec offers: C(X) + C(Y|X), or the compressed concatenation
JOINT_MODES = ("two-part", "concat")
#: the kinds of part a :class:`CodeParts` holds
PART_UNITS = ("token", "block")


@dataclass(frozen=True)
class CodeParts:
    """A code length split into consecutive parts of the input, in bits (:meth:`Compressor.code_parts`).

    ``spans``
        ``(start, end)`` byte offsets of each part in the input, in order and without gaps: the
        first starts at 0, each starts where the one before ends, the last ends at ``len(input)``
        (no parts for empty input). A part may be empty (a token that spells no whole byte).
    ``bits``
        Each part's code length, in bits.
    ``unit``
        ``"token"``: one part per token of a token model; exact: each part is a term of the code,
        -log2 p of the token given everything before it (and the context, if any), so the parts add
        up to ``bits(data)`` or ``conditional_bits(data, given)`` (to float rounding).
        ``"block"``: blocks of ``block`` bytes (the last may be shorter) measured by incremental
        compressed sizes, part k = C(input[:end_k]) - C(input[:end_{k-1}]); an approximation:
        compressed sizes are not additive per block, so a part depends on where the cuts fall and
        can be negative, but the sum telescopes to the code length of the whole input.
    ``block``
        Bytes per part for ``"block"``; None for ``"token"``.

    Spans and bits are stored as tuples of ints and floats (lists and numpy arrays are converted).
    """

    spans: Tuple[Tuple[int, int], ...]
    bits: Tuple[float, ...]
    unit: str
    block: Optional[int] = None

    def __post_init__(self) -> None:
        spans = tuple((int(a), int(b)) for a, b in self.spans)
        bits = tuple(float(b) for b in self.bits)
        object.__setattr__(self, "spans", spans)
        object.__setattr__(self, "bits", bits)
        if self.unit not in PART_UNITS:
            raise ValueError(f"unit must be one of {', '.join(PART_UNITS)}; got {self.unit!r}")
        if (self.block is None) != (self.unit == "token"):
            raise ValueError(f"block must be None for token parts and bytes per part for blocks; "
                             f"got unit={self.unit!r}, block={self.block!r}")
        if len(bits) != len(spans):
            raise ValueError(f"{len(spans)} spans but {len(bits)} code lengths")
        ends = [0] + [b for _, b in spans]
        if any(a != e or b < a for (a, b), e in zip(spans, ends)):
            raise ValueError("spans must cover the input in order, without gaps: each (start, end) starts "
                             "where the one before ends, the first at 0")

    @property
    def total(self) -> float:
        """The sum of the parts, in bits: the code length of the whole input."""
        return math.fsum(self.bits)


class Compressor(abc.ABC):
    """Base class of all compressors (the interface documented in this module)."""

    name: str = "?"
    bits_kind: str = "compressed"
    #: joins the documents of a dataset given as one argument (kolmo.inputs.as_dataset): ASCII's
    #: record separator for the codecs; the language models use a paragraph break
    document_separator: bytes = b"\x1e"
    conditional_method: str = "concatenation"
    #: bytes the codec can see at once; ``None`` when it is sized to the input
    window_bytes: Optional[int] = None

    @property
    @abc.abstractmethod
    def config(self) -> Dict[str, Any]:
        """Every setting that changes a result, JSON-serialisable."""

    @property
    def stream_config(self) -> Dict[str, Any]:
        """The part of ``config`` a stream must match to decode: ``config`` less library versions."""
        return {k: v for k, v in self.config.items() if not k.endswith("_version")}

    @abc.abstractmethod
    def bits(self, data: Data) -> float:
        """Code length of ``data`` in bits (see the module docstring)."""

    @abc.abstractmethod
    def compress(self, data: Data) -> bytes:
        """Compress ``data`` into a self-checking kolmo stream."""

    @abc.abstractmethod
    def decompress(self, blob: bytes) -> bytes:
        """Inverse of :meth:`compress`; raises CorruptStreamError instead of returning wrong bytes."""

    def bits_many(self, datas: Sequence[Data]) -> List[float]:
        """``bits(d)`` for every ``d`` (compressors that batch, like ``lm``, override this)."""
        return [self.bits(d) for d in datas]

    def joint_bits(self, pairs: Sequence[Tuple[Data, Data]]) -> List[float]:
        """C(XY) in bits for each (x, y) in ``pairs`` (see the module docstring)."""
        return self.bits_many([as_bytes(x, name="x") + as_bytes(y, name="y") for x, y in pairs])

    def conditional_bits(self, data: Data, context: Data) -> float:
        """Code length of ``data`` in bits given ``context``; default C(context+data) - C(context)."""
        return self.conditional_bits_many([data], context)[0]

    def conditional_bits_many(self, datas: Sequence[Data], context: Data) -> List[float]:
        """``conditional_bits(d, context)`` for every ``d``, preparing ``context`` once where possible."""
        ctx = as_bytes(context, name="context")
        base = self.bits(ctx)
        return [self.bits(ctx + as_bytes(d)) - base for d in datas]

    def code_parts(self, data: Data, *, given: Optional[Data] = None, block: Optional[int] = None) -> CodeParts:
        """The code length of ``data`` (given ``given``, if not None) split into parts: a :class:`CodeParts`.

        This default splits ``data`` into blocks of ``block`` bytes (default
        ``max(16, ceil(len(data) / 256))``: at most 256 parts) measured by incremental sizes of
        prefixes, part k = C(data[:end_k]) - C(data[:end_{k-1}]) from :meth:`bits_many` of the
        prefixes, or from :meth:`conditional_bits_many` of the prefixes given ``given``. The sums
        telescope: they equal ``bits(data)`` and ``conditional_bits(data, given)`` (exactly for the
        codecs, whose sizes are whole bytes). Cost: one compression of a prefix per block, about
        ``len(data)**2 / (2 * block)`` bytes compressed in all (and ``given`` with each prefix,
        where conditioning compresses it): keep ``data`` to some tens of kB, or raise ``block``.
        Token models override this with exact per-token parts (``unit="token"``).
        """
        y = as_bytes(data, name="data")
        if block is None:
            block = max(16, -(-len(y) // 256))
        if isinstance(block, bool) or not isinstance(block, int) or block < 1:
            raise ValueError(f"block must be a positive int (bytes per part), got {block!r}")
        if not y:
            return CodeParts(spans=(), bits=(), unit="block", block=block)
        ends = list(range(block, len(y), block)) + [len(y)]
        prefixes = [y[:e] for e in ends]
        if given is None:
            sizes = self.bits_many(prefixes)
        else:
            sizes = self.conditional_bits_many(prefixes, as_bytes(given, name="given"))
        bits = [float(b - a) for a, b in zip([0.0] + list(sizes[:-1]), sizes)]
        return CodeParts(spans=tuple(zip([0] + ends[:-1], ends)), bits=tuple(bits), unit="block", block=block)

    def window_warnings(self, n_bytes: int) -> List[str]:
        """Warnings for inputs of ``n_bytes`` in total that exceed what the codec can see at once."""
        if self.window_bytes is not None and n_bytes > self.window_bytes:
            return [f"{self.name}: {n_bytes} bytes exceed its {self.window_bytes}-byte window; "
                    "C(XY) cannot reuse the start of X, so the gap is underestimated "
                    "(use zstd, lzma or ppmd, whose windows kolmo sizes to the input)"]
        return []

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.config.items() if k not in ("codec", "name"))
        return f"<kolmo compressor {self.name} ({opts})>"


class CodecCompressor(Compressor):
    """A classical codec: subclasses implement ``_encode`` / ``_decode`` on raw bytes.

    Instances pickle as their constructor options (codec contexts are rebuilt), so they can be
    sent to process pools and distributed executors.

    Codecs that can be primed with a dictionary (zstd, zlib) take ``joint="two-part"`` or
    ``joint="concat"`` (:data:`JOINT_MODES`, checked by :meth:`_set_joint`): the two-part code
    C(XY) = C(X) + C(Y | X) with ``conditional_method == "dictionary"``, or the compressed
    concatenation C(XY) = bits(x + y) with C(Y | X) = C(XY) - C(X) and
    ``conditional_method == "concatenation"``. The mode is part of ``config`` (results differ),
    not of ``stream_config`` (``compress`` / ``decompress`` do not depend on it).
    """

    _empty_cost: Optional[int] = None
    _options: Tuple[str, ...] = ()  # constructor arguments, stored as attributes of the same name

    def __getstate__(self) -> Dict[str, Any]:
        return {k: getattr(self, k) for k in self._options}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def _set_joint(self, joint: str) -> None:
        """Check and set the joint-code mode (for codecs that can be primed; see the class docstring)."""
        if joint not in JOINT_MODES:
            raise ValueError(f"joint must be one of {', '.join(repr(m) for m in JOINT_MODES)}; got {joint!r}")
        self.joint = joint
        self.conditional_method = "dictionary" if joint == "two-part" else "concatenation"

    @property
    def stream_config(self) -> Dict[str, Any]:
        return {k: v for k, v in super().stream_config.items() if k != "joint"}

    def joint_bits(self, pairs: Sequence[Tuple[Data, Data]]) -> List[float]:
        out: List[float] = [0.0] * len(pairs)
        by_x: Dict[bytes, List[int]] = {}
        raw = [(as_bytes(x, name="x"), as_bytes(y, name="y")) for x, y in pairs]
        for k, (x, _) in enumerate(raw):
            by_x.setdefault(x, []).append(k)
        for x, idx in by_x.items():  # one row per distinct x: its preparation is shared
            for k, c in zip(idx, self._joint_row(x, [raw[k][1] for k in idx])):
                out[k] = c
        return out

    def _joint_row(self, x: bytes, ys: List[bytes]) -> List[float]:
        """C(x y) for each y in ``ys``: two-part when primed by a dictionary, else bits(x + y).

        Codecs override :meth:`_concat_row` to share the work on ``x`` across the row; every value
        must equal ``bits(x + y)`` exactly.
        """
        if self.conditional_method == "dictionary":
            c_x = self.bits(x)
            return [c_x + c for c in self.conditional_bits_many(ys, x)]
        return self._concat_row(x, ys)

    def _concat_row(self, x: bytes, ys: List[bytes]) -> List[float]:
        return [self.bits(x + y) for y in ys]

    def conditional_bits_many(self, datas: Sequence[Data], context: Data) -> List[float]:
        """``bits(context + d) - bits(context)`` (primed codecs override this for ``"dictionary"``)."""
        ctx = as_bytes(context, name="context")
        base = self.bits(ctx)
        return [c - base for c in self._concat_row(ctx, [as_bytes(d) for d in datas])]

    @abc.abstractmethod
    def _encode(self, data: bytes) -> bytes:
        """The codec's raw stream for ``data`` (no kolmo container)."""

    @abc.abstractmethod
    def _decode(self, payload: bytes, length: int) -> bytes:
        """Inverse of ``_encode``; ``length`` is the original length from the container."""

    def _overhead_bytes(self) -> int:
        if self._empty_cost is None:
            self._empty_cost = len(self._encode(b""))
        return self._empty_cost

    def _payload_bits(self, payload_len: int) -> float:
        return float(8 * max(0, payload_len - self._overhead_bytes()))

    def bits(self, data: Data) -> float:
        return self._payload_bits(len(self._encode(as_bytes(data))))

    def compress(self, data: Data) -> bytes:
        raw = as_bytes(data)
        return framing.pack(self.name, self.stream_config, raw, self._encode(raw))

    def decompress(self, blob: bytes) -> bytes:
        frame = framing.unpack(as_bytes(blob, name="blob"), name=self.name, config=self.stream_config)
        try:
            out = self._decode(frame.payload, frame.length)
        except CorruptStreamError:
            raise
        except Exception as exc:  # the codec's own error type varies (zstd, lzma, bz2, zlib, ppmd)
            raise CorruptStreamError(f"{self.name} could not decode the payload: the stream is truncated or corrupted ({exc})") from exc
        return framing.check_output(frame, out)
