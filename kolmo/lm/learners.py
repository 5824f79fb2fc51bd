"""Pretrained Hugging Face models as learners of lm-online, and what of them learns.

:class:`HFLearner` is the learner protocol of :mod:`kolmo.lm.online` for a loaded causal LM
(:func:`kolmo.lm.models.load_model`). ``adapter`` chooses what learns, from the most to the least
expensive per token (each costs one forward pass to code; learning adds the backward pass through
whatever lies between the loss and the trained weights):

``None``     every weight (full fine-tuning) of a private copy of the model
``"lora"``   low-rank adapters (peft, rank ``lora_rank``, alpha = 2 rank) on every linear layer
             but the head; the backward pass still crosses every layer
``"last"``   the last ``last_layers`` decoder layers and the final norm of a private copy; the
             backward pass stops there
``"bias"``   one output bias over the vocabulary, zero at first: ``logits = W h + b``, a unigram
             correction of the frozen model learned from the text (the backward pass never enters
             the model: learning costs about one extra head product per token)

``autocast`` (``torch.bfloat16`` or None, lm-online's ``autocast`` option): the transformer body's
forward and backward passes run under ``torch.autocast`` in that dtype (matrix products in bf16
with float32 accumulation; float32 weights, gradients, optimizer and head), and the hidden states
come back as float32. On a CPU with bf16 instructions (avx512_bf16, AMX) a SmolLM2-135M learning
step takes 10.85 s against 23.45 s (2048-token window, one thread; ``python -m benchmarks.mix_bench
--parts autocast``), and the bits move by 0.04-0.2%. Where the CPU has no bf16 instructions oneDNN
emulates them: as fast as float32 with AVX-512, 8.6 x slower with AVX2 alone
(``benchmarks/saved/learner_150k.json``, ``autocast_step``).

:class:`FrozenLM` is the loaded model itself, never trained: the mixture's ``"frozen"`` part. The
shared loaded model is never changed by any learner.
"""

from __future__ import annotations

import copy
import math
from typing import List, Optional, Tuple

import numpy as np
import torch

from .batching import base_forward
from .online import new_dynamic_cache
from .quantize import with_virtual
from .tokens import VIRTUAL_MASS

#: each adapter and its default learning rate (lm-online's ``lr`` when not given; None: full fine-tuning)
ADAPTER_LR = {None: 1e-4, "lora": 1e-3, "last": 1e-4, "bias": 1e-2}
ADAPTERS = tuple(ADAPTER_LR)


class HFLearner:
    """A Hugging Face causal LM as a learner (module docstring)."""

    def __init__(self, loaded, *, adapter: Optional[str], lora_rank: int = 8, seed: int = 0, last_layers: int = 2,
                 autocast: Optional[torch.dtype] = None):
        if adapter not in ADAPTERS:
            raise ValueError(f"adapter must be one of {ADAPTERS}, got {adapter!r}")
        self.adapter, self.out_bias = adapter, None
        self.autocast = autocast
        if adapter == "bias":  # the model itself, untouched: only the bias learns
            self._bind(loaded, loaded.model)
            self.out_bias = torch.nn.Parameter(torch.zeros(loaded.vocab_size, device=loaded.device))
            self.initial = {"out_bias": torch.zeros_like(self.out_bias)}
            return
        self._bind(loaded, copy.deepcopy(loaded.model))
        if adapter == "lora":
            from peft import LoraConfig, inject_adapter_in_model
            cfg = LoraConfig(r=lora_rank, lora_alpha=2 * lora_rank, lora_dropout=0.0, target_modules="all-linear")
            with torch.random.fork_rng(devices=[]):  # seeded adapter initialisation, global RNG untouched
                torch.manual_seed(seed)
                self.module = inject_adapter_in_model(cfg, self.module)
            self.module.requires_grad_(False)
            for n, p in self.module.named_parameters():
                p.requires_grad_("lora_" in n)
            self.initial = {n: p.detach().clone() for n, p in self.named_trainable()}
        elif adapter == "last":
            layers = getattr(self.module.base_model, "layers", None)
            if layers is None or not 1 <= last_layers <= len(layers):
                have = "no list of decoder layers" if layers is None else f"{len(layers)} decoder layers"
                raise ValueError(f"adapter='last' trains the last last_layers decoder layers; this model has {have}, "
                                 f"got last_layers={last_layers!r}")
            self.module.requires_grad_(False)
            for m in list(layers[len(layers) - last_layers:]) + [getattr(self.module.base_model, "norm", None)]:
                if m is not None:
                    m.requires_grad_(True)
            self.initial = {n: p.detach().clone() for n, p in self.named_trainable()}
        else:
            self.module.requires_grad_(True)
            self.initial = dict(loaded.model.named_parameters())  # the untouched originals
        self.module.eval()  # no dropout: training must be deterministic

    def _bind(self, loaded, module) -> None:
        self.loaded, self.tokenizer, self.module = loaded, loaded.tokenizer, module
        self.start, self.alphabet = loaded.start_id, loaded.tokenizer.alphabet
        self.vocab, self.n_virtual = loaded.vocab_size, loaded.tokenizer.n_virtual
        self.device, self.max_positions = loaded.device, loaded.max_positions
        self.softcap = getattr(module.config, "final_logit_softcapping", None)

    def named_trainable(self) -> List[Tuple[str, torch.nn.Parameter]]:
        if self.adapter == "bias":
            return [("out_bias", self.out_bias)]
        return [(n, p) for n, p in self.module.named_parameters() if p.requires_grad]

    def encode(self, data: bytes) -> np.ndarray:
        return self.tokenizer.encode(data)

    def decode(self, ids) -> bytes:
        return self.tokenizer.decode(ids)

    def tensor(self, ids: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.tokenizer.model_input(ids))).to(self.device)

    def hidden(self, ids: torch.Tensor, past=None, use_cache: bool = False):
        if self.autocast is None:
            return self._body(ids, past, use_cache)
        with torch.autocast(self.device.type, dtype=self.autocast):
            h, cache = self._body(ids, past, use_cache)
        return h.float(), cache

    def _body(self, ids: torch.Tensor, past, use_cache: bool):
        if self.adapter == "bias":  # nothing inside the model learns: no graph through it
            with torch.no_grad():
                return base_forward(self.module, ids, past=past, use_cache=use_cache)
        return base_forward(self.module, ids, past=past, use_cache=use_cache)

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        head = self.module.get_output_embeddings()
        bias = getattr(head, "bias", None)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.adapter != "bias"):
            z = torch.nn.functional.linear(h.float(), head.weight.float(), None if bias is None else bias.float())
        if self.out_bias is not None:
            z = z + self.out_bias
        return torch.tanh(z / self.softcap) * self.softcap if self.softcap else z

    def target_logp(self, h: torch.Tensor, targets: np.ndarray) -> torch.Tensor:
        """ln p(target) over the coding alphabet for each row of ``h``: float32 (n,), differentiable."""
        virtual = targets >= self.vocab
        t = torch.from_numpy(np.where(virtual, 0, targets)).to(self.device)
        lp = torch.log_softmax(self._logits(h), dim=-1).gather(1, t[:, None])[:, 0]
        if not self.n_virtual:
            return lp
        lp = lp + math.log1p(-VIRTUAL_MASS)
        const = torch.full_like(lp, math.log(VIRTUAL_MASS / self.n_virtual))
        return torch.where(torch.from_numpy(virtual).to(self.device), const, lp)

    def step_probs(self, h: torch.Tensor) -> torch.Tensor:
        """The coder's (B, A) distributions over the coding alphabet, on the device."""
        return with_virtual(torch.softmax(self._logits(h), dim=-1), self.n_virtual)

    def new_cache(self, kind: str, length: int):
        return new_dynamic_cache(kind)


class FrozenLM(HFLearner):
    """The loaded pretrained model itself as a step model: never trained, nothing copied."""

    def __init__(self, loaded, autocast: Optional[torch.dtype] = None):
        self.adapter, self.out_bias, self.autocast = "frozen", None, autocast
        self._bind(loaded, loaded.model)
        self.initial = {}

    def named_trainable(self):
        return []
