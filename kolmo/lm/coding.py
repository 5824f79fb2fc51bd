"""Arithmetic coding of token ids on the decoder's schedule, verified before a stream is handed out.

Why a schedule: a decoder learns token ``i`` only after decoding it, so it must compute token
``i+1``'s distribution step by step, with a KV cache. A batched full-sequence pass gives slightly
different floats, and one changed quantised frequency desynchronises the decoder. So the encoder
runs *exactly* the decoder's computation, :func:`run_schedule`, and only the last line differs
(look up the known token's interval vs find the token an interval holds).

The schedule for a group of equally long chunks (run as one batch):

* the sequence is ``[start] + tokens``; its windows are :func:`kolmo.lm.loglik.plan_windows` with
  ``score_from = 1`` (the windows that ``bits()`` scores);
* per window: one prefill pass over the window's known context, then one single-token step per
  coded token; each step's hidden states -> float32 logits -> softmax -> (virtual byte symbols
  appended) -> integer frequency tables on the device (:mod:`kolmo.lm.quantize`, deterministic
  integer arithmetic, ``PRECISION_BITS`` bits).

Only the coded tokens' intervals (encoding) or B slots and B tokens (decoding) cross between the
device and the host; the entropy coder is the interleaved rANS of :mod:`kolmo.lm.rans`, O(1) per
token, one word stream per group.

Chunks are grouped by length (stable order) into batches of at most ``coder_batch``; the chunk
table holds every chunk's length, so the decoder rebuilds the same groups and batch shapes.

Verification (``verify=True``): the encoder's floats must be the decoder's floats, and on a GPU
they may not be (kernels picked by shape, workspace or alignment; reduced-precision paths). So
after encoding a group, the encoder runs the decoder's schedule again, teacher-forced with the
known tokens, and compares every token's interval. This is equivalent to decoding: the decoder
finds token ``t`` from a slot in ``[start_t, start_t + f_t)`` exactly when its table gives ``t``
that same interval (the intervals of a table are disjoint), and its rANS state then updates
exactly as the encoder's did, so by induction over the steps every token decodes. A chunk whose
intervals differ anywhere is not LM-coded: it is stored in the **safe mode** (its bytes, deflated),
marked in the chunk table; it still runs through the model in its group so the other chunks keep
the batch shape they were verified with. The remaining chunks' rANS stream is rebuilt from the
intervals already computed, with no further model pass. Cost: one more pass over the schedule.

A stream that decodes wrongly anyway (made on another machine, or with verify=False) fails a
chunk CRC or the data CRC and raises :class:`~kolmo.errors.CorruptStreamError` naming the chunk;
:func:`diagnose` finds the first step where two runs of the schedule disagree.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..errors import CorruptStreamError
from .loglik import Scorer, plan_windows
from .quantize import Tables, frequencies, with_virtual
from .rans import BatchDecoder, BatchEncoder

PRECISION_BITS = 24  # probability precision of the frequency tables (rANS: 64-bit states, 32-bit words)

LM, SAFE = 0, 1  # chunk modes in the chunk table


def groups(lengths: Sequence[int], coder_batch: int) -> List[List[int]]:
    """Chunk indices grouped by equal length (in order of first appearance), at most coder_batch each."""
    by_len: dict = {}
    for i, n in enumerate(lengths):
        by_len.setdefault(n, []).append(i)
    out = []
    for idx in by_len.values():
        out += [idx[k:k + coder_batch] for k in range(0, len(idx), coder_batch)]
    return out


def step_tables(scorer: Scorer, h: torch.Tensor) -> Tables:
    """The coding tables for hidden states ``h`` (B, H): float32 softmax, virtual symbols, integers."""
    probs = torch.softmax(scorer.head.logits(h), dim=-1)  # (B, V) float32
    return Tables(frequencies(with_virtual(probs, scorer.n_virtual), PRECISION_BITS))


Step = Callable[[int, Tables], np.ndarray]


KV_CACHES = ("static", "dynamic")


def new_cache(scorer: Scorer, kind: str, length: int):
    """A KV cache for one window of ``length`` positions: ``static`` preallocates it (transformers'
    StaticCache: no reallocation or copy per step, fixed shapes for every step of the window);
    ``dynamic`` (None) lets the model grow one by concatenation."""
    if kind == "dynamic":
        return None
    from transformers import StaticCache
    return StaticCache(config=scorer.lm.config, max_cache_len=length)


@torch.inference_mode()
def run_schedule(scorer: Scorer, batch: int, n_tokens: int, step: Step, kv_cache: str = "dynamic") -> np.ndarray:
    """Run the decoder's schedule for ``batch`` chunks of ``n_tokens`` tokens.

    ``step(k, tables)`` receives the tables of token ``k`` of every chunk and returns the
    ``batch`` token ids at position ``k`` (the known ones when encoding, the decoded ones when
    decoding). Returns the (batch, n_tokens) token ids. ``kv_cache``: see :func:`new_cache`
    (encoder and decoder must use the same kind: it is part of the stream's configuration).
    """
    seqs = np.zeros((batch, n_tokens + 1), dtype=np.int64)
    seqs[:, 0] = scorer.start
    for begin, split, end in plan_windows(n_tokens + 1, 1, scorer.window, scorer.stride):
        past = new_cache(scorer, kv_cache, end - begin)
        hidden, cache = scorer.forward(scorer.lm, scorer.tensor(seqs[:, begin:split]), past=past, use_cache=True)
        h = hidden[:, -1]  # (B, H)
        for p in range(split, end):
            seqs[:, p] = step(p - 1, step_tables(scorer, h))
            if p + 1 < end:
                hidden, cache = scorer.forward(scorer.lm, scorer.tensor(seqs[:, p:p + 1]), past=cache, use_cache=True)
                h = hidden[:, -1]
    return seqs[:, 1:]


def intervals(scorer: Scorer, toks: np.ndarray, bar=None, kv_cache: str = "dynamic") -> Tuple[np.ndarray, np.ndarray]:
    """(start, freq) of every known token of a group (B, n) on the decoder's schedule: two (n, B) uint64."""
    batch, n = toks.shape
    starts = np.zeros((n, batch), dtype=np.uint64)
    freqs = np.zeros((n, batch), dtype=np.uint64)
    dev_toks = torch.from_numpy(toks).to(scorer.device)

    def step(k: int, tables: Tables) -> np.ndarray:
        s, f = tables.interval(dev_toks[:, k])
        starts[k], freqs[k] = s.cpu().numpy(), f.cpu().numpy()
        if bar is not None:
            bar.update(batch)
        return toks[:, k]

    if n:
        run_schedule(scorer, batch, n, step, kv_cache)
    return starts, freqs


def rans_words(starts: np.ndarray, freqs: np.ndarray, active: np.ndarray) -> np.ndarray:
    """The interleaved rANS stream of the ``active`` streams (columns) of a group's intervals."""
    if not active.any():
        return np.zeros(0, dtype=np.uint32)
    enc = BatchEncoder(int(active.sum()), PRECISION_BITS)
    for k in range(starts.shape[0]):
        enc.push(starts[k, active], freqs[k, active])
    return enc.finish()


@dataclass(frozen=True)
class GroupCode:
    """One coded group: its chunks' modes (LM or SAFE, in group order) and its rANS words."""

    modes: Tuple[int, ...]
    words: np.ndarray
    mismatches: Tuple[int, ...] = ()  # first step where verification disagreed, per SAFE chunk


def encode_group(scorer: Scorer, toks: np.ndarray, verify: bool, bar=None, kv_cache: str = "dynamic") -> GroupCode:
    """Code one group of equally long chunks (B, n); with ``verify``, check it decodes (module docstring)."""
    starts, freqs = intervals(scorer, toks, bar, kv_cache)
    active = np.ones(toks.shape[0], dtype=bool)
    first_bad: List[int] = []
    if verify and toks.shape[1]:
        starts2, freqs2 = intervals(scorer, toks, bar, kv_cache)
        differ = (starts2 != starts) | (freqs2 != freqs)  # (n, B)
        active = ~differ.any(axis=0)
        first_bad = [int(np.argmax(differ[:, j])) for j in np.flatnonzero(~active)]
    modes = tuple(LM if a else SAFE for a in active)
    return GroupCode(modes, rans_words(starts, freqs, active), tuple(first_bad))


def decode_group(scorer: Scorer, n: int, modes: Sequence[int], words: np.ndarray, known: np.ndarray,
                 bar=None, kv_cache: str = "dynamic") -> np.ndarray:
    """Inverse of :func:`encode_group`: the (B, n) tokens; ``known`` holds the SAFE chunks' tokens."""
    active = np.asarray(modes) == LM
    batch = len(modes)
    if not active.any():
        return known
    dec = BatchDecoder(words, int(active.sum()), PRECISION_BITS)
    rows = torch.from_numpy(np.flatnonzero(active)).to(scorer.device)

    def step(k: int, tables: Tables) -> np.ndarray:
        slots = np.zeros(batch, dtype=np.int64)
        slots[active] = dec.slots().astype(np.int64)
        found = tables.find(torch.from_numpy(slots).to(scorer.device))
        s, f = tables.interval(found)
        s, f = s[rows].cpu().numpy(), f[rows].cpu().numpy()
        dec.advance(s.astype(np.uint64), f.astype(np.uint64))
        out = known[:, k].copy()
        out[active] = found[rows].cpu().numpy()
        if bar is not None:
            bar.update(batch)
        return out

    toks = run_schedule(scorer, batch, n, step, kv_cache) if n else np.zeros((batch, 0), dtype=np.int64)
    dec.check_end()
    return toks


def safe_code(data: bytes) -> bytes:
    """The safe mode's payload for one chunk: its bytes, deflated (always decodes)."""
    return zlib.compress(data, 9)


def safe_decode(payload: bytes) -> bytes:
    try:
        return zlib.decompress(payload)
    except zlib.error as exc:
        raise CorruptStreamError(f"lm stream: a safe-mode chunk does not inflate ({exc}): the stream is corrupted") from None


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


@torch.inference_mode()
def diagnose(scorer: Scorer, chunks: Sequence[np.ndarray], coder_batch: int, kv_cache: str = "dynamic") -> Divergence:
    """Run every group's schedule twice, teacher-forced, and compare the probabilities step by step."""
    max_p, max_f, n_steps = 0.0, 0, 0
    first: Optional[Tuple[int, int]] = None
    for group in groups([len(c) for c in chunks], coder_batch):
        n = len(chunks[group[0]])
        if not n:
            continue
        toks = np.stack([np.asarray(chunks[i], dtype=np.int64) for i in group])
        runs = []
        for _ in range(2):
            probs: List[np.ndarray] = []
            freqs: List[np.ndarray] = []

            def step(k: int, tables: Tables, probs=probs, freqs=freqs) -> np.ndarray:
                freqs.append(tables.freq.cpu().numpy())
                return toks[:, k]

            orig = step_tables

            def recording(scorer_, h, probs=probs):
                probs.append(torch.softmax(scorer_.head.logits(h), dim=-1).double().cpu().numpy())
                return orig(scorer_, h)

            run_schedule_with(scorer, len(group), n, step, recording, kv_cache)
            runs.append((np.stack(probs), np.stack(freqs)))  # (n, B, V), (n, B, A)
        (p1, f1), (p2, f2) = runs
        n_steps += n * len(group)
        max_p = max(max_p, float(np.abs(p1 - p2).max()))
        df = np.abs(f1 - f2).max(axis=2)  # (n, B)
        max_f = max(max_f, int(df.max()))
        if first is None and df.any():
            k, j = np.argwhere(df)[np.argmin(np.argwhere(df)[:, 0])]
            first = (group[int(j)], int(k))
    return Divergence(identical=max_p == 0.0 and max_f == 0, chunk=None if first is None else first[0],
                      step=None if first is None else first[1], max_prob_diff=max_p, max_freq_diff=max_f,
                      steps_compared=n_steps)


def run_schedule_with(scorer: Scorer, batch: int, n_tokens: int, step: Step, tables_fn,
                      kv_cache: str = "dynamic") -> np.ndarray:
    """:func:`run_schedule` with another way of making each step's tables (diagnostics)."""
    global step_tables
    saved = step_tables
    step_tables = tables_fn
    try:
        return run_schedule(scorer, batch, n_tokens, step, kv_cache)
    finally:
        step_tables = saved
