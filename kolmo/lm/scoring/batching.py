"""Planning the language model's work: windows over long sequences, batches under a token
budget, and results copied to the host while the next batch runs (:mod:`kolmo.lm.scoring.loglik` and the
coding schedule of :mod:`kolmo.lm.coding.schedule` use these)."""

from __future__ import annotations

from collections import deque
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch

Window = Tuple[int, int, int]  # (begin, split, end): feed seq[begin:end], score positions split..end-1


def check_window(window: int, stride: int) -> None:
    if not (isinstance(window, int) and window >= 2):
        raise ValueError(f"window must be an int >= 2 tokens, got {window!r}")
    if not (isinstance(stride, int) and 1 <= stride < window):
        raise ValueError(f"stride must be an int in [1, window) = [1, {window}), got {stride!r}")


def plan_windows(length: int, score_from: int, window: int, stride: int) -> List[Window]:
    """Windows that score positions ``score_from .. length-1`` of a ``length``-token sequence.

    The first window ends at ``max(window, score_from + stride)`` (or the sequence's end) and each
    later one ``stride`` further; window ``k`` scores ``[end_{k-1}, end_k)`` and starts
    ``window`` tokens before its end, so every scored token sees at least ``window - stride``
    tokens of context (or all of them, near the start).
    """
    check_window(window, stride)
    if not 1 <= score_from <= length:
        raise ValueError(f"score_from must be in [1, {length}], got {score_from}")
    out: List[Window] = []
    prev = score_from
    end = min(length, max(window, score_from + stride))
    while prev < length:
        out.append((max(0, end - window), prev, end))
        prev, end = end, min(length, end + stride)
    return out


_MAX_PAD = 20  # a batch's padding stays below 1/_MAX_PAD (5%) of the positions it processes


def _batches(items: Sequence, length: Callable, budget: int, fill: Optional[Callable] = None) -> List[list]:
    """Greedy packing of items sorted longest first, into batches with

    * batch size x longest ``length`` <= ``budget`` (or a single item), and
    * padding < 5% of the batch's positions: an item of ``fill`` length ``l`` (default ``length``:
      the part that is padded) joins a batch of ``n`` items whose first (widest) has ``W`` only if
      ``20 (pad + W - l) < (n + 1) W``, where ``pad`` is the batch's padding so far: an exact
      integer test, so every batch, and hence any set of batches, wastes < 5% of what it processes.
    """
    fill = fill or length
    out: List[list] = []
    cur: list = []
    pad = 0
    for it in items:
        if cur:
            width = fill(cur[0])
            if ((len(cur) + 1) * length(cur[0]) > budget
                    or _MAX_PAD * (pad + width - fill(it)) >= (len(cur) + 1) * width):
                out.append(cur)
                cur, pad = [], 0
            else:
                pad += width - fill(it)
        cur.append(it)
    if cur:
        out.append(cur)
    return out


def padding_fraction(batches: Sequence[list], fill: Callable) -> float:
    """Padded positions / positions processed (batch size x widest) over planned ``batches``."""
    total = sum(len(b) * max(fill(it) for it in b) for b in batches)
    real = sum(fill(it) for b in batches for it in b)
    return 0.0 if total == 0 else 1.0 - real / total


def _empty_cache(device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _span(it) -> int:
    return it[3] - it[1]


def _to_host(t: torch.Tensor) -> Callable[[], np.ndarray]:
    """Start copying ``t`` to the host; the returned function waits for the copy and gives numpy.

    On CUDA the copy goes to pinned memory, queued right after the tensor's kernels, and an event
    marks its end: waiting on it does not wait for work queued later (the next batch)."""
    if t.device.type != "cuda":
        return lambda: t.numpy()
    host = t.to("cpu", non_blocking=True)
    done = torch.cuda.Event()
    done.record()

    def get() -> np.ndarray:
        done.synchronize()
        return host.numpy()
    return get


class InFlight:
    """Keeps one batch in flight: a batch's results are written to the host after the next batch
    has been queued, so the device never waits for the host's bookkeeping."""

    def __init__(self, device):
        self.depth = 1 if torch.device(device).type == "cuda" else 0
        self.queue: deque = deque()

    def put(self, write: Callable[[], None]) -> None:
        self.queue.append(write)
        while len(self.queue) > self.depth:
            self.queue.popleft()()

    def flush(self) -> None:
        while self.queue:
            self.queue.popleft()()


