"""zstd (Zstandard) through the ``zstandard`` package.

Parameters: zstd's own parameters for the level and the input's size (as the zstd command
line picks them); the window is then widened to cover the whole input (with the dictionary),
up to 2 GiB, with long-distance matching switched on whenever it is widened, so C(Y|X) and C(XY)
can reuse X however long X is (the window pitfall of Cebrian et al. 2005).

Conditioning: ``conditional_bits(data, context)`` primes zstd with ``context`` as a raw-content
dictionary (the decoder holds the same dictionary), with the window sized to context + data:
a real, decodable conditional code. A prepared dictionary is reused across
``conditional_bits_many`` calls for the same context.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, List, Sequence

import zstandard

from ..inputs import Data, as_bytes
from ._util import ceil_log2, check_int
from .base import CodecCompressor

_MAX_WINDOW_LOG = 31


class ZstdCompressor(CodecCompressor):
    name = "zstd"
    conditional_method = "dictionary"

    _options = ("level",)

    def __init__(self, level: int = 19):
        self.level = check_int("level", level, 1, 22)
        self._default_window_log = zstandard.ZstdCompressionParameters.from_level(self.level).window_log  # 23 at 19
        # zstd contexts are not thread-safe: each thread gets its own (executors may use threads)
        self._local = threading.local()

    @property
    def config(self) -> Dict[str, Any]:
        return {"codec": "zstd", "zstd_version": ".".join(map(str, zstandard.ZSTD_VERSION)), "level": self.level,
                "params": "zstd defaults for level and size class; window covers input and dictionary"}

    def _params(self, size: int, dict_size: int = 0) -> zstandard.ZstdCompressionParameters:
        total = size + dict_size
        need = max(10, ceil_log2(total + 1))
        if need > _MAX_WINDOW_LOG:
            raise ValueError(f"zstd cannot cover {total} bytes in one window (2 GiB at most); "
                             "split the input or use the lzma compressor")
        extra: Dict[str, Any] = {}
        if need > self._default_window_log:
            extra = {"window_log": need, "enable_ldm": True}
        elif dict_size:  # keep the dictionary inside the window
            extra = {"window_log": max(need, zstandard.ZstdCompressionParameters.from_level(
                self.level, source_size=size + 1, dict_size=dict_size).window_log)}
        return zstandard.ZstdCompressionParameters.from_level(
            self.level, source_size=size + 1, dict_size=dict_size, write_checksum=0, write_content_size=0,
            write_dict_id=0, **extra)

    def _encode(self, data: bytes) -> bytes:
        key = ceil_log2(len(data) + 1)  # parameters depend on the size class only
        contexts = self._contexts()
        if key not in contexts:
            contexts[key] = zstandard.ZstdCompressor(compression_params=self._params(2 ** key - 1))
        return contexts[key].compress(data)

    def _decode(self, payload: bytes, length: int) -> bytes:
        dctx = zstandard.ZstdDecompressor(max_window_size=2 ** _MAX_WINDOW_LOG)
        return dctx.decompressobj().decompress(payload)

    def _contexts(self) -> Dict[int, zstandard.ZstdCompressor]:
        """This thread's compression contexts, one per input size class."""
        ctx = getattr(self._local, "cctx", None)
        if ctx is None:
            ctx = self._local.cctx = {}
        return ctx

    def conditional_bits_many(self, datas: Sequence[Data], context: Data) -> List[float]:
        ctx = as_bytes(context, name="context")
        raw = [as_bytes(d) for d in datas]
        if not ctx:
            return [self.bits(d) for d in raw]
        prepared: Dict[int, zstandard.ZstdCompressor] = {}
        out = []
        for d in raw:
            key = ceil_log2(len(d) + 1)  # one prepared compressor per size class, reused across items
            if key not in prepared:
                params = self._params(2 ** key - 1, len(ctx))
                dictionary = zstandard.ZstdCompressionDict(ctx, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
                dictionary.precompute_compress(compression_params=params)  # digest the context once
                prepared[key] = zstandard.ZstdCompressor(dict_data=dictionary, compression_params=params)
            out.append(self._payload_bits(len(prepared[key].compress(d))))
        return out
