"""zstd (Zstandard) through the ``zstandard`` package.

Parameters: zstd's own parameters for the level and the input's size (as the zstd command
line picks them); the window is then widened to cover the whole input (with the dictionary),
up to 2 GiB, with long-distance matching switched on whenever it is widened, so C(Y|X) and C(XY)
can reuse X however long X is (the window pitfall of Cebrian et al. 2005).

Joint code, ``joint=`` (in ``config``, so cached results of the two never mix):

``"concat"`` (the default)
    C(XY) = bits(x + y), the compressed concatenation, as for every other classical compressor;
    C(Y|X) = C(XY) - C(X) (``conditional_method == "concatenation"``).
``"two-part"``
    C(XY) = C(X) + C(Y|X), where C(Y|X) primes zstd with X as a raw-content dictionary (the decoder
    holds the same dictionary) with the window sized to X + Y: a real decodable conditional code
    (``conditional_method == "dictionary"``). A prepared dictionary serves a whole matrix row, so
    X is never recompressed.

Why concat is the default (figures from this project's 2-core CPU machine, ../shared/corpus):

* Language families, eight Genesis versions, 8 windows per size, scored against the known grouping
  (``python -m benchmarks.matrix_bench --families``; spearman / cophenetic / triplet accuracy,
  higher is better): at 2 kB two-part 0.606 / 0.405 / 0.806, concat 0.733 / 0.469 / 0.871; at
  8 kB 0.571 / 0.404 / 0.797 against 0.680 / 0.452 / 0.865; at 30 kB 0.514 / 0.406 / 0.773 against
  0.640 / 0.431 / 0.831. Concat scored more triplets in 35 of the 40 windows. Presumably the one
  stream's entropy coding, shared by X and Y, lets the letter statistics of related languages
  count, not only repeated strings; the two-part code describes Y's statistics afresh.
* Code length (same benchmark): concat's C(XY) is the shorter code in 98-100% of the pairs at 2 to
  8 kB (by 360 to 440 bits on average), 93% at 16 kB, 59% at 30 kB (by 25 bits on average).
* What it costs: on the benchmark suite's gap rows (``python -m benchmarks --corpus
  ../shared/corpus``, 30 kB slices, 20 kB calibration) the same-language and calibration gaps are
  up to 3% smaller: KJV~WEB 23440 bits against 24216, the calibration's p=0.2 substitution 98336
  against 101568 (true mutual information 113740); those between KJV and the other languages are
  larger (French 1176 against 856, German 896 against 504, Finnish 184 against 56). And time: an
  NCD matrix of 60 documents of 2 kB at level 19 took 3.55 s against 1.37 s (2.6 times), since
  each pair compresses x + y whole; at levels 1 and 3 the two take the same time (0.16 s and 0.20 s;
  ``python -m benchmarks.matrix_bench --docs 60 --workers 1 --levels 1,3,19 --zstd-joint
  concat,two-part --repeat 3``, medians).

Conditioning: with ``"two-part"``, ``conditional_bits_many`` prepares the context's dictionary
once per size class and reuses it for every item; with ``"concat"`` it is
``bits(context + data) - bits(context)``.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, List, Sequence

import zstandard

from ..inputs import Data, as_bytes
from ..options import check_int
from ._util import ceil_log2
from .base import CodecCompressor

_MAX_WINDOW_LOG = 31


class ZstdCompressor(CodecCompressor):
    name = "zstd"

    _options = ("level", "joint")

    def __init__(self, level: int = 19, joint: str = "concat"):
        self.level = check_int("level", level, 1, 22)
        self._set_joint(joint)
        self._default_window_log = zstandard.ZstdCompressionParameters.from_level(self.level).window_log  # 23 at 19
        # zstd contexts are not thread-safe: each thread gets its own (executors may use threads)
        self._local = threading.local()

    @property
    def config(self) -> Dict[str, Any]:
        return {"codec": "zstd", "zstd_version": ".".join(map(str, zstandard.ZSTD_VERSION)), "level": self.level,
                "params": "zstd defaults for level and size class; window covers input and dictionary",
                "joint": self.joint}

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
        if self.joint == "concat":
            return super().conditional_bits_many(datas, context)
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
