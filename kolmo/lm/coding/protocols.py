"""The contracts of the coding layer: what a step model and a learner must provide.

Any predictor that satisfies :class:`StepModel` codes real streams through
:class:`kolmo.lm.coding.coder.Coder` (``lm``'s scorer, a learner, the scratch model, the
mixture's step); any model that satisfies :class:`Learner` learns block by block in
:class:`kolmo.lm.coding.prequential.Prequential`. Both are structural (``typing.Protocol``):
nothing subclasses them, and ``isinstance`` checks the methods' presence (tests do).
"""

from __future__ import annotations

from typing import Any, Dict, List, Protocol, Tuple, runtime_checkable

import numpy as np


@runtime_checkable
class StepModel(Protocol):
    """Next-token distributions on the decoder's schedule (:mod:`kolmo.lm.coding.schedule`).

    The schedule reads a window's first tokens at once, then one token per step::

        cache = model.new_cache(kind, window_length)
        state, cache = model.advance(model.inputs(ids[:, begin:split]), cache, True)
        probs = model.step_probs(state[:, -1])            # (B, alphabet), float
        state, cache = model.advance(model.inputs(ids[:, p:p + 1]), cache, True)

    ``state`` is whatever ``step_probs`` reads: hidden states for a transformer, the mixed
    distribution itself for the mixture's step. Equal inputs must give equal floats: the decoder
    runs the same calls in the same order as the encoder.
    """

    device: Any  #: a torch.device; the stream's float record is taken for it
    start: int  #: the token every sequence starts with (not coded)

    def encode(self, data: bytes) -> np.ndarray: ...

    def decode(self, ids) -> bytes: ...

    def inputs(self, ids: np.ndarray) -> Any: ...

    def advance(self, x: Any, past: Any = None, use_cache: bool = False) -> Tuple[Any, Any]: ...

    def step_probs(self, state: Any) -> Any: ...

    def new_cache(self, kind: str, length: int) -> Any: ...


@runtime_checkable
class Learner(StepModel, Protocol):
    """A step model that learns (:mod:`kolmo.lm.coding.prequential`): after each block the engine
    takes optimizer steps on ``-target_logp`` of the block's tokens, over ``named_trainable()``,
    starting every run from ``initial``.
    """

    alphabet: int  #: symbols of the coding alphabet (model tokens plus virtual byte tokens)
    max_positions: int  #: the longest window the model reads
    initial: Dict[str, Any]  #: trainable name -> its value before learning (a reset restores it)

    def named_trainable(self) -> List[Tuple[str, Any]]: ...

    def target_logp(self, state: Any, targets: np.ndarray) -> Any: ...
