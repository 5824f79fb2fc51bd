"""Integer frequency tables for :mod:`kolmo.lm.coding.rans`, built on the model's device.

The coder needs, per step and per stream, integer frequencies ``>= 1`` that sum to exactly
``2**P``. Building them on the device where the probabilities already are keeps the host's work
O(1) per token: only the coded symbol's ``(start, freq)`` (encoding), or B slots in and B symbols
and intervals out (decoding), cross between device and host.

Encoder and decoder must build bit-identical tables from the same probabilities, possibly on
different machines. So :func:`frequencies` uses only IEEE elementwise operations (float64
multiply and floor, exact for float32 or float64 inputs on every conforming device) and integer
sums, divisions and argmax, which are exact whatever their reduction order. No floating-point
reduction (a float sum, or a normalisation by one) is involved: its result would depend on the
device's summation order. Identical input floats thus give identical tables on every device.

Besides the intervals, a step makes one or two scalar checks cross (a row that needs rescaling,
symbols out of range); the host waits for the device there, as it must for the intervals anyway.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import torch

from ..machine import float64_device
from .rans import DEFAULT_PRECISION, check_precision


def frequencies(probs: torch.Tensor, precision: int = DEFAULT_PRECISION) -> torch.Tensor:
    """Quantise (B, A) next-symbol distributions into (B, A) int64 frequencies on the same device.

    Every entry is at least 1 (any symbol stays codable, even one of probability 0) and each row
    sums to exactly ``2**precision``:

    1. ``f = floor(p * (2**P - A)) + 1`` in float64, with ``p`` clamped to [0, 1] (NaN -> 0);
    2. a row whose sum exceeds ``2**P`` (its probabilities sum to more than 1, or products were
       rounded up) is scaled down in integers: ``f = 1 + (f - 1) * (2**P - A) // (sum - A)``;
    3. the row's remainder ``2**P - sum >= 0`` goes to its largest entry (the lowest index among
       equal ones), where it costs the least.

    So each count is within one of ``p * (2**P - A) + 1``, except the largest, which takes back
    what the floors lost (at most A counts per row). Deterministic: see the module docstring.
    Raises ValueError where ``A > 2**P`` (no room for a count of 1 each).
    """
    p_bits = check_precision(precision)
    if not isinstance(probs, torch.Tensor):
        raise TypeError(f"probs must be a torch.Tensor (B, A), got {type(probs).__name__}")
    if probs.dim() != 2 or probs.shape[1] < 1:
        raise ValueError(f"probs must be a (B, A) tensor with A >= 1 symbols, got shape {tuple(probs.shape)}")
    if not probs.dtype.is_floating_point:
        raise TypeError(f"probs must be floating point, got {probs.dtype}")
    m, a = 1 << p_bits, probs.shape[1]
    if a > m:
        raise ValueError(f"an alphabet of {a} symbols does not fit {p_bits} bits of precision: every symbol "
                         f"needs a count >= 1 out of 2**{p_bits} = {m}; use precision >= {(a - 1).bit_length()}")
    device = probs.device
    p = torch.nan_to_num(float64_device(probs).to(torch.float64), nan=0.0, posinf=1.0, neginf=0.0)
    p.clamp_(0.0, 1.0).mul_(float(m - a))  # in place on our own copy: fewer passes over (B, A)
    f = p.to(torch.int64)  # the cast truncates, which is floor here (p >= 0)
    f += 1
    total = f.sum(dim=1, keepdim=True)
    over = total > m
    if bool(over.any()):  # rare (rows summing to more than 1), so spare the common case the division
        # (f - 1) * (m - a) < 2**62 for precision <= 31; the clamp only guards rows torch.where discards
        scaled = 1 + (f - 1) * (m - a) // (total - a).clamp_min(1)
        f = torch.where(over, scaled, f)
        total = f.sum(dim=1, keepdim=True)
    # the remainder (>= 0 now) goes to the first largest count: argmax is documented to return the
    # first index among equal maxima, on every backend
    f.scatter_add_(1, f.argmax(dim=1, keepdim=True), m - total)
    return f.to(device)


def frequencies_host(probs: np.ndarray, precision: int = DEFAULT_PRECISION) -> np.ndarray:
    """:func:`frequencies` on the host, for a model on the CPU: the same operations (float64
    multiply and floor, integer sums, first argmax), so the same tables bit for bit, in one
    compiled call (:func:`kolmo.lm.kernels.frequencies_rows`) without torch's per-operation
    overhead, which dominates for small alphabets (a byte model's 256 symbols)."""
    from ..kernels import frequencies_rows
    p = probs if probs.dtype in (np.float32, np.float64) else probs.astype(np.float64)  # exact widening
    f = np.empty(p.shape, dtype=np.int64)
    frequencies_rows(p, precision, f)
    return f


class HostTables:
    """:class:`Tables` of a model on the CPU, in numpy (see :func:`frequencies_host`)."""

    def __init__(self, freq: np.ndarray):
        self.freq = freq
        self._ends = None

    @property
    def ends(self) -> np.ndarray:
        """(B, A) inclusive cumulative counts, made on first use (an encoder's step of one stream
        needs one start, a sum of the counts before its symbol)."""
        if self._ends is None:
            self._ends = np.cumsum(self.freq, axis=1)
        return self._ends

    def interval_host(self, symbols: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        n_rows, n_symbols = self.freq.shape
        if n_rows == 1 and np.shape(symbols) == (1,):  # one stream: scalar indexing, no fancy indexing
            s = int(symbols[0])
            if not 0 <= s < n_symbols:
                raise ValueError(f"symbols must be in [0, {n_symbols}), got {s}")
            f = int(self.freq[0, s])
            start = int(self.freq[0, :s].sum()) if self._ends is None else int(self._ends[0, s]) - f
            return np.array([start]), np.array([f])
        rows = np.arange(n_rows)
        sym = np.asarray(symbols, dtype=np.int64)
        if sym.size and (sym.min() < 0 or sym.max() >= n_symbols):
            raise ValueError(f"symbols must be in [0, {n_symbols}), got {sym.min()}..{sym.max()}")
        f = self.freq[rows, sym]
        return self.ends[rows, sym] - f, f

    def find_host(self, slots: np.ndarray) -> np.ndarray:
        n = self.freq.shape[1]
        return np.array([min(int(np.searchsorted(e, s, side="right")), n - 1) for e, s in zip(self.ends, slots)],
                        dtype=np.int64)


class Tables:
    """The cumulative tables of one step's (B, A) frequencies, kept on their device."""

    def __init__(self, freq: torch.Tensor):
        """``freq``: (B, A) int64 counts >= 1, each row summing to ``2**P`` (:func:`frequencies`)."""
        if not isinstance(freq, torch.Tensor) or freq.dim() != 2 or freq.dtype != torch.int64:
            raise ValueError("freq must be a (B, A) int64 tensor (from frequencies()), got "
                             f"{getattr(freq, 'dtype', type(freq).__name__)} with shape "
                             f"{tuple(getattr(freq, 'shape', ()))}")
        self.freq = freq
        # the inclusive cumulative sum, strictly increasing since every count is >= 1; a symbol's
        # start is its end minus its count, taken for the B coded symbols only (saves a (B, A) pass)
        self.ends = torch.cumsum(freq, dim=1)

    @property
    def n_symbols(self) -> int:
        return self.freq.shape[1]

    def interval(self, symbols: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B,) symbol ids -> their (start, freq), two (B,) int64 tensors on the tables' device."""
        sym = torch.as_tensor(symbols, device=self.freq.device).to(torch.int64).reshape(-1, 1)
        if sym.shape[0] != self.freq.shape[0]:
            raise ValueError(f"symbols must have one entry per row of the table ({self.freq.shape[0]}), "
                             f"got {sym.shape[0]}")
        # an out-of-range gather is a device-side assert on CUDA, so check first (one sync)
        if bool(((sym < 0) | (sym >= self.n_symbols)).any()):
            raise ValueError(f"symbols must be in [0, {self.n_symbols}), got "
                             f"min {int(sym.min())}, max {int(sym.max())}")
        f = self.freq.gather(1, sym)[:, 0]
        return self.ends.gather(1, sym)[:, 0] - f, f

    def interval_host(self, symbols: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """:meth:`interval` of host ids, returned to the host: two (B,) int64 arrays."""
        s, f = self.interval(torch.from_numpy(np.asarray(symbols, dtype=np.int64)).to(self.freq.device))
        return s.cpu().numpy(), f.cpu().numpy()

    def find_host(self, slots: np.ndarray) -> np.ndarray:
        """:meth:`find` of host slots, returned to the host."""
        return self.find(torch.from_numpy(np.asarray(slots, dtype=np.int64)).to(self.freq.device)).cpu().numpy()

    def find(self, slots: torch.Tensor) -> torch.Tensor:
        """(B,) slots in ``[0, 2**P)`` -> (B,) int64 symbols with ``start <= slot < start + freq``."""
        s = torch.as_tensor(slots, device=self.freq.device).to(torch.int64).reshape(-1, 1)
        if s.shape[0] != self.freq.shape[0]:
            raise ValueError(f"slots must have one entry per row of the table ({self.freq.shape[0]}), "
                             f"got {s.shape[0]}")
        # the first end > slot; a slot beyond the table (never from a valid decoder) clamps to the last
        # symbol, whose interval then fails BatchDecoder.advance's check
        sym = torch.searchsorted(self.ends, s, right=True)[:, 0]
        return sym.clamp_(max=self.n_symbols - 1)
