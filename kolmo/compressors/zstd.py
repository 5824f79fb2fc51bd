"""zstd (Zstandard) through the ``zstandard`` package.

Window: the level's default window (8 MiB at level 19) is widened to cover the whole input,
up to 2 GiB, and long-distance matching is switched on whenever it is widened, so C(XY) can
reuse X however long X is (the window pitfall of Cebrian et al. 2005).

Conditioning: ``conditional_bits(data, context)`` primes zstd with ``context`` as a raw-content
dictionary (the decoder holds the same dictionary), with the window sized to context + data:
a real, decodable conditional code. A prepared dictionary is reused across
``conditional_bits_many`` calls for the same context.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

import zstandard

from ..inputs import Data, as_bytes
from ._util import ceil_log2, check_int
from .base import CodecCompressor

_MAX_WINDOW_LOG = 31


class ZstdCompressor(CodecCompressor):
    name = "zstd"
    conditional_method = "dictionary"

    def __init__(self, level: int = 19):
        self.level = check_int("level", level, 1, 22)
        self._default_window_log = zstandard.ZstdCompressionParameters.from_level(self.level).window_log
        self._cctx: Dict[int, zstandard.ZstdCompressor] = {}
        self._dctx = zstandard.ZstdDecompressor(max_window_size=2 ** _MAX_WINDOW_LOG)

    @property
    def config(self) -> Dict[str, Any]:
        return {"codec": "zstd", "zstd_version": zstandard.ZSTD_VERSION, "level": self.level,
                "window": "sized to input, long-distance matching beyond the level's window"}

    def _window_log(self, total: int) -> int:
        need = max(10, ceil_log2(total + 1))
        if need > _MAX_WINDOW_LOG:
            raise ValueError(f"zstd cannot cover {total} bytes in one window (2 GiB at most); "
                             "split the input or use the lzma compressor")
        return max(self._default_window_log, need)

    def _params(self, window_log: int) -> zstandard.ZstdCompressionParameters:
        extra: Dict[str, Any] = {}
        if window_log > self._default_window_log:
            extra = {"window_log": window_log, "enable_ldm": True}
        return zstandard.ZstdCompressionParameters.from_level(
            self.level, write_checksum=0, write_content_size=0, write_dict_id=0, **extra)

    def _compressor(self, window_log: int, dictionary=None) -> zstandard.ZstdCompressor:
        if dictionary is not None:
            return zstandard.ZstdCompressor(dict_data=dictionary, compression_params=self._params(window_log))
        if window_log not in self._cctx:
            self._cctx[window_log] = zstandard.ZstdCompressor(compression_params=self._params(window_log))
        return self._cctx[window_log]

    def _encode(self, data: bytes) -> bytes:
        return self._compressor(self._window_log(len(data))).compress(data)

    def _decode(self, payload: bytes, length: int) -> bytes:
        return self._dctx.decompressobj().decompress(payload)

    def conditional_bits_many(self, datas: Sequence[Data], context: Data) -> List[float]:
        ctx = as_bytes(context, name="context")
        raw = [as_bytes(d) for d in datas]
        if not ctx:
            return [self.bits(d) for d in raw]
        dictionary = zstandard.ZstdCompressionDict(ctx, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        by_window: Dict[int, zstandard.ZstdCompressor] = {}
        out = []
        for d in raw:
            wl = self._window_log(len(ctx) + len(d))
            if wl not in by_window:  # one prepared compressor per window size, reused across items
                by_window[wl] = self._compressor(wl, dictionary)
            out.append(self._payload_bits(len(by_window[wl].compress(d))))
        return out
