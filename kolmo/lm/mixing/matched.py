"""``lm``'s mixture: the frozen model beside the match model, one mixture per chunk.

``lm`` with ``match=True`` codes every token with a linear mixture of two experts:

``"frozen"``  the pretrained model's next-token distribution, as ``lm`` alone computes it (the
              context it sees is its window: C(Y|X) reads at most the end of X);
``"match"``   :class:`kolmo.lm.mixing.match.MatchModel` over every token of the chunk before this
              one: a pointer into the past that keeps its alignment through changed tokens, so an
              aligned copy of X in Y is found however far back X lies, beyond the window too.

The weights are :class:`kolmo.lm.mixing.mixer.MixerState`'s (fixed-share Bayes, ``eta = 1``), one
weight set per bucket of the match model's confidence (``gate="match"``), each starting at
``(1 - PRIOR, PRIOR)`` = (15/16, 1/16) and learned as the chunk is coded. Code length of a chunk's
tokens x_1 .. x_n::

    C = sum_t  -log2 ( w_t,frozen p_frozen(x_t | window) + w_t,match p_match(x_t | x_<t) )   (bits)

with every weight and distribution a function of x_<t only: a real (prequential) code. Bayes'
rule costs at most log2(1 / w_k) bits per weight set over expert k, plus ``log2(1 / (1 - share))``
bits a token: text where the match model never helps pays under 0.1 bit per weight set (1,500 bytes
of alice29, KJV Genesis, difflib.py with SmolLM2-135M: +0.03 to +0.05%); a copy pays 4 bits per set
to learn that the match model knows it.

Ideal code lengths (:meth:`MatchMix.bits`) mix the frozen model's per-token bits from the batched
core with the match model's, vectorised over the chunk. Real coding runs :class:`MatchedStep`, a
step model of :mod:`kolmo.lm.coding.schedule` for B chunks in lock-step: per step the frozen model's
B distributions and the B match models' (built for all rows at once from their token counts), mixed
in float64 on the frozen model's device with elementwise products and one sum, so encoder and
decoder compute the same floats; every run of a schedule restarts the rows' memories and weights
(``begin_run``), and ``begin_window`` gives them the tokens before a window's first coded position
(a shared prefix the chunks read first included).

Cost: the match model's decisions and the mixer's weights run on the host in Python, about 10 us
a token for ideal code lengths and per row and step for real coding (the (B, A) work runs on the
device). Beside a CPU's model (some 3 ms a token) that is under 1%; a GPU scores tokens faster than
the host can match them, so there the mixture bounds the throughput of ``bits`` and ``compress``
(``match=False`` for the model alone at full speed).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from .match import MatchModel
from .mixer import SHARE, MixerState

#: the match model's context lengths over a tokenizer's tokens (lm-online's pretrained default)
MATCH_LENGTHS = (16, 8, 4, 2)
#: the match model's starting weight in every weight set: text where it never helps pays at most
#: log2(1 / (1 - PRIOR)) = 0.09 bits per weight set, a copy log2(1 / PRIOR) = 4 bits per set once
PRIOR = 1.0 / 16


class MatchMix:
    """The settings of ``lm``'s mixture over an alphabet of ``alphabet`` tokens (module docstring)."""

    experts = ("frozen", "match")

    def __init__(self, alphabet: int, lengths: Sequence[int] = MATCH_LENGTHS, share: float = SHARE):
        self.match = MatchModel(alphabet, lengths)
        self.share = float(share)
        MixerState(2, share=self.share)  # its own checks

    def new_mixer(self) -> MixerState:
        return MixerState(len(self.experts), sets=self.match.n_buckets, share=self.share, eta=1.0,
                          prior=(1.0 - PRIOR, PRIOR))

    @property
    def config(self) -> Dict[str, Any]:
        """What the mixture's code lengths depend on (a part of ``lm``'s stream configuration)."""
        return {"match_model": MatchModel.version, "match_lengths": list(self.match.lengths), "gate": "match",
                "share": self.share, "prior": [1.0 - PRIOR, PRIOR],
                "mixer": "bayes, fixed share"}

    def bits(self, frozen_bits: np.ndarray, ids: np.ndarray, start: int = 0) -> np.ndarray:
        """Ideal code lengths (bits, float64) of ``ids[start:]``: ``frozen_bits`` holds the frozen
        model's -log2 p of each of those tokens; the match model reads all of ``ids`` (the tokens
        before ``start`` are context: the match model learns from them, the weights start at them)."""
        frozen_bits = np.asarray(frozen_bits, dtype=np.float64)
        ids = np.asarray(ids, dtype=np.int64)
        if frozen_bits.shape != (len(ids) - start,):
            raise ValueError(f"frozen_bits must hold the bits of ids[{start}:] ({len(ids) - start} tokens), "
                             f"got shape {frozen_bits.shape}")
        if not len(frozen_bits):
            return frozen_bits
        match_bits, gates = self.match.bits_and_buckets(ids, start)
        return self.new_mixer().run(np.stack([frozen_bits, match_bits], axis=1), gates)


class MatchedStep:
    """The step model of ``lm``'s mixture for B chunks in lock-step (module docstring).

    ``frozen``: the frozen model's step model (:class:`kolmo.lm.scoring.loglik.Scorer`); it runs
    unchanged, and this model returns the mixed (B, 1, A) float64 distributions as its states, on
    the frozen model's device. Each row's match model decides on the host (its pointer, its counts'
    probabilities: :meth:`kolmo.lm.mixing.match.MatchState.parts`); its full distribution is built
    for all rows at once on the device from the rows' token counts ``(B, A)``, and mixed there."""

    def __init__(self, frozen, mix: MatchMix):
        self.frozen, self.mix = frozen, mix
        self.start, self.device, self.alphabet = frozen.start, frozen.device, frozen.alphabet
        self.encode, self.decode = frozen.encode, frozen.decode
        self.rows: Optional[List[tuple]] = None

    def inputs(self, ids: np.ndarray) -> np.ndarray:
        return np.array(ids, dtype=np.int64)

    def new_cache(self, kind: str, length: int):
        return self.frozen.new_cache(kind, length)

    def begin_run(self, again: bool = False) -> None:
        """Every run of a schedule starts with empty memories and uniform weights (each chunk is
        coded on its own); the rows are made at the first window, when B is known."""
        self.rows, self.pending, self.seen = None, None, 1  # position 0 is the start id, never coded

    def begin_window(self, seqs: np.ndarray, split: int) -> None:
        """The tokens of ``seqs`` (B, L) before ``split`` are known: the memories read those not read
        yet (the last one coded, or a prefix every chunk reads first)."""
        if self.rows is None:
            b = seqs.shape[0]
            self.rows = [(self.mix.match.state(), self.mix.new_mixer()) for _ in range(b)]
            self.counts = torch.zeros(b, self.alphabet, dtype=torch.float64, device=self.device)  # c(x) per row
            self.index = torch.arange(b, device=self.device)
        for p in range(self.seen, split):
            self._absorb(seqs[:, p])
        self.seen = max(self.seen, split)

    def advance(self, ids: np.ndarray, past=None, use_cache: bool = True):
        """The mixed next-token distributions after ``ids`` (B, T) as (B, 1, A) float64 on the
        device, and the frozen model's cache. The token a pending distribution predicted (a step's
        one token) is learned first."""
        if self.rows is None:
            raise RuntimeError("MatchedStep runs in a schedule: begin_run(), then begin_window() before each window")
        if self.pending is not None:
            self._absorb(ids[:, -1])
            self.seen += 1
        h, cache = self.frozen.advance(self.frozen.inputs(ids), past, True)
        lm = self.frozen.step_probs(h.select(1, -1)).to(torch.float64)
        match = self._match_probs()
        gates = [state.bucket() for state, _ in self.rows]
        w = torch.tensor([mixer.mix(g) for (_, mixer), g in zip(self.rows, gates)], dtype=torch.float64,
                         device=self.device)
        # sum_k w_k p_k: each product rounded once, then one sum (kolmo.lm.kernels.mix_rows' floats)
        mixed = lm * w[:, :1] + match * w[:, 1:]
        self.pending = (gates, lm, match)
        return mixed.unsqueeze(1), cache

    def _match_probs(self) -> torch.Tensor:
        """Every row's match distribution (B, A) float64: ``k f(x)``, then p(y_A) and p(y_B) set
        (:meth:`kolmo.lm.mixing.match.MatchState.parts`); uniform where a row has no prediction."""
        parts = [state.parts() for state, _ in self.rows]
        k = torch.tensor([q[4] if q else 0.0 for q in parts], dtype=torch.float64, device=self.device)
        esc = torch.tensor([q[5] if q else 0.0 for q in parts], dtype=torch.float64, device=self.device)
        out = torch.where(self.counts > 0.0, self.counts, esc[:, None]) * k[:, None]
        none = [b for b, q in enumerate(parts) if q is None]
        if none:
            out[none] = 1.0 / self.alphabet
        predicted_a = [(b, q[0], q[1]) for b, q in enumerate(parts) if q]
        predicted_b = [(b, q[2], q[3]) for b, q in enumerate(parts) if q and q[2] != q[0]]
        for chosen in (predicted_a, predicted_b):
            if chosen:
                rows, cols, vals = zip(*chosen)
                out[torch.tensor(rows, device=self.device), torch.tensor(cols, device=self.device)] = torch.tensor(
                    vals, dtype=torch.float64, device=self.device)
        return out

    def step_probs(self, h: torch.Tensor) -> torch.Tensor:
        return h  # advance() returns the mixed distributions themselves

    def _absorb(self, tokens: np.ndarray) -> None:
        """Each row learns its token: the weights from the pending distributions (if any), the memory."""
        x = torch.from_numpy(np.asarray(tokens, dtype=np.int64)).to(self.device)
        if self.pending is not None:
            gates, lm, match = self.pending
            seen = torch.stack([lm[self.index, x], match[self.index, x]], dim=1).cpu().tolist()
            for (_, mixer), g, probs in zip(self.rows, gates, seen):
                mixer.update(g, probs)
        for (state, _), t in zip(self.rows, tokens.tolist()):
            state.absorb(t)
        self.counts[self.index, x] += 1.0
        self.pending = None
