"""Byte-exact tokenization for byte-level BPE tokenizers (GPT-2, Llama 3, SmolLM, Qwen, ...).

Every token of a byte-level BPE vocabulary spells a fixed byte string, so token ids -> bytes is a
plain table lookup and decoding is exact for *any* id sequence. Encoding:

1. the input is split into maximal valid UTF-8 runs and the bytes that are not valid UTF-8;
2. each valid run is tokenized by the model's own tokenizer (special tokens are never produced)
   and the ids are checked to spell exactly the run's bytes; if not (a tokenizer with a
   normalizer, say), the run falls back to one token per byte;
3. invalid bytes become single-byte tokens.

Some vocabularies lack a few single-byte tokens (SmolLM2 has no token for 21 bytes such as 0x04
and 0xFF, which never occur in its training text). Each missing byte gets a *virtual* token id
``>= vocab_size``: the coding alphabet is ``vocab_size + n_virtual`` symbols, the model reads a
fixed substitute token in its place (:meth:`ByteTokenizer.model_input`), and the probability of
the virtual tokens is set by :data:`VIRTUAL_MASS` (see :mod:`kolmo.lm.scoring.loglik`).

So any byte string round-trips, binary data included, and text is tokenized as the model expects.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import Dict, List

import numpy as np

from ...errors import ModelUnavailableError
from ..machine import float64_device

_INVALID = "\udc80-\udcff"

#: total probability of the virtual byte tokens at every position; the model's own tokens share
#: the remaining 1 - VIRTUAL_MASS (a cost of 2.2e-5 bits per token, and ~16 + log2(n) bits per
#: virtual byte)
VIRTUAL_MASS = 2.0 ** -16


def coding_logp(logp, virtual, n_virtual: int, base: float = math.e):
    """The virtual-byte rule on log-probabilities (numpy or torch, log base ``base``): a model
    token's ``log p`` becomes ``log((1 - VIRTUAL_MASS) p)``, a virtual one's ``log(VIRTUAL_MASS /
    n_virtual)`` (``virtual``: a boolean mask of the same shape). Unchanged where ``n_virtual`` is 0."""
    if not n_virtual:
        return logp
    if base == 2.0:
        keep, each = math.log2(1.0 - VIRTUAL_MASS), math.log2(VIRTUAL_MASS / n_virtual)
    else:
        keep, each = math.log1p(-VIRTUAL_MASS) / math.log(base), math.log(VIRTUAL_MASS / n_virtual) / math.log(base)
    if isinstance(logp, np.ndarray):
        return np.where(virtual, each, logp + keep)
    import torch
    return torch.where(virtual, torch.full_like(logp, each), logp + keep)


def with_virtual(probs, n_virtual: int, virtual_mass: float = VIRTUAL_MASS):
    """Append ``n_virtual`` symbols sharing ``virtual_mass`` to (B, V) distributions, on their device.

    The model's symbols are scaled by ``1 - virtual_mass`` and each extra one gets
    ``virtual_mass / n_virtual``, in float64, the rule of the
    virtual byte tokens (module docstring). Returns (B, V + n_virtual) float64 (``probs``
    itself, as float64, where ``n_virtual`` is 0) on ``probs``' device, or on the CPU for Apple's
    MPS, which has no float64.
    """
    import torch
    if isinstance(n_virtual, bool) or not isinstance(n_virtual, (int, np.integer)) or n_virtual < 0:
        raise ValueError(f"n_virtual must be an int >= 0, got {n_virtual!r}")
    if not 0.0 < virtual_mass < 1.0:
        raise ValueError(f"virtual_mass must be in (0, 1), got {virtual_mass!r}")
    if probs.dim() != 2:
        raise ValueError(f"probs must be a (B, V) tensor, got shape {tuple(probs.shape)}")
    p = float64_device(probs).to(torch.float64)
    if not n_virtual:
        return p
    extra = torch.full((p.shape[0], int(n_virtual)), virtual_mass / n_virtual, dtype=torch.float64, device=p.device)
    return torch.cat([p * (1.0 - virtual_mass), extra], dim=1)


@lru_cache(maxsize=1)
def byte_to_unicode() -> Dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable characters."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


class ByteTokenizer:
    """Wraps a Hugging Face tokenizer into an exact bytes <-> token ids map."""

    def __init__(self, hf_tokenizer, vocab_size: int):
        self.hf = hf_tokenizer
        decode = {c: b for b, c in byte_to_unicode().items()}
        self.id_bytes: List[bytes] = [b""] * vocab_size
        special = set(getattr(hf_tokenizer, "all_special_ids", []) or [])
        for token, idx in hf_tokenizer.get_vocab().items():
            if idx >= vocab_size or idx in special:
                continue
            try:
                self.id_bytes[idx] = bytes(decode[c] for c in token)
            except KeyError:
                continue  # not a byte-level token (an added special token): never produced by encode
        single = {}
        for idx, b in enumerate(self.id_bytes):
            if len(b) == 1 and b[0] not in single:
                single[b[0]] = idx
        missing = [b for b in range(256) if b not in single]
        if len(missing) > 64:
            raise ModelUnavailableError(
                f"the tokenizer {type(hf_tokenizer).__name__} is not a byte-level BPE tokenizer "
                f"({len(missing)} of the 256 single-byte tokens are missing), so it cannot code "
                "arbitrary bytes exactly; use a model with a byte-level BPE tokenizer "
                "(GPT-2, Llama 3, SmolLM, Qwen, ...)")
        self.vocab_size = vocab_size
        self.n_virtual = len(missing)
        for k, b in enumerate(missing):
            single[b] = vocab_size + k
            self.id_bytes.append(bytes([b]))
        self.alphabet = vocab_size + self.n_virtual
        self.byte_ids = np.array([single[b] for b in range(256)], dtype=np.int64)
        # the model reads this real token where a virtual one stands (any fixed choice works)
        self.substitute = int(single[ord("?")]) if ord("?") not in missing else 0
        raw = _INVALID + "".join(re.escape(chr(b)) for b in missing if b < 0x80)
        self._raw = re.compile(f"[{raw}]+")

    def _encode_text(self, text: str) -> List[int]:
        kwargs = {"add_special_tokens": False}
        try:
            ids = self.hf(text, split_special_tokens=True, **kwargs)["input_ids"]
        except TypeError:  # older tokenizers without split_special_tokens
            ids = self.hf(text, **kwargs)["input_ids"]
        raw = text.encode("utf-8")
        if b"".join(self.id_bytes[i] for i in ids) != raw:
            return self.byte_ids[np.frombuffer(raw, dtype=np.uint8)].tolist()
        return list(ids)

    def encode(self, data: bytes) -> np.ndarray:
        """Token ids (int64) whose bytes concatenate to exactly ``data``."""
        text = data.decode("utf-8", errors="surrogateescape")
        out: List[int] = []
        pos = 0
        for m in self._raw.finditer(text):
            if m.start() > pos:
                out += self._encode_text(text[pos:m.start()])
            bad = m.group().encode("utf-8", errors="surrogateescape")
            out += self.byte_ids[np.frombuffer(bad, dtype=np.uint8)].tolist()
            pos = m.end()
        if pos < len(text):
            out += self._encode_text(text[pos:])
        return np.asarray(out, dtype=np.int64)

    def model_input(self, ids: np.ndarray) -> np.ndarray:
        """``ids`` with virtual tokens replaced by the substitute the model reads instead."""
        if not self.n_virtual:
            return ids
        return np.where(ids >= self.vocab_size, self.substitute, ids)

    def decode(self, ids) -> bytes:
        """The bytes that ``ids`` spell (exact inverse of :meth:`encode`)."""
        table = self.id_bytes
        return b"".join(table[int(i)] for i in ids)


def token_spans(decode, ids, start: int = 0):
    """(start, end) byte offsets of each token in the bytes that ``ids`` spell (``decode([id])``
    gives a token's bytes), the first starting at ``start``."""
    ends = np.cumsum([len(decode([int(t)])) for t in ids], dtype=np.int64) + start
    return list(zip(np.concatenate([[start], ends[:-1]]).tolist(), ends.tolist())) if len(ends) else []
