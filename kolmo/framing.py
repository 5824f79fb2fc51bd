"""kolmo's stream container: the only module that knows the byte layout of a compressed stream.

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

The language models' payload (``lm`` and ``lm-online``, :func:`pack_lm_payload`) starts with a
version byte and what the encoder's floats depended on, then a segment table, safe segments and
the rANS coder's words. A one-segment ``lm`` stream of 128-16383 tokens has 11 + 2 + 6 = 19 bytes
of fixed overhead for 1-16 kB of text, plus the coder's final state (8 bytes).
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

from .errors import CorruptStreamError, StreamMismatchError

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


#: the language models' payload format. 0: kolmo 0.3, no version byte; 1: models identified by
#: their files' hashes (version stamps included); 2: by what they compute (kolmo.lm.models.identity), and
#: ``lm``'s dtype following the hardware. Formats 1 and 2 have the same bytes.
PAYLOAD_VERSION = 2
#: descriptions of the payload formats this kolmo refuses by name
RETIRED_PAYLOADS = {1: "payload format 1 (models identified by the hashes of their files, version stamps included)"}


@dataclass(frozen=True)
class LMPayload:
    """A language-model payload (:func:`pack_lm_payload`), for ``lm`` and ``lm-online`` alike.

    The tokens are cut into segments of ``segment`` tokens (0: one segment), the last one shorter:
    ``lm``'s chunks, coded in lock-step and each restarting its context, or ``lm-online``'s
    blocks, coded one after another with learning between them. A *safe* segment is stored as its
    deflated bytes instead of being coded (see :mod:`kolmo.lm.coding.coder`).
    """

    machine: bytes  # the 3-byte float record (kolmo.lm.machine.FloatRecord.to_bytes)
    n_tokens: int
    segment: int
    safe: Tuple[int, ...]  # indices of the safe segments, increasing
    safe_data: Tuple[bytes, ...]  # their deflated bytes, in the same order
    crc16: Optional[Tuple[int, ...]]  # low 16 bits of each segment's bytes' CRC-32, or None
    words: Tuple[Any, ...]  # uint32 arrays, one per coder group
    prime: int = 0  # tokens of a shared prefix: segment 0, the context of every other segment

    @property
    def lengths(self) -> List[int]:
        """Tokens of each segment (the shared prefix first, when there is one)."""
        return segment_lengths(self.n_tokens, self.segment, self.prime)


def segment_lengths(n_tokens: int, segment: int, prime: int = 0) -> List[int]:
    """Tokens of each segment: a prefix of ``prime`` (if any), then segments of ``segment`` (0: one)."""
    n, s = n_tokens - prime, segment or n_tokens - prime
    return ([prime] if prime else []) + ([min(s, n - i) for i in range(0, n, s)] if n > 0 else [])


def pack_lm_payload(p: LMPayload) -> bytes:
    """The language models' payload, format 2 (as format 1; varints unsigned LEB128)::

        3       the float record (kolmo.lm.machine): payload version (3 high bits) and CPU kernel
                level, torch's CPU thread count, BLAS / CPU vendor / instruction set
        varint  N, the number of tokens
        varint  8 S + 4 [a shared prefix] + 2 [safe segments follow] + [segment CRCs follow]; S tokens
                per segment, 0: one
        (varint P: a shared prefix of P tokens is segment 0, and the other segments cut the rest)
        (varint K, then K varints: the first safe segment's index, then the gaps to the next, minus 1)
        (u16 x C: the low 16 bits of the CRC-32 of each of the C segments' bytes)
        K x     varint length, then the deflated bytes of each safe segment
        G-1 x   varint number of 32-bit words of each coder group's stream but the last
        ...     the groups' words, u32 little-endian, in group order, to the end

    A one-segment stream has 3 + 2 + 1 bytes here for 128-16383 tokens.
    """
    if len(p.machine) != 3 or p.machine[0] >> 5 != PAYLOAD_VERSION:
        raise ValueError("machine must be the 3-byte float record of payload version "
                         f"{PAYLOAD_VERSION}, got {bytes(p.machine)!r}")
    parts = [bytes(p.machine), varint(p.n_tokens),
             varint(8 * p.segment + 4 * bool(p.prime) + 2 * bool(p.safe) + (p.crc16 is not None))]
    if p.prime:
        parts.append(varint(p.prime))
    if p.safe:
        parts.append(varint(len(p.safe)))
        parts += [varint(i - prev - 1) for prev, i in zip((-1,) + tuple(p.safe[:-1]), p.safe)]
    if p.crc16 is not None:
        parts.append(struct.pack(f"<{len(p.crc16)}H", *p.crc16))
    for b in p.safe_data:
        parts += [varint(len(b)), b]
    parts += [varint(len(w)) for w in p.words[:-1]]
    parts += [bytes(memoryview(w.astype("<u4")).cast("B")) for w in p.words]
    return b"".join(parts)


def unpack_lm_payload(payload: bytes, length: int, n_groups: Callable[[List[int], int], int],
                      what: str = "lm stream") -> LMPayload:
    """Inverse of :func:`pack_lm_payload`. ``length``: the data's bytes (each token spells at least
    one); ``n_groups(lengths, prime)``: how many coder groups those segment lengths make, after a
    shared prefix of ``prime`` tokens (0: none)."""
    import numpy as np
    if len(payload) < 3:
        raise CorruptStreamError(f"{what}: its payload is truncated ({len(payload)} bytes)")
    if payload[0] >> 5 != PAYLOAD_VERSION:
        raise CorruptStreamError(f"{what}: payload format {payload[0] >> 5} is not one this kolmo reads "
                                 f"({PAYLOAD_VERSION}): the stream is corrupted or from another kolmo version")
    n, pos = read_varint(payload, 3, what)
    flags, pos = read_varint(payload, pos, what)
    segment, has_prime, has_safe, has_crc = flags >> 3, flags & 4, flags & 2, flags & 1
    prime = 0
    if has_prime:
        prime, pos = read_varint(payload, pos, what)
    if n > length or (segment and segment >= n - prime) or (has_prime and not 0 < prime < n):
        raise CorruptStreamError(f"{what} announces {n} tokens in segments of {segment} (shared prefix {prime}) "
                                 f"for {length} bytes of data")
    lengths = segment_lengths(n, segment, prime)
    safe: List[int] = []
    if has_safe:
        k, pos = read_varint(payload, pos, what)
        for _ in range(min(k, len(lengths) + 1)):
            gap, pos = read_varint(payload, pos, what)
            safe.append((safe[-1] if safe else -1) + gap + 1)
        if not 0 < k == len(safe) or safe[-1] >= len(lengths):
            raise CorruptStreamError(f"{what}: its table of safe segments is corrupted")
    crc16 = None
    if has_crc:
        if pos + 2 * len(lengths) > len(payload):
            raise CorruptStreamError(f"{what}: its segment CRCs are truncated")
        crc16, pos = struct.unpack_from(f"<{len(lengths)}H", payload, pos), pos + 2 * len(lengths)
    safe_data = []
    for _ in safe:
        m, pos = read_varint(payload, pos, what)
        if pos + m > len(payload):
            raise CorruptStreamError(f"{what}: a safe segment is truncated")
        safe_data.append(payload[pos:pos + m])
        pos += m
    g = n_groups(lengths, prime)
    counts = []
    for _ in range(max(0, g - 1)):
        w, pos = read_varint(payload, pos, what)
        counts.append(w)
    rest = len(payload) - pos
    if g:
        if rest % 4 or 4 * sum(counts) > rest:
            raise CorruptStreamError(f"{what}: the coded words do not match the segment table (truncated or corrupted)")
        counts.append(rest // 4 - sum(counts))
    elif rest:
        raise CorruptStreamError(f"{what}: bytes after the table of an empty stream")
    words = []
    for w in counts:
        words.append(np.frombuffer(payload, dtype="<u4", count=w, offset=pos).astype(np.uint32))
        pos += 4 * w
    return LMPayload(bytes(payload[:3]), n, segment, tuple(safe), tuple(safe_data), crc16, tuple(words), prime)


def check_output(frame: Frame, out: bytes) -> bytes:
    """Return ``out`` if it matches the frame's length and CRC, else raise CorruptStreamError."""
    if len(out) != frame.length:
        raise CorruptStreamError(f"decoded {len(out)} bytes but the stream announces {frame.length}: "
                                 "the stream is truncated or corrupted")
    if crc32(out) != frame.crc:
        raise CorruptStreamError("decoded data fails its CRC-32 check: the stream is truncated or corrupted, "
                                 "or was decoded with a different codec version")
    return out
