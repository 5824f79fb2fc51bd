"""The decoder's step schedule: every probability a language-model stream is coded with.

Why a schedule: a decoder learns token ``p`` only after decoding it, so it must compute token
``p+1``'s distribution step by step, with a KV cache. A batched full-sequence pass gives slightly
different floats, and one changed quantised frequency desynchronises the decoder. So the encoder
runs *exactly* the decoder's computation, :func:`run_windows`, and only the step's last line
differs (look up the known token's interval, or find the token a slot falls in).

A schedule codes positions ``[split, end)`` of B equally long sequences (rows of ``seqs``) in
windows ``(begin, split, end)`` (:func:`kolmo.lm.scoring.loglik.plan_windows`): per window one prefill
pass over the known context ``[begin, split)``, then one single-token step per coded position.
Each step's hidden states -> the model's float32 softmax over its coding alphabet (virtual byte
symbols appended) -> integer frequency tables on the device (:mod:`kolmo.lm.coding.tables`,
deterministic integer arithmetic, ``PRECISION_BITS`` bits) -> only the coded token's interval
(encoding) or B slots and B tokens (decoding) cross to the host, where the interleaved rANS coder
of :mod:`kolmo.lm.coding.rans` codes them with O(1) work per token.

A *step model* is anything with ``start`` (the id at position 0), ``device``, ``tensor(ids)``
((B, T) ids as the model reads them), ``hidden(ids, past, use_cache)`` -> (hidden states (B, T, H),
or with a cache only the last position's (B, 1, H), and the cache), ``step_probs(h)`` -> (B, A)
probabilities on the device, and ``new_cache(kind, length)``: :class:`kolmo.lm.scoring.loglik.Scorer` (a
frozen model) and the learners of :mod:`kolmo.lm.coding.prequential`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..scoring.batching import Window
from .rans import DEFAULT_PRECISION, BatchDecoder, BatchEncoder
from .tables import HostTables, Tables, frequencies, frequencies_host

#: probability precision of the frequency tables: the coder's (rANS: 64-bit states, 32-bit words)
PRECISION_BITS = DEFAULT_PRECISION
Step = Callable[[int, Tables], np.ndarray]


HOST_TABLES_MAX = 1 << 14  #: on a CPU, tables of at most this many entries (B x A) are built in numpy


def step_tables(model, h: torch.Tensor):
    """The coding tables for hidden states ``h`` (B, H): :class:`Tables` on the device, or for a
    small alphabet on a CPU :class:`HostTables` (the same integers, less overhead per step)."""
    p = model.step_probs(h)
    if p.device.type == "cpu" and p.numel() <= HOST_TABLES_MAX:
        return HostTables(frequencies_host(p.numpy(), PRECISION_BITS))
    return Tables(frequencies(p, PRECISION_BITS))


@torch.inference_mode()
def run_windows(model, seqs: np.ndarray, windows: Sequence[Window], step: Step, kv_cache: str = "dynamic",
                tables: Callable = step_tables, again: bool = False) -> None:
    """Run the schedule over ``seqs`` (B, L): ``step(p, tables)`` receives position ``p``'s tables
    and returns the B ids at ``p`` (the known ones when encoding, the decoded ones when decoding),
    which are written into ``seqs``. ``kv_cache``: the model's ``new_cache`` kind, per window.
    A model with state of its own beyond the KV cache (the mixture of :mod:`kolmo.lm.mixing.mixture`)
    has ``begin_run(again)``, called first: every run of a schedule starts from the same state.
    ``again``: this run repeats the previous one on the same tokens (the encoder's verification),
    so such a model may replay what it computes exactly, without floats that could differ.
    A model with a memory of the tokens (``lm``'s match model, :mod:`kolmo.lm.mixing.matched`) has
    ``begin_window(seqs, split)``, called before each window's prefill: ``seqs[:, :split]`` are known."""
    begin_run = getattr(model, "begin_run", None)
    begin_window = getattr(model, "begin_window", None)
    if begin_run is not None:
        begin_run(again)
    for begin, split, end in windows:
        if begin_window is not None:
            begin_window(seqs, split)
        past = model.new_cache(kv_cache, end - begin)
        hidden, cache = model.advance(model.inputs(seqs[:, begin:split]), past, True)
        h = hidden[:, -1]
        for p in range(split, end):
            seqs[:, p] = step(p, tables(model, h))
            if p + 1 < end:
                hidden, cache = model.advance(model.inputs(seqs[:, p:p + 1]), cache, True)
                h = hidden[:, -1]


def coded_positions(windows: Sequence[Window]) -> int:
    return sum(end - split for _, split, end in windows)


def intervals(model, seqs: np.ndarray, windows: Sequence[Window], kv_cache: str = "dynamic",
              bar=None, again: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """(start, freq) of every known token the windows code, on the decoder's schedule: two
    (positions, B) uint64 arrays, positions in coding order. ``again``: as :func:`run_windows`."""
    batch = seqs.shape[0]
    n = coded_positions(windows)
    starts = np.zeros((n, batch), dtype=np.uint64)
    freqs = np.zeros((n, batch), dtype=np.uint64)
    row = [0]

    def step(p: int, t: Tables) -> np.ndarray:
        starts[row[0]], freqs[row[0]] = t.interval_host(seqs[:, p])
        row[0] += 1
        if bar is not None:
            bar.update(batch)
        return seqs[:, p]

    run_windows(model, seqs, windows, step, kv_cache, again=again)
    return starts, freqs


def decode(model, seqs: np.ndarray, windows: Sequence[Window], decoder: BatchDecoder, active: np.ndarray,
           kv_cache: str = "dynamic", bar=None) -> None:
    """Decode the ``active`` rows of ``seqs`` in place (the others hold known tokens)."""
    batch = seqs.shape[0]

    def step(p: int, t: Tables) -> np.ndarray:
        slots = np.zeros(batch, dtype=np.int64)
        slots[active] = decoder.slots()
        found = t.find_host(slots)
        s, f = t.interval_host(found)
        decoder.advance(s[active], f[active])
        out = seqs[:, p].copy()
        out[active] = found[active]
        if bar is not None:
            bar.update(batch)
        return out

    run_windows(model, seqs, windows, step, kv_cache)


def rans_words(steps: Sequence[Tuple[np.ndarray, np.ndarray]], n_streams: int) -> np.ndarray:
    """The interleaved rANS stream of ``n_streams`` streams from (starts, freqs) arrays of shape
    (positions, n_streams), in coding order."""
    if not n_streams:
        return np.zeros(0, dtype=np.uint32)
    enc = BatchEncoder(n_streams, PRECISION_BITS)
    for starts, freqs in steps:
        for k in range(starts.shape[0]):
            enc.push(starts[k], freqs[k])
    return enc.finish()


# -- diagnostics --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Divergence:
    """Where two runs of the decoder's schedule disagree (see :func:`diagnose`)."""

    identical: bool
    chunk: Optional[int]  # index of the first chunk (in input order) whose tables differ, or None
    step: Optional[int]  # the token position in that chunk
    max_prob_diff: float  # the largest |p1 - p2| over every step and symbol compared
    max_freq_diff: int  # the largest difference of an integer frequency
    steps_compared: int

    def __str__(self) -> str:
        if self.identical:
            return f"identical: {self.steps_compared} steps, every probability bit for bit"
        where = f"chunk {self.chunk}, token {self.step}" if self.chunk is not None else "no table differs"
        return (f"diverged: first at {where}; largest probability difference {self.max_prob_diff:.3g}, "
                f"largest frequency difference {self.max_freq_diff} (of 2**{PRECISION_BITS})")


def compare_runs(model, seqs: np.ndarray, windows: Sequence[Window], kv_cache: str = "dynamic"):
    """Run the schedule twice, teacher-forced: (largest probability difference, largest frequency
    difference, (positions, B) bool array of steps whose frequencies differ)."""
    runs = []
    for _ in range(2):
        probs: List[np.ndarray] = []
        freqs: List[np.ndarray] = []

        def recording(model_, h, probs=probs):
            probs.append(model_.step_probs(h).double().cpu().numpy())
            return step_tables(model_, h)

        def step(p: int, t: Tables, freqs=freqs) -> np.ndarray:
            freqs.append(np.asarray(t.freq.cpu() if isinstance(t.freq, torch.Tensor) else t.freq))
            return seqs[:, p]

        run_windows(model, seqs, windows, step, kv_cache, tables=recording)
        runs.append((np.stack(probs), np.stack(freqs)))  # (n, B, A) each
    (p1, f1), (p2, f2) = runs
    df = np.abs(f1 - f2).max(axis=2)
    return float(np.abs(p1 - p2).max()), int(df.max()), df > 0
