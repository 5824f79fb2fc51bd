"""LZMA2 through the standard library's ``lzma``, as a raw stream (no .xz container).

Window: the dictionary covers the whole input: the next power of two at or above its length
(at least 4 KiB, at most LZMA2's limit of 1.5 GiB), whatever the preset's default (64 MiB at
preset 9). A dictionary larger than the input cannot improve compression, and a small one saves
the preset's ~700 MB of match-finder memory on small inputs. The decoder derives the same size
from the original length that kolmo's container stores.

Conditioning: Python's ``lzma`` cannot prime LZMA2 with a preset dictionary, so
``conditional_bits`` is ``bits(context + data) - bits(context)``.
"""

from __future__ import annotations

import lzma
from typing import Any, Dict, List

from ..options import check_int
from ._util import ceil_log2
from .base import CodecCompressor

_MAX_DICT = 1536 << 20


class LzmaCompressor(CodecCompressor):
    name = "lzma"

    _options = ("preset", "extreme")

    def __init__(self, preset: int = 9, extreme: bool = True):
        self.preset = check_int("preset", preset, 0, 9)
        self.extreme = bool(extreme)
        self._flags = self.preset | (lzma.PRESET_EXTREME if self.extreme else 0)

    @property
    def config(self) -> Dict[str, Any]:
        return {"codec": "lzma2-raw", "preset": self.preset, "extreme": self.extreme,
                "window": "dictionary sized to input"}

    def _filters(self, length: int) -> List[Dict[str, Any]]:
        if length > _MAX_DICT:
            raise ValueError(f"LZMA2's dictionary covers at most 1.5 GiB, got {length} bytes; split the input")
        size = max(4096, 1 << ceil_log2(max(length, 1)))
        return [{"id": lzma.FILTER_LZMA2, "preset": self._flags, "dict_size": min(size, _MAX_DICT)}]

    def _encode(self, data: bytes) -> bytes:
        return lzma.compress(data, format=lzma.FORMAT_RAW, filters=self._filters(len(data)))

    def _decode(self, payload: bytes, length: int) -> bytes:
        dec = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=self._filters(length))
        out = dec.decompress(payload, max_length=length + 1)
        if not dec.eof:
            raise ValueError("the LZMA2 stream ends before its end marker")
        return out
