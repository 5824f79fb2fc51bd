"""DEFLATE through the standard library's ``zlib``, as a raw stream (no zlib header or Adler-32).

Window: DEFLATE sees at most 32 KiB back, a limit of the format. Inputs longer than that get a
:class:`~kolmo.errors.WindowWarning`: C(XY) then cannot reuse most of X.

Joint code, ``joint=`` (in ``config``, so cached results of the two never mix):

``"concat"`` (the default)
    C(XY) = bits(x + y), the deflated concatenation; C(Y|X) = C(XY) - C(X)
    (``conditional_method == "concatenation"``). A matrix row deflates x once and copies the
    compressor's state for each y (the same bytes as deflating x + y afresh, at a fraction of the
    work on x).
``"two-part"``
    C(XY) = C(X) + C(Y|X), where C(Y|X) primes DEFLATE with the last 32 KiB of X as a preset
    dictionary (``zdict``): a real decodable conditional code (``conditional_method == "dictionary"``).

Why concat is the default (as for zstd; figures from this project's 2-core CPU machine, level 9,
``python -m benchmarks.matrix_bench --families``): language families of eight Genesis versions,
spearman / cophenetic / triplet accuracy against the known grouping, at 2 kB two-part 0.635 /
0.418 / 0.808, concat 0.752 / 0.458 / 0.881; at 8 kB 0.545 / 0.405 / 0.775 against 0.630 / 0.424 /
0.834; at 30 kB (x + y beyond the window) 0.501 / 0.405 / 0.763 against 0.566 / 0.410 / 0.810;
concat scored more triplets in 38 of 40 windows. Concat's C(XY) is the shorter code in all pairs
at 2 kB, 59% at 8 kB, 10% at 16 kB and none at 30 kB, where x + y outgrows the window and the
two-part code keeps all of X in view of Y. Its cost (``python -m benchmarks --corpus
../shared/corpus``, 30 kB slices, 20 kB calibration): gaps up to 5% smaller on the same-language
and calibration rows (KJV~WEB 23232 bits against 24568; substitution p=0.2 65712 against 68824,
true 113740), between KJV and the other languages 0 to 850 bits (from 310 to 1090); and an NCD
matrix of 60 documents of 2 kB at level 6 took 0.55 s against 0.44 s (the same-codec run of
``python -m benchmarks.matrix_bench --docs 60 --workers 1 --repeat 3``, medians).
"""

from __future__ import annotations

import zlib
from typing import Any, Dict, List, Sequence

from ..inputs import Data, as_bytes
from ..options import check_int
from .base import CodecCompressor

_WINDOW = 32768
_COPY_FROM = 16384  # a primed dictionary this long is set once per row and copied (same bytes, less work)


class ZlibCompressor(CodecCompressor):
    name = "zlib"
    window_bytes = _WINDOW

    _options = ("level", "joint")

    def __init__(self, level: int = 9, joint: str = "concat"):
        self.level = check_int("level", level, 0, 9)
        self._set_joint(joint)

    @property
    def config(self) -> Dict[str, Any]:
        return {"codec": "deflate-raw", "zlib_version": zlib.ZLIB_RUNTIME_VERSION, "level": self.level,
                "joint": self.joint}

    def _compressobj(self, zdict: bytes = b""):
        opts = {"zdict": zdict} if zdict else {}
        return zlib.compressobj(self.level, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, **opts)

    def _deflate(self, data: bytes, zdict: bytes = b"") -> bytes:
        co = self._compressobj(zdict)
        return co.compress(data) + co.flush()

    def _encode(self, data: bytes) -> bytes:
        return self._deflate(data)

    def _decode(self, payload: bytes, length: int) -> bytes:
        d = zlib.decompressobj(-15)
        out = d.decompress(payload, length + 1)
        if not d.eof:
            raise ValueError("the DEFLATE stream ends before its final block")
        return out

    def conditional_bits_many(self, datas: Sequence[Data], context: Data) -> List[float]:
        if self.joint == "concat":
            return super().conditional_bits_many(datas, context)
        zdict = as_bytes(context, name="context")[-_WINDOW:]
        raw = [as_bytes(d) for d in datas]
        if len(zdict) < _COPY_FROM or len(raw) < 2:
            return [self._payload_bits(len(self._deflate(d, zdict))) for d in raw]
        primed = self._compressobj(zdict)  # a state that has read no input: its copies code as a fresh one
        out = []
        for d in raw:
            co = primed.copy()
            out.append(self._payload_bits(len(co.compress(d)) + len(co.flush())))
        return out

    def _concat_row(self, x: bytes, ys: List[bytes]) -> List[float]:
        """bits(x + y) for each y: x is deflated once, then the state is copied for each y.

        Feeding x, then y (no flush in between) gives the same bytes as deflating x + y at once at
        levels 1 to 9 (deflate decides on a full lookahead, whatever the input's chunks); level 0's
        stored blocks follow the chunks, so it compresses each x + y afresh.
        """
        if self.level == 0 or len(ys) < 2:
            return super()._concat_row(x, ys)
        head = self._compressobj()
        n_head = len(head.compress(x))
        out = []
        for y in ys:
            co = head.copy()
            out.append(self._payload_bits(n_head + len(co.compress(y)) + len(co.flush())))
        return out
