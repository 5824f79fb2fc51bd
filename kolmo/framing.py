"""kolmo's stream container: the only module that knows the byte layout of a compressed stream.

Layout (all integers little-endian)::

    offset  size  field
    0       4     magic b"KLMO"
    4       1     format version (1)
    5       1     length L of the compressor's name
    6       L     compressor name, ASCII
    6+L     8     config fingerprint: first 8 bytes of SHA-256 over the canonical JSON of ``config``
    14+L    8     length of the original data in bytes
    22+L    4     CRC-32 of the original data
    26+L    8     length P of the payload in bytes
    34+L    P     payload (the codec's own stream)
    34+L+P  4     CRC-32 of everything before it

The container costs 38 + L bytes. It is *not* counted in :meth:`Compressor.bits`, which measures
the codec's stream alone (see :mod:`kolmo.compressors.base`).

The language-model compressor's payload (:func:`pack_lm_payload`; varints are unsigned LEB128)::

    varint  number of chunks C
    C x     varint tokens in the chunk, u32 CRC-32 of the chunk's bytes
    G x     varint number of 32-bit words of each coder group's stream (groups follow from the
            chunk lengths and the compressor's ``coder_batch``; see kolmo.lm.coding.groups)
    ...     the groups' words, u32 little-endian, in group order
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from dataclasses import dataclass
from typing import Any, Callable, List, Mapping, Sequence, Tuple

from .errors import CorruptStreamError, StreamMismatchError

MAGIC = b"KLMO"
VERSION = 1
_TAIL = struct.Struct("<I")


def fingerprint(config: Mapping[str, Any]) -> bytes:
    """8-byte digest of a compressor config (canonical JSON, sorted keys)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).digest()[:8]


def crc32(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


@dataclass(frozen=True)
class Frame:
    name: str
    fingerprint: bytes
    length: int
    crc: int
    payload: bytes


def pack(name: str, config: Mapping[str, Any], original: bytes, payload: bytes) -> bytes:
    """Wrap a codec ``payload`` that encodes ``original`` into a kolmo stream."""
    raw_name = name.encode("ascii")
    if len(raw_name) > 255:
        raise ValueError(f"compressor name is {len(raw_name)} bytes long; at most 255 fit in a stream")
    head = b"".join([
        MAGIC,
        bytes([VERSION, len(raw_name)]),
        raw_name,
        fingerprint(config),
        struct.pack("<QIQ", len(original), crc32(original), len(payload)),
    ])
    body = head + payload
    return body + _TAIL.pack(crc32(body))


def unpack(blob: bytes, *, name: str, config: Mapping[str, Any]) -> Frame:
    """Parse and check a kolmo stream written by compressor ``name`` with ``config``.

    Raises :class:`CorruptStreamError` for a damaged or truncated stream and
    :class:`StreamMismatchError` for a stream from another compressor or configuration.
    """
    if len(blob) < 4 or blob[:4] != MAGIC:
        raise CorruptStreamError("not a kolmo stream: it does not start with b'KLMO' "
                                 "(was it written by `kolmo compress` / Compressor.compress?)")
    if len(blob) < 6:
        raise CorruptStreamError(f"kolmo stream truncated: {len(blob)} bytes, the header alone needs more")
    if blob[4] != VERSION:
        raise CorruptStreamError(f"kolmo stream format version {blob[4]} is not supported (this kolmo reads {VERSION})")
    n = blob[5]
    fixed = 6 + n + 8 + 20
    if len(blob) < fixed + 4:
        raise CorruptStreamError(f"kolmo stream truncated: {len(blob)} bytes, the header alone needs {fixed + 4}")
    length, crc, plen = struct.unpack_from("<QIQ", blob, 6 + n + 8)
    if len(blob) != fixed + plen + 4:
        raise CorruptStreamError(
            f"kolmo stream has {len(blob)} bytes but its header announces {fixed + plen + 4}: "
            "it was truncated or has bytes appended")
    (stored,) = _TAIL.unpack_from(blob, fixed + plen)
    if crc32(blob[: fixed + plen]) != stored:
        raise CorruptStreamError("kolmo stream checksum mismatch: the stream is corrupted")
    try:
        got_name = blob[6: 6 + n].decode("ascii")
    except UnicodeDecodeError:  # pragma: no cover - guarded by the CRC above
        raise CorruptStreamError("kolmo stream has an unreadable compressor name") from None
    if got_name != name:
        raise StreamMismatchError(
            f"this stream was written by compressor {got_name!r}, not {name!r}: "
            f"decompress it with kolmo.get_compressor({got_name!r}) and the same options")
    got_fp = blob[6 + n: 6 + n + 8]
    if got_fp != fingerprint(config):
        raise StreamMismatchError(
            f"this {name!r} stream was written with a different configuration (fingerprint "
            f"{got_fp.hex()}, this compressor's is {fingerprint(config).hex()}): use the same options, "
            "codec version and model that compressed it")
    return Frame(got_name, got_fp, length, crc, blob[fixed: fixed + plen])


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_varint(buf: bytes, pos: int) -> Tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise CorruptStreamError("lm stream: the chunk table is truncated or malformed")
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos


def pack_lm_payload(chunks: Sequence[Tuple[int, int]], group_words: Sequence[Any]) -> bytes:
    """``chunks``: (token count, CRC-32) per chunk; ``group_words``: uint32 arrays per coder group."""
    parts = [_varint(len(chunks))]
    parts += [_varint(n) + struct.pack("<I", crc) for n, crc in chunks]
    parts += [_varint(len(w)) for w in group_words]
    parts += [bytes(memoryview(w.astype("<u4")).cast("B")) for w in group_words]
    return b"".join(parts)


def unpack_lm_payload(payload: bytes, n_groups: Callable[[List[int]], int]):
    """Inverse of :func:`pack_lm_payload`: ([(tokens, crc)], [uint32 word arrays per group]).

    ``n_groups(lengths)`` says how many coder groups those chunk lengths make.
    """
    import numpy as np
    n, pos = _read_varint(payload, 0)
    if n > len(payload):
        raise CorruptStreamError(f"lm stream announces {n} chunks in {len(payload)} bytes")
    chunks = []
    for _ in range(n):
        tokens, pos = _read_varint(payload, pos)
        if pos + 4 > len(payload):
            raise CorruptStreamError("lm stream: the chunk table is truncated")
        chunks.append((tokens, struct.unpack_from("<I", payload, pos)[0]))
        pos += 4
    counts = []
    for _ in range(n_groups([c[0] for c in chunks])):
        w, pos = _read_varint(payload, pos)
        counts.append(w)
    if pos + 4 * sum(counts) != len(payload):
        raise CorruptStreamError("lm stream: the coded words do not match the chunk table (truncated or corrupted)")
    words = []
    for w in counts:
        words.append(np.frombuffer(payload, dtype="<u4", count=w, offset=pos).astype(np.uint32))
        pos += 4 * w
    return chunks, words


def check_output(frame: Frame, out: bytes) -> bytes:
    """Return ``out`` if it matches the frame's length and CRC, else raise CorruptStreamError."""
    if len(out) != frame.length:
        raise CorruptStreamError(f"decoded {len(out)} bytes but the stream announces {frame.length}: the stream is corrupted")
    if crc32(out) != frame.crc:
        raise CorruptStreamError("decoded data fails its CRC-32 check: the stream is corrupted or was decoded "
                                 "with a different codec version")
    return out
