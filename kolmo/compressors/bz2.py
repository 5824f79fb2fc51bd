"""bzip2 through the standard library's ``bz2``.

Window: bzip2 sorts blocks of at most ``level`` x 100 kB independently (900 kB at level 9);
inputs longer than one block get a :class:`~kolmo.errors.WindowWarning`.

Conditioning: bzip2 cannot be primed, so ``conditional_bits`` is
``bits(context + data) - bits(context)``.
"""

from __future__ import annotations

import bz2
from typing import Any, Dict

from ..options import check_int
from .base import CodecCompressor


class Bz2Compressor(CodecCompressor):
    name = "bz2"

    _options = ("level",)

    def __init__(self, level: int = 9):
        self.level = check_int("level", level, 1, 9)
        self.window_bytes = self.level * 100_000

    @property
    def config(self) -> Dict[str, Any]:
        return {"codec": "bzip2", "level": self.level}

    def _encode(self, data: bytes) -> bytes:
        return bz2.compress(data, self.level)

    def _decode(self, payload: bytes, length: int) -> bytes:
        d = bz2.BZ2Decompressor()
        out = d.decompress(payload, max_length=length + 1)
        if not d.eof:
            raise ValueError("the bzip2 stream ends before its end-of-stream marker")
        if d.unused_data:
            raise ValueError(f"{len(d.unused_data)} bytes follow the bzip2 stream")
        return out
