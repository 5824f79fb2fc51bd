"""PPMd (variant I, as in ZIP) through ``pyppmd``: a context-mixing-free but strong text model.

Memory: PPMd restarts its model when its memory fills, which forgets X while coding Y. kolmo sizes
the model memory to 12 bytes per input byte (at least 16 MiB, at most 1 GiB, a power of two);
the decoder derives the same size from the original length. The factor 12 is a heuristic that
covers text at the default order; inputs past 1 GiB / 12 get a :class:`~kolmo.errors.WindowWarning`.

Conditioning: ``bits(context + data) - bits(context)``.
"""

from __future__ import annotations

from typing import Any, Dict, List

import pyppmd

from ..options import check_int
from ._util import ceil_log2
from .base import CodecCompressor

_MIN_MEM, _MAX_MEM, _PER_BYTE = 16 << 20, 1 << 30, 12


class PpmdCompressor(CodecCompressor):
    name = "ppmd"

    _options = ("order",)

    def __init__(self, order: int = 6):
        self.order = check_int("order", order, 2, 64)

    @property
    def config(self) -> Dict[str, Any]:
        return {"codec": "ppmd-I", "pyppmd_version": pyppmd.__version__, "order": self.order,
                "memory": f"{_PER_BYTE} bytes per input byte, 16 MiB to 1 GiB", "restore": "restart"}

    @staticmethod
    def _mem(length: int) -> int:
        return min(_MAX_MEM, max(_MIN_MEM, 1 << ceil_log2(_PER_BYTE * max(length, 1))))

    def window_warnings(self, n_bytes: int) -> List[str]:
        if _PER_BYTE * n_bytes > _MAX_MEM:
            return [f"ppmd: {n_bytes} bytes may fill its 1 GiB model memory, which restarts the model "
                    "and forgets the start of X"]
        return []

    def _encode(self, data: bytes) -> bytes:
        enc = pyppmd.Ppmd8Encoder(self.order, self._mem(len(data)), restore_method=0)
        return enc.encode(data) + enc.flush()

    def _decode(self, payload: bytes, length: int) -> bytes:
        dec = pyppmd.Ppmd8Decoder(self.order, self._mem(length), restore_method=0)
        return dec.decode(payload, length)
