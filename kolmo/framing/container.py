"""kolmo's stream container: magic, format version, compressor tag, config hash, CRCs.

Layout, format 2 (integers little-endian; varints are unsigned LEB128)::

    size    field
    2       magic b"KL"
    1       format version (2), plus 0x80 when the stream ends with a CRC-32 of itself
    1       compressor tag: the first byte of SHA-256 over the compressor's name
    3       config hash: the first 3 bytes of SHA-256 over the canonical JSON of (name, config)
    varint  length of the original data in bytes
    4       CRC-32 of the original data
    ...     payload (the codec's own stream)
    (4)     CRC-32 of everything before it, when flagged

The container costs 11 bytes plus the length's varint (1 byte up to 127 bytes, 3 up to 2 MiB),
plus the 4-byte stream CRC that the classical codecs always write: their decoders are native code
that must never see a damaged or truncated payload (pyppmd aborts the process on one), so the
stream is checked before decoding. The LM compressor's decoder is kolmo's own code, which checks
every chunk, the coder's end state and the data CRC, so its streams go without. The container is
*not* counted in :meth:`Compressor.bits`, which measures the codec's stream alone (see
:mod:`kolmo.compressors.base`). A stream from another compressor is recognised by the tag (the
error names it when a registered compressor has that tag); one from the same compressor with other
settings by the config hash (a wrong match slips through with probability 2**-24, and then the
data CRC still refuses the output). Truncation or corruption shows as a codec error, a length or
CRC mismatch of the decoded data, or (LM streams) an inconsistent chunk table or coder end state:
all :class:`CorruptStreamError`. Format 1 streams (``b"KLMO"``, 38 + name bytes; kolmo 0.1) are
still read.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

from ..errors import CorruptStreamError, StreamMismatchError

MAGIC = b"KL"
VERSION = 2
MAGIC_V1 = b"KLMO"  # format 1 (kolmo 0.1), still read
_TAIL = struct.Struct("<I")


def fingerprint(config: Mapping[str, Any]) -> bytes:
    """8-byte digest of a compressor config (canonical JSON, sorted keys); format 1's fingerprint."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).digest()[:8]


def name_tag(name: str) -> int:
    """Format 2's compressor tag: the first byte of SHA-256 over the name."""
    return hashlib.sha256(name.encode("utf-8")).digest()[0]


def config_hash(name: str, config: Mapping[str, Any]) -> bytes:
    """Format 2's 3-byte config hash over (name, config)."""
    return fingerprint({"name": name, "config": config})[:3]


def crc32(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


@dataclass(frozen=True)
class Frame:
    name: str
    fingerprint: bytes
    length: int
    crc: int
    payload: bytes


_CHECKED = 0x80  # flag in the version byte: a CRC-32 of the stream follows the payload


def pack(name: str, config: Mapping[str, Any], original: bytes, payload: bytes, *, checked: bool = True) -> bytes:
    """Wrap a codec ``payload`` that encodes ``original`` into a kolmo stream (format 2).

    ``checked``: append a CRC-32 of the whole stream, verified before the payload is decoded
    (see the module docstring for who may go without).
    """
    if not name.isascii() or not 0 < len(name) <= 255:
        raise ValueError(f"compressor name must be 1 to 255 ASCII characters, got {name!r}")
    body = b"".join([MAGIC, bytes([VERSION | (_CHECKED if checked else 0), name_tag(name)]),
                     config_hash(name, config), varint(len(original)), struct.pack("<I", crc32(original)),
                     payload])
    return body + _TAIL.pack(crc32(body)) if checked else body


_WRITERS: Dict[int, set] = {}  # compressor tag -> names known to write it (kolmo.registry fills it)


def know_writer(name: str) -> None:
    """Remember ``name``'s tag, so that a stream from it is named in errors (the registry calls this)."""
    _WRITERS.setdefault(name_tag(name), set()).add(name)


def _writer_hint(tag: int) -> str:
    names = sorted(_WRITERS.get(tag, ()))
    return f"compressor {names[0]!r}" if len(names) == 1 else "another compressor"


def unpack(blob: bytes, *, name: str, config: Mapping[str, Any],
           retired: Optional[Mapping[str, Union[Mapping[str, Any], Callable[[], Mapping[str, Any]]]]] = None,
           retired_payloads: Optional[Mapping[int, str]] = None) -> Frame:
    """Parse and check a kolmo stream written by compressor ``name`` with ``config``.

    Raises :class:`CorruptStreamError` for a damaged or truncated stream and
    :class:`StreamMismatchError` for a stream from another compressor or configuration.
    A stream whose configuration hash is not ``config``'s is refused with an error naming its
    format where it has one this kolmo no longer reads: ``retired`` maps a description of such a
    format to the configuration its streams were written with (or a function that returns it,
    called only then), ``retired_payloads`` maps a language-model payload version
    (:data:`PAYLOAD_VERSION`'s bits in the payload's first byte) to its description.
    """
    if blob[:4] == MAGIC_V1:
        return _unpack_v1(blob, name=name, config=config)
    if len(blob) < 2 or blob[:2] != MAGIC:
        raise CorruptStreamError("not a kolmo stream: it does not start with b'KL' "
                                 "(was it written by `kolmo compress` / Compressor.compress?)")
    if len(blob) < 12:
        raise CorruptStreamError(f"kolmo stream truncated: {len(blob)} bytes, the header alone needs at least 12")
    if blob[2] & ~_CHECKED != VERSION:
        raise CorruptStreamError(f"kolmo stream format version {blob[2] & ~_CHECKED} is not supported "
                                 f"(this kolmo reads 1 and {VERSION})")
    if blob[2] & _CHECKED:
        if len(blob) < 16 or crc32(blob[:-4]) != _TAIL.unpack_from(blob, len(blob) - 4)[0]:
            raise CorruptStreamError("kolmo stream checksum mismatch: the stream is truncated or corrupted")
        blob = blob[:-4]
    if blob[3] != name_tag(name):
        raise StreamMismatchError(
            f"this stream was written by {_writer_hint(blob[3])}, not {name!r}: decompress it with the "
            "compressor and options that wrote it")
    got = bytes(blob[4:7])
    if got != config_hash(name, config):
        _refuse_retired(blob, name, got, retired or {}, retired_payloads or {})
        raise StreamMismatchError(
            f"this {name!r} stream was written with a different configuration (config hash {got.hex()}, "
            f"this compressor's is {config_hash(name, config).hex()}): use the same options, codec version "
            "and model that compressed it")
    length, pos = read_varint(blob, 7, what="kolmo stream header")
    if pos + 4 > len(blob):
        raise CorruptStreamError("kolmo stream truncated inside its header")
    (crc,) = struct.unpack_from("<I", blob, pos)
    return Frame(name, got, length, crc, bytes(blob[pos + 4:]))


def _refuse_retired(blob: bytes, name: str, got: bytes, retired: Mapping[str, Any],
                    retired_payloads: Mapping[int, str]) -> None:
    """Raise StreamMismatchError naming the retired format of ``blob``, if it has one (see unpack)."""
    found = None
    for what, old in retired.items():
        if got == config_hash(name, old() if callable(old) else old):
            found = what
            break
    if found is None and retired_payloads:
        try:
            _, pos = read_varint(blob, 7, what="kolmo stream header")
        except CorruptStreamError:
            return
        if pos + 4 < len(blob):
            found = retired_payloads.get(blob[pos + 4] >> 5)
    if found is not None:
        raise StreamMismatchError(f"this {name!r} stream has {found}, which this kolmo no longer reads: "
                                  "decompress it with the kolmo version that wrote it")


def _unpack_v1(blob: bytes, *, name: str, config: Mapping[str, Any]) -> Frame:
    """Format 1: magic, version, name, 8-byte fingerprint, u64 length, u32 CRC, u64 payload length,
    payload, u32 CRC-32 of everything before it."""
    if len(blob) < 6:
        raise CorruptStreamError(f"kolmo stream truncated: {len(blob)} bytes, the header alone needs more")
    if blob[4] != 1:
        raise CorruptStreamError(f"kolmo stream format version {blob[4]} is not supported (this kolmo reads 1 and {VERSION})")
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
    got_name = blob[6: 6 + n].decode("ascii", errors="replace")
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


def varint(n: int) -> bytes:
    """Unsigned LEB128."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read_varint(buf: bytes, pos: int, what: str = "lm stream chunk table") -> Tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise CorruptStreamError(f"{what} is truncated or malformed")
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos


def check_output(frame: Frame, out: bytes) -> bytes:
    """Return ``out`` if it matches the frame's length and CRC, else raise CorruptStreamError."""
    if len(out) != frame.length:
        raise CorruptStreamError(f"decoded {len(out)} bytes but the stream announces {frame.length}: "
                                 "the stream is truncated or corrupted")
    if crc32(out) != frame.crc:
        raise CorruptStreamError("decoded data fails its CRC-32 check: the stream is truncated or corrupted, "
                                 "or was decoded with a different codec version")
    return out


def config_hash_of(blob: bytes) -> bytes:
    """The 3-byte config hash in a format-2 stream's header (empty for a shorter blob)."""
    return bytes(blob[4:7])
