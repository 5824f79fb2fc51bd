"""An interleaved rANS coder for B independent symbol streams, vectorised over the streams.

The LM coder advances B equally long token chunks in lock-step: one model step yields B
next-token distributions, one per chunk. This module entropy-codes those B streams with O(1) work
per symbol and no Python loop over the streams: each step's only input is, per stream, the
quantised interval ``(start, freq)`` of the coded symbol, integers with ``freq >= 1`` and
``start + freq <= 2**P`` (P = ``precision``), taken from a table whose frequencies sum to exactly
``2**P`` (:mod:`kolmo.lm.coding.tables` builds such tables on the model's device).

The coder (range-variant ANS, Duda 2013; interleaving as in Giesen, "Interleaved entropy coders",
2014), per stream, with ``M = 2**P`` and ``L = 2**32``:

* state ``x``: a 64-bit integer kept in ``[L, 2**64)`` between symbols;
* encode ``(s, f)``: ``x' = (x // f) * M + (x % f) + s``;
* decode: ``slot = x mod M`` identifies the symbol (the one with ``s <= slot < s + f``), then
  ``x' = f * (x >> P) + slot - s``;
* renormalisation, in 32-bit words: before encoding, if ``x >= f * 2**(64 - P)`` (tested as
  ``x >> (64 - P) >= f``, which cannot overflow) the encoder emits the low word of ``x`` and
  shifts it out; after decoding, if ``x < L`` the decoder shifts the next word in. One word is
  always enough either way (``f <= M <= 2**31`` keeps the encoder's ``(x // f) * M`` below
  ``2**64`` and the result at least ``L``), so every step is a fixed handful of numpy operations
  on all B states at once. One stream (lm-online) runs the same rule in Python ints, where
  numpy's overhead per call would cost more than the arithmetic.

rANS is last-in first-out, so :class:`BatchEncoder` buffers the pushed steps and encodes them in
reverse in :meth:`BatchEncoder.finish`; :class:`BatchDecoder` then runs forward, in the order the
model produces distributions.

Stream layout (one uint32 array for all B streams)::

    hi_0 lo_0 hi_1 lo_1 ... hi_{B-1} lo_{B-1}    the encoder's final states (the decoder's start)
    words read after decoding step 0               streams in increasing order
    words read after decoding step 1               ...
    ...

At each step, the streams that need a word read one each, in increasing stream order (a boolean
mask and one slice), so the decoder consumes the words in exactly the order the encoder laid them
out. An encoder that emitted no word and whose states are all still ``L`` (zero steps, or only
certain symbols with ``f = M``) writes an empty array; the decoder reads an empty array as B states
of ``L``.

Every stream starts encoding from the fixed state ``L``, so the decoder must end at exactly ``L``
with every word consumed; :meth:`BatchDecoder.check_end` verifies both. The 32 bits of that fixed
initial state are the price of this integrity check (a corrupted stream passes it with odds of
about 2**-32 per stream).

For one stream the words are exactly those of constriction's ``AnsCoder`` (the same 64-bit state,
32-bit words and rule) started from the state ``2**32`` and given the same integer frequencies, in
reverse order: constriction is a stack that keeps its state at the end.

Overhead: 8 bytes per stream for the final state, of which the fixed initial state accounts for
4. Exactly: a stream of n symbols with frequencies ``f_i`` takes at most
``sum(-log2(f_i / M)) + 64 + n * log2(1 + 2**(P - 32))`` bits (the last term bounds the rounding of
``x // f``: at most 0.0056 bits per symbol for P = 24, far less on average), so the whole array is
at most ``sum over all symbols of -log2(f / M) + 64 B + (number of symbols) * log2(1 + 2**(P-32))``
bits. Proof sketch: ``log2(x) + 32 * (words emitted)`` starts at 32, grows by at most
``-log2(f/M) + log2(1 + f/x)`` per symbol (with ``x >= f * 2**(32-P)`` after renormalisation) and
does not grow on renormalisation; the final state, at least ``L``, is then written in 64 bits.

Corrupted input never hangs (the decoder loops over the steps the caller asks for, never over
words) and never indexes out of bounds: a stream too short raises
:class:`kolmo.errors.CorruptStreamError`, and so does :meth:`BatchDecoder.check_end` for leftover
words or a wrong final state.
"""

from __future__ import annotations

from typing import List, Tuple

import numpy as np

from ...errors import CorruptStreamError

DEFAULT_PRECISION = 24
MAX_PRECISION = 31  # keeps f <= 2**31: the quantiser's int64 products and the uint32 step buffers fit

_WORD_BITS = np.uint64(32)
_WORD_MASK = np.uint64(0xFFFFFFFF)
_L = np.uint64(1 << 32)  # lower end of the state interval, and every stream's initial state
_ONE = np.int64(1)
_HIGH = np.int64(32)


def check_precision(precision) -> int:
    """``precision`` as an int in ``[1, MAX_PRECISION]``, or ValueError."""
    if isinstance(precision, bool) or not isinstance(precision, (int, np.integer)) \
            or not 1 <= int(precision) <= MAX_PRECISION:
        raise ValueError(f"precision must be an int in [1, {MAX_PRECISION}] (bits of probability), "
                         f"got {precision!r}")
    return int(precision)


def _check_streams(n_streams) -> int:
    if isinstance(n_streams, bool) or not isinstance(n_streams, (int, np.integer)) or n_streams < 1:
        raise ValueError(f"n_streams must be an int >= 1, got {n_streams!r}")
    return int(n_streams)


def _as_steps(a, name: str, n_streams: int) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array, got dtype {a.dtype}; pass the integer "
                        "frequency table's entries (kolmo.lm.coding.tables.Tables.interval)")
    if a.shape != (n_streams,):
        raise ValueError(f"{name} must have shape ({n_streams},), one entry per stream, got {a.shape}")
    return a.astype(np.int64, copy=False)  # a uint64 beyond 2**63 turns negative: rejected below


def _intervals(start, freq, n_streams: int, precision: int):
    """Validate one step's intervals; returns them as uint64 arrays of shape (n_streams,)."""
    s = _as_steps(start, "start", n_streams)
    f = _as_steps(freq, "freq", n_streams)
    # valid iff s >= 0, f >= 1 and s + f <= 2**P: then each term below is in [0, 2**32), and any
    # violation makes one negative or sets a bit >= 32 (s | f catches the values that would
    # overflow the others); one OR and one shift test all of them for all streams
    high = (s | f | (f - _ONE) | (np.int64(1 << precision) - s - f)) >> _HIGH
    if np.count_nonzero(high):  # (count_nonzero, and numpy scalars: several times faster than .any())
        i = int(np.flatnonzero(high)[0])
        raise ValueError(f"stream {i}: the interval start={int(s[i])}, freq={int(f[i])} is not inside "
                         f"[0, 2**{precision}) with freq >= 1; intervals must come from a table of "
                         f"integer frequencies >= 1 summing to 2**{precision} (the coder's precision)")
    return s.view(np.uint64), f.view(np.uint64)  # all non-negative: the view is exact


def _interval_one(start, freq, precision: int) -> Tuple[int, int]:
    """:func:`_intervals` of one stream, as Python ints (a step of one stream: scalar arithmetic
    costs far less than numpy's per-call overhead); the same checks and errors."""
    s, f = int(_as_steps(start, "start", 1)[0]), int(_as_steps(freq, "freq", 1)[0])
    if s < 0 or f < 1 or s + f > 1 << precision:
        raise ValueError(f"stream 0: the interval start={s}, freq={f} is not inside [0, 2**{precision}) with "
                         f"freq >= 1; intervals must come from a table of integer frequencies >= 1 summing to "
                         f"2**{precision} (the coder's precision)")
    return s, f


class BatchEncoder:
    """Encodes B streams in lock-step: one :meth:`push` per step, then :meth:`finish` once.

    ``push`` only validates and buffers (rANS must encode in reverse); ``finish`` encodes all steps
    and returns the interleaved word stream described in the module docstring.
    """

    def __init__(self, n_streams: int, precision: int = DEFAULT_PRECISION):
        self.n_streams = _check_streams(n_streams)
        self.precision = check_precision(precision)
        self._starts: List[np.ndarray] = []
        self._freqs: List[np.ndarray] = []
        self._done = False

    def __len__(self) -> int:
        """Steps pushed so far."""
        return len(self._starts)

    def push(self, start, freq) -> None:
        """Buffer one step: stream ``i`` codes the symbol with interval ``[start[i], start[i] + freq[i])``.

        ``start`` and ``freq`` are (B,) integer arrays (numpy, or anything ``np.asarray`` takes);
        steps are pushed in forward order, the order the decoder will decode them.
        """
        if self._done:
            raise RuntimeError("this BatchEncoder has already finished; start a new one")
        if self.n_streams == 1:  # Python ints, encoded by _finish_one
            s1, f1 = _interval_one(start, freq, self.precision)
            self._starts.append(s1)
            self._freqs.append(f1)
            return
        s, f = _intervals(start, freq, self.n_streams, self.precision)
        # uint32 halves the buffer: start < 2**31 and freq <= 2**31 for precision <= 31
        self._starts.append(s.astype(np.uint32))
        self._freqs.append(f.astype(np.uint32))

    def finish(self) -> np.ndarray:
        """Encode every pushed step; returns the uint32 word stream for all B streams."""
        if self._done:
            raise RuntimeError("this BatchEncoder has already finished; start a new one")
        self._done = True
        if self.n_streams == 1:
            return self._finish_one()
        p = np.uint64(self.precision)
        top = np.uint64(64 - self.precision)
        x = np.full(self.n_streams, _L, dtype=np.uint64)
        chunks: List[np.ndarray] = []  # per step, in reverse step order
        for k in range(len(self._starts) - 1, -1, -1):
            f = self._freqs[k].astype(np.uint64)
            need = (x >> top) >= f  # x >= f * 2**(64-P): encoding would overflow, emit a word first
            if np.count_nonzero(need):
                chunks.append(x[need].astype(np.uint32))  # the low words, in increasing stream order
                x = np.where(need, x >> _WORD_BITS, x)
            q, r = np.divmod(x, f)
            x = (q << p) + r + self._starts[k]  # uint32 + uint64 -> uint64
        self._starts, self._freqs = [], []
        if not chunks and (x == _L).all():
            return np.zeros(0, dtype=np.uint32)  # nothing to say: the decoder assumes initial states
        head = np.empty(2 * self.n_streams, dtype=np.uint32)
        head[0::2] = (x >> _WORD_BITS).astype(np.uint32)
        head[1::2] = (x & _WORD_MASK).astype(np.uint32)
        chunks.append(head)
        return np.concatenate(chunks[::-1])

    def _finish_one(self) -> np.ndarray:
        """:meth:`finish` of one stream in Python ints: the same rule, state and word layout."""
        p, top = self.precision, 64 - self.precision
        x = 1 << 32
        words: List[int] = []  # in reverse step order
        for s, f in zip(reversed(self._starts), reversed(self._freqs)):
            if x >> top >= f:  # encoding would overflow 64 bits: emit the low word first
                words.append(x & 0xFFFFFFFF)
                x >>= 32
            q, r = divmod(x, f)
            x = (q << p) + r + s
        self._starts, self._freqs = [], []
        if not words and x == 1 << 32:
            return np.zeros(0, dtype=np.uint32)
        return np.array([x >> 32, x & 0xFFFFFFFF] + words[::-1], dtype=np.uint32)


class BatchDecoder:
    """Decodes what :class:`BatchEncoder` wrote, step by step in forward order.

    Per step: :meth:`slots` gives each stream's slot in ``[0, 2**P)``; the caller finds the symbol
    whose interval holds it (:meth:`kolmo.lm.coding.tables.Tables.find`) and passes that symbol's
    ``(start, freq)`` to :meth:`advance`. After the last step, :meth:`check_end`.
    """

    def __init__(self, words, n_streams: int, precision: int = DEFAULT_PRECISION):
        self.n_streams = _check_streams(n_streams)
        self.precision = check_precision(precision)
        w = np.asarray(words)
        if w.ndim != 1 or w.dtype.kind not in "iu":
            raise TypeError(f"words must be a 1-D integer array (the uint32 words BatchEncoder.finish "
                            f"returned), got dtype {w.dtype} with shape {w.shape}")
        if w.size and (w.min() < 0 or w.max() > 0xFFFFFFFF):
            raise CorruptStreamError("the word stream holds values outside [0, 2**32); it is not a "
                                     "stream of 32-bit words written by BatchEncoder")
        self._words = w.astype(np.uint64)  # uint64 so a word can be OR-ed into a state directly
        b = self.n_streams
        if w.size == 0:
            self._x = np.full(b, _L, dtype=np.uint64)
            self._pos = 0
        elif w.size < 2 * b:
            raise CorruptStreamError(f"the word stream is truncated: {w.size} words, but {b} streams "
                                     f"need at least {2 * b} for their initial states")
        else:
            self._x = (self._words[0:2 * b:2] << _WORD_BITS) | self._words[1:2 * b:2]
            if (self._x < _L).any():
                raise CorruptStreamError("the word stream is corrupted: a stream's initial state is below "
                                         "2**32, which BatchEncoder never writes")
            self._pos = 2 * b
        self._mask = np.uint64((1 << self.precision) - 1)
        self._shift = np.uint64(self.precision)

    def slots(self) -> np.ndarray:
        """(B,) int64: the value in ``[0, 2**P)`` each stream's next symbol's interval must contain."""
        if self.n_streams == 1:
            return np.array([int(self._x[0]) & ((1 << self.precision) - 1)], dtype=np.int64)
        return (self._x & self._mask).astype(np.int64)

    def advance(self, start, freq) -> None:
        """Consume one step: stream ``i``'s symbol has interval ``[start[i], start[i] + freq[i])``,
        which must contain ``slots()[i]``."""
        if self.n_streams == 1:
            return self._advance_one(*_interval_one(start, freq, self.precision))
        s, f = _intervals(start, freq, self.n_streams, self.precision)
        offset = (self._x & self._mask) - s  # slot - start; wraps to a huge value if slot < start
        bad = offset >= f
        if np.count_nonzero(bad):
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"stream {i}: the interval [{int(s[i])}, {int(s[i] + f[i])}) does not contain "
                             f"the stream's slot {int(self._x[i] & self._mask)}; pass the interval of the "
                             "symbol found for slots() (Tables.find), in the same table")
        x = f * (self._x >> self._shift) + offset  # < 2**64: see the module docstring
        need = x < _L
        n = int(np.count_nonzero(need))
        if n:
            end = self._pos + n
            if end > self._words.size:
                raise CorruptStreamError(f"the word stream is truncated or corrupted: decoding needs word "
                                         f"{end - 1} but the stream has only {self._words.size}")
            x[need] = (x[need] << _WORD_BITS) | self._words[self._pos:end]
            self._pos = end
        self._x = x

    def _advance_one(self, s: int, f: int) -> None:
        """:meth:`advance` of one stream in Python ints: the same rule, checks and errors."""
        x = int(self._x[0])
        slot = x & ((1 << self.precision) - 1)
        if not s <= slot < s + f:
            raise ValueError(f"stream 0: the interval [{s}, {s + f}) does not contain the stream's slot {slot}; "
                             "pass the interval of the symbol found for slots() (Tables.find), in the same table")
        x = f * (x >> self.precision) + slot - s
        if x < 1 << 32:
            if self._pos >= self._words.size:
                raise CorruptStreamError(f"the word stream is truncated or corrupted: decoding needs word "
                                         f"{self._pos} but the stream has only {self._words.size}")
            x = (x << 32) | int(self._words[self._pos])
            self._pos += 1
        self._x[0] = x

    def check_end(self) -> None:
        """Raise CorruptStreamError unless every word was read and every state is back at ``2**32``."""
        left = self._words.size - self._pos
        if left:
            raise CorruptStreamError(f"the word stream has {left} words left after decoding; it is corrupted "
                                     "or was decoded with other steps, tables or streams than it was "
                                     "encoded with")
        bad = np.flatnonzero(self._x != _L)
        if bad.size:
            raise CorruptStreamError(f"the word stream is corrupted: {bad.size} of {self.n_streams} streams "
                                     f"(the first: {int(bad[0])}) did not decode back to the initial state")
