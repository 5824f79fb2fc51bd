"""Arithmetic (range) coding of token ids on the decoder's schedule.

Why a schedule: a decoder learns token ``i`` only after decoding it, so it must compute token
``i+1``'s distribution step by step, with a KV cache. A batched full-sequence forward pass gives
slightly different floats, and one flipped quantised frequency desynchronises the decoder. So the
encoder here runs *exactly* the decoder's computation, :func:`run_schedule`, and only the last
line differs (encode the known token vs decode an unknown one).

The schedule for a group of equally long token chunks (run in one batch):

* the sequence is ``[start] + tokens``; its windows are :func:`kolmo.lm.loglik.plan_windows` with
  ``score_from = 1`` (the same windows that ``bits()`` scores);
* per window: one prefill forward pass over the window's known context, then one single-token step
  per coded token, each step's hidden state -> float32 logits -> softmax -> float64.

Chunks are grouped by length (stable order) into batches of at most ``coder_batch``; the header
holds every chunk's length, so the decoder rebuilds the same groups and the same batch shapes.
The chunks of a group share one range coder stream (their tokens interleaved step by step).

Quantisation and coding: constriction's range coder (32-bit words) with its leaky categorical
model, 24 bits of probability precision; every token of the vocabulary keeps a nonzero
frequency, so any token (including one the model finds impossible) can be coded.
"""

from __future__ import annotations

from typing import Callable, List, Sequence

import numpy as np
import torch

from .loglik import Scorer, plan_windows

PRECISION_BITS = 24  # constriction's DefaultRangeEncoder: 32-bit words, 24-bit probabilities


def _family():
    import constriction
    return constriction.stream.model.Categorical(perfect=False)


def groups(lengths: Sequence[int], coder_batch: int) -> List[List[int]]:
    """Chunk indices grouped by equal length (in order of first appearance), at most coder_batch each."""
    by_len: dict = {}
    for i, n in enumerate(lengths):
        by_len.setdefault(n, []).append(i)
    out = []
    for idx in by_len.values():
        out += [idx[k:k + coder_batch] for k in range(0, len(idx), coder_batch)]
    return out


@torch.inference_mode()
def run_schedule(scorer: Scorer, batch: int, n_tokens: int, step: Callable[[int, np.ndarray], np.ndarray]) -> np.ndarray:
    """Run the decoder's schedule for ``batch`` chunks of ``n_tokens`` tokens.

    ``step(k, probs)`` receives token ``k``'s distributions (batch, V) and returns the ``batch``
    token ids at position ``k`` (the encoder returns the known ones after coding them; the
    decoder decodes them). Returns the (batch, n_tokens) token ids.
    """
    seqs = np.zeros((batch, n_tokens + 1), dtype=np.int64)
    seqs[:, 0] = scorer.start
    for begin, split, end in plan_windows(n_tokens + 1, 1, scorer.window, scorer.stride):
        hidden, cache = scorer.forward(scorer.lm, scorer.tensor(seqs[:, begin:split]), use_cache=True)
        h = hidden[:, -1]  # (B, H)
        for p in range(split, end):
            seqs[:, p] = step(p - 1, scorer.probs(h))
            if p + 1 < end:
                hidden, cache = scorer.forward(scorer.lm, scorer.tensor(seqs[:, p:p + 1]), past=cache, use_cache=True)
                h = hidden[:, -1]
    return seqs[:, 1:]


def encode_chunks(scorer: Scorer, chunks: Sequence[np.ndarray], coder_batch: int, progress=None) -> List[np.ndarray]:
    """Range-code every chunk of token ids; returns one uint32 word array per group (:func:`groups`).

    The chunks of a group run in one batch and share one range coder: at each step the tokens of
    chunk 0, 1, ... of the group are coded in that order, so a group pays one coder flush and one
    word count, not one per chunk.
    """
    import constriction
    family = _family()
    out: List[np.ndarray] = []
    bar = scorer._bar(sum(len(c) for c in chunks), "kolmo lm: encoding") if progress is not False else None
    for group in groups([len(c) for c in chunks], coder_batch):
        n = len(chunks[group[0]])
        toks = np.stack([np.asarray(chunks[i], dtype=np.int64) for i in group])  # (B, n)
        encoder = constriction.stream.queue.RangeEncoder()

        def step(k: int, probs: np.ndarray) -> np.ndarray:
            encoder.encode(toks[:, k].astype(np.int32), family, probs)  # (B,) symbols, (B, A) models
            if bar is not None:
                bar.update(len(group))
            return toks[:, k]

        if n:
            run_schedule(scorer, len(group), n, step)
        out.append(np.asarray(encoder.get_compressed(), dtype=np.uint32))
    if bar is not None:
        bar.close()
    return out


def decode_chunks(scorer: Scorer, lengths: Sequence[int], words: Sequence[np.ndarray], coder_batch: int,
                  progress=None) -> List[np.ndarray]:
    """Inverse of :func:`encode_chunks`, given each chunk's token count and each group's words."""
    import constriction
    family = _family()
    out: List[np.ndarray] = [np.zeros(0, dtype=np.int64)] * len(lengths)
    bar = scorer._bar(int(sum(lengths)), "kolmo lm: decoding") if progress is not False else None
    for group, group_words in zip(groups(lengths, coder_batch), words):
        n = lengths[group[0]]
        if n == 0:
            continue
        decoder = constriction.stream.queue.RangeDecoder(np.asarray(group_words, dtype=np.uint32))

        def step(k: int, probs: np.ndarray) -> np.ndarray:
            got = np.asarray(decoder.decode(family, probs), dtype=np.int64)  # (B,)
            if bar is not None:
                bar.update(len(group))
            return got

        toks = run_schedule(scorer, len(group), n, step)
        for j, i in enumerate(group):
            out[i] = toks[j]
    if bar is not None:
        bar.close()
    return out
