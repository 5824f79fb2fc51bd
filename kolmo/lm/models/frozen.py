"""The one frozen pretrained model: its forward pass, KV caches, logits and coding probabilities.

:class:`FrozenModel` is a loaded causal LM (:func:`kolmo.lm.models.loading.load_model`) read as
the step model of the coder (:class:`kolmo.lm.coding.protocols.StepModel`): ``lm``'s scorer
(:class:`kolmo.lm.scoring.loglik.Scorer`) extends it with batched scoring, the learners of
``lm-online`` (:mod:`kolmo.lm.models.learners`) with training, and the mixture's ``"frozen"``
part is one itself. The loaded model is shared and never changed.

Logits: ``z = W h + b`` in float32 (``h`` as float32), then, for models with a final logit
softcap ``c`` (Gemma 2), ``c tanh(z / c)`` (:func:`softcap`). Probabilities over the coding
alphabet: ``softmax(z)`` with the virtual byte tokens appended (:func:`kolmo.lm.models.tokens.with_virtual`).
"""

from __future__ import annotations

import inspect
from typing import Optional

import numpy as np
import torch

from .tokens import coding_logp, with_virtual


def base_forward(lm, ids: torch.Tensor, *, mask: Optional[torch.Tensor] = None, past=None, use_cache: bool = False):
    """The transformer body without its head: returns (last hidden states (B, T, H), KV cache or None)."""
    body = lm.base_model
    key = _cache_arg(type(body))
    out = body(input_ids=ids, attention_mask=mask, use_cache=use_cache, **{key: past})
    cache = getattr(out, "cache", None) if key == "cache" else getattr(out, "past_key_values", None)
    return out.last_hidden_state, cache


_CACHE_ARG: dict = {}


def _cache_arg(cls) -> str:
    """transformers 5 names the KV-cache argument ``cache``; older releases ``past_key_values``."""
    if cls not in _CACHE_ARG:
        params = inspect.signature(cls.forward).parameters
        _CACHE_ARG[cls] = "cache" if "cache" in params else "past_key_values"
    return _CACHE_ARG[cls]


def softcap(z: torch.Tensor, cap: Optional[float]) -> torch.Tensor:
    """``cap * tanh(z / cap)`` where the model has a final logit softcap, else ``z`` itself."""
    return torch.tanh(z / cap) * cap if cap else z


def growing_cache(kind: str):
    """The KV cache of a model that learns: grown by concatenation (None); only "dynamic"."""
    if kind != "dynamic":
        raise ValueError(f"lm-online's learners code with a dynamic KV cache, got kv_cache={kind!r}")
    return None


class FrozenModel:
    """A loaded model as a step model: token ids in, hidden states, logits and probabilities out.

    ``autocast`` (``torch.bfloat16`` or None): run the body's products under ``torch.autocast``
    in that dtype (float32 weights and head); hidden states come back as float32.
    """

    def __init__(self, loaded, autocast: Optional[torch.dtype] = None, module=None):
        self.loaded, self.tokenizer = loaded, loaded.tokenizer
        self.module = loaded.model if module is None else module
        self.start, self.alphabet = loaded.start_id, loaded.tokenizer.alphabet
        self.vocab, self.n_virtual = loaded.vocab_size, loaded.tokenizer.n_virtual
        self.device, self.max_positions = loaded.device, loaded.max_positions
        self.cap = getattr(self.module.config, "final_logit_softcapping", None)
        self.autocast = autocast

    def encode(self, data: bytes) -> np.ndarray:
        return self.tokenizer.encode(data)

    def decode(self, ids) -> bytes:
        return self.tokenizer.decode(ids)

    def inputs(self, ids: np.ndarray) -> torch.Tensor:
        """Token ids as the model reads them (virtual byte tokens replaced), on the device."""
        return torch.from_numpy(np.ascontiguousarray(self.tokenizer.model_input(ids))).to(self.device)

    def advance(self, ids: torch.Tensor, past=None, use_cache: bool = False):
        """(last hidden states (B, T, H) float32, KV cache or None) of token ids (B, T)."""
        if self.autocast is None:
            return self._body(ids, past, use_cache)
        with torch.autocast(self.device.type, dtype=self.autocast):
            h, cache = self._body(ids, past, use_cache)
        return h.float(), cache

    def _body(self, ids: torch.Tensor, past, use_cache: bool):
        return base_forward(self.module, ids, past=past, use_cache=use_cache)

    def linear_logits(self, h: torch.Tensor) -> torch.Tensor:
        """``W h + b`` in float32 (n, V), before any softcap."""
        head = self.module.get_output_embeddings()
        bias = getattr(head, "bias", None)
        return torch.nn.functional.linear(h.float(), head.weight.float(), None if bias is None else bias.float())

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """float32 logits (n, V) of hidden states (n, H) (module docstring)."""
        return softcap(self.linear_logits(h), self.cap)

    def target_logp(self, h: torch.Tensor, targets: np.ndarray) -> torch.Tensor:
        """ln p(target) over the coding alphabet for each row of ``h``: float32 (n,), differentiable."""
        virtual = targets >= self.vocab
        t = torch.from_numpy(np.where(virtual, 0, targets)).to(self.device)
        lp = torch.log_softmax(self.logits(h), dim=-1).gather(1, t[:, None])[:, 0]
        return coding_logp(lp, torch.from_numpy(virtual).to(self.device), self.n_virtual)

    def step_probs(self, h: torch.Tensor) -> torch.Tensor:
        """The coder's (B, A) distributions over the coding alphabet (float64), on the device."""
        return with_virtual(torch.softmax(self.logits(h), dim=-1), self.n_virtual)

    def new_cache(self, kind: str, length: int):
        """A KV cache for one window of ``length`` positions: ``static`` preallocates it (transformers'
        StaticCache: no reallocation or copy per step, fixed shapes for every step of the window);
        ``dynamic`` (None) lets the model grow one by concatenation."""
        if kind == "dynamic":
            return None
        if kind != "static":
            raise ValueError(f"kv_cache must be 'static' or 'dynamic', got {kind!r}")
        from transformers import StaticCache
        return StaticCache(config=self.module.config, max_cache_len=length)
