"""The language models' payload (``lm`` and ``lm-online``), inside the container's payload.

The language models' payload (``lm`` and ``lm-online``, :func:`pack_lm_payload`) starts with a
version byte and what the encoder's floats depended on, then a segment table, safe segments and
the rANS coder's words. A one-segment ``lm`` stream of 128-16383 tokens has 11 + 2 + 6 = 19 bytes
of fixed overhead for 1-16 kB of text, plus the coder's final state (8 bytes).
A *safe* segment (one the encoder's verification found would not decode) is stored as its bytes,
deflated (:func:`safe_code`).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Tuple

from ..errors import CorruptStreamError
from .container import read_varint, varint

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


def safe_code(data: bytes) -> bytes:
    """The safe mode's payload for one segment: its bytes, deflated (always decodes)."""
    return zlib.compress(data, 9)


def safe_decode(payload: bytes, what: str) -> bytes:
    """Inverse of :func:`safe_code`; a damaged segment raises CorruptStreamError."""
    try:
        return zlib.decompress(payload)
    except zlib.error as exc:
        raise CorruptStreamError(f"{what}: a safe segment does not inflate ({exc}): the stream is corrupted") from None
