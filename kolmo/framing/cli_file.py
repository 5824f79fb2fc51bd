"""The file ``kolmo compress`` writes: a header naming the compressor and its options, then the stream.

Layout::

    8       magic b"KOLMOCLI"
    4       n, the length of the header's JSON (u32 little-endian)
    n       JSON {"compressor": name, "options": {...}} (options as resolved on the encoder's machine)
    ...     the kolmo stream (:mod:`kolmo.framing.container`)
"""

from __future__ import annotations

import json
from typing import Any, Dict, Tuple

from ..errors import CorruptStreamError

MAGIC = b"KOLMOCLI"


def pack_cli_file(compressor: str, options: Dict[str, Any], stream: bytes) -> bytes:
    meta = json.dumps({"compressor": compressor, "options": options}).encode()
    return MAGIC + len(meta).to_bytes(4, "little") + meta + stream


def unpack_cli_file(data: bytes, what: str = "the file") -> Tuple[str, Dict[str, Any], bytes]:
    """(compressor, options, stream) of a file written by :func:`pack_cli_file`."""
    if data[:8] != MAGIC or len(data) < 12:
        raise CorruptStreamError(f"{what} is not a file written by `kolmo compress`")
    n = int.from_bytes(data[8:12], "little")
    try:
        meta = json.loads(data[12:12 + n])
        return meta["compressor"], dict(meta["options"]), data[12 + n:]
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptStreamError(f"{what}: unreadable header ({exc})") from None
