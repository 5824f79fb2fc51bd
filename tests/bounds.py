"""Test-only helpers: the code lengths and regret bounds that coders and mixers are checked against."""

import math

import numpy as np
import torch

from kolmo.lm.coding.rans import DEFAULT_PRECISION, check_precision
from kolmo.lm.mixing.mixer import SHARE


def code_length_bits(freqs, precision: int = DEFAULT_PRECISION) -> float:
    """Ideal code length in bits of symbols coded with these frequencies: ``sum(P - log2 f)``.

    ``freqs`` holds each coded symbol's frequency (numpy, torch or a sequence); compare with
    ``32 * len(words)`` of a :class:`kolmo.lm.coding.rans.BatchEncoder` stream (see its bound).
    """
    p_bits = check_precision(precision)
    if isinstance(freqs, torch.Tensor):
        freqs = freqs.detach().cpu().numpy()
    f = np.asarray(freqs, dtype=np.float64).ravel()
    if f.size and (f.min() < 1 or f.max() > 2.0 ** p_bits):
        raise ValueError(f"frequencies must be in [1, 2**{p_bits}], got min {f.min()}, max {f.max()}")
    return float(np.sum(p_bits - np.log2(f)))


def mixture_bound_bits(best_bits: float, experts: int, tokens: int, share: float = SHARE) -> float:
    """The fixed-share bound with no switch (eta = 1): best expert + log2 K + T log2(1 / (1 - share))."""
    return best_bits + math.log2(experts) + tokens * -math.log2(1.0 - share)
