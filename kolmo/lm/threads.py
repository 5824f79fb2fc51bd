"""torch's CPU thread count, which real LM streams record so that they decode anywhere.

CPU kernels split their work, and with it the order of their float sums, by thread: on this
project's 2-core machine an "lm" or "lm-online" stream written with 2 threads failed to decode
with 1. Both compressors write the encoder's count into their payload (one byte, 0 off the CPU) and
decode under :func:`using_threads` of it.
"""

from __future__ import annotations

import contextlib


def cpu_threads(device) -> int:
    """torch's intra-op thread count (1..255) if ``device`` is the CPU, else 0 (nothing to record)."""
    import torch
    return min(torch.get_num_threads(), 255) if getattr(device, "type", str(device)) == "cpu" else 0


@contextlib.contextmanager
def using_threads(n: int, device):
    """Run with torch's CPU thread count set to ``n`` (a stream's record; 0: leave it as it is) when
    the model runs on ``device`` = the CPU, restoring the caller's count afterwards."""
    import torch
    before = torch.get_num_threads()
    if n and n != before and cpu_threads(device):
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
