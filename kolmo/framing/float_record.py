"""The float record's 3 bytes: what a CPU's floats depended on, first in every LM payload.

What the fields mean, and how they are read off a machine, is :mod:`kolmo.lm.machine`'s; this
module only lays them out::

    byte 0   payload version (3 high bits) | ATen CPU kernel level (5 low bits, LEVELS; 31: other)
    byte 1   torch's CPU thread count (0..255)
    byte 2   BLAS (2 high bits, BLAS) | CPU vendor (2 bits, VENDORS) | bf16 products in hardware
             (1 bit) | the BLAS's instruction set (3 low bits, ISAS)

Streams without bf16 products have the bf16 bit 0, so records written before it existed read the
same. On a GPU every field is empty: the record is all zeros apart from the version.
"""

from __future__ import annotations

from typing import Any, Dict

#: ATen CPU kernel levels by code (0: not on a CPU; 31: a level this kolmo does not know)
LEVELS = ("", "DEFAULT", "AVX2", "AVX512", "AVX512_VNNI", "AVX512_BF16", "AMX", "ZVECTOR", "VSX",
          "SVE128", "SVE256", "NEON")
OTHER_LEVEL = 31
#: BLAS libraries, CPU vendors and instruction sets of byte 2 (2 + 2 + 3 bits)
BLAS = ("", "mkl", "other")
VENDORS = ("", "Intel", "AMD", "other")
ISAS = ("", "SSE4.2", "AVX", "AVX2", "AVX512", "other")


def pack_float_record(version: int, *, threads: int, level: str, blas: str, vendor: str, isa: str,
                      bf16_native: bool) -> bytes:
    """The 3 bytes (module docstring)."""
    if not 0 <= version < 8 or not 0 <= threads <= 255:
        raise ValueError(f"version must be 0..7 and threads 0..255, got {version}, {threads}")
    code = LEVELS.index(level) if level in LEVELS else OTHER_LEVEL
    third = (BLAS.index(blas) << 6) | (VENDORS.index(vendor) << 4) | (int(bf16_native) << 3) | ISAS.index(isa)
    return bytes([(version << 5) | code, threads, third])


def unpack_float_record(head: bytes) -> Dict[str, Any]:
    """The fields of :func:`pack_float_record` (not the version), as keyword arguments."""
    level = head[0] & 31
    blas, vendor, bf16, isa = head[2] >> 6, (head[2] >> 4) & 3, (head[2] >> 3) & 1, head[2] & 7
    return {"threads": head[1], "level": LEVELS[level] if level < len(LEVELS) else "other",
            "blas": BLAS[blas] if blas < len(BLAS) else "other", "vendor": VENDORS[vendor],
            "isa": ISAS[isa] if isa < len(ISAS) else "other", "bf16_native": bool(bf16)}
