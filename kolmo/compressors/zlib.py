"""DEFLATE through the standard library's ``zlib``, as a raw stream (no zlib header or Adler-32).

Window: DEFLATE sees at most 32 KiB back, a limit of the format. Inputs longer than that get a
:class:`~kolmo.errors.WindowWarning`: C(XY) then cannot reuse most of X.

Conditioning: ``conditional_bits`` primes DEFLATE with the last 32 KiB of ``context`` as a preset
dictionary (``zdict``), a real decodable conditional code.
"""

from __future__ import annotations

import zlib
from typing import Any, Dict, List, Sequence

from ..inputs import Data, as_bytes
from ._util import check_int
from .base import CodecCompressor

_WINDOW = 32768


class ZlibCompressor(CodecCompressor):
    name = "zlib"
    conditional_method = "dictionary"
    window_bytes = _WINDOW

    _options = ("level",)

    def __init__(self, level: int = 9):
        self.level = check_int("level", level, 0, 9)

    @property
    def config(self) -> Dict[str, Any]:
        return {"codec": "deflate-raw", "zlib_version": zlib.ZLIB_RUNTIME_VERSION, "level": self.level}

    def _deflate(self, data: bytes, zdict: bytes = b"") -> bytes:
        opts = {"zdict": zdict} if zdict else {}
        co = zlib.compressobj(self.level, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, **opts)
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
        zdict = as_bytes(context, name="context")[-_WINDOW:]
        return [self._payload_bits(len(self._deflate(as_bytes(d), zdict))) for d in datas]
