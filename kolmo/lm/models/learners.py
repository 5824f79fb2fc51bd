"""Pretrained Hugging Face models as learners of lm-online, and what of them learns.

:class:`HFLearner` is the learner protocol of :mod:`kolmo.lm.coding.prequential` for a loaded causal LM
(:func:`kolmo.lm.models.loading.load_model`). ``adapter`` chooses what learns, from the most to the least
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

Every learner extends :class:`kolmo.lm.models.frozen.FrozenModel` (the loaded model itself,
never trained, is the mixture's ``"frozen"`` part); the shared loaded model is never changed by any
learner: the others train a private copy.
"""

from __future__ import annotations

import copy
from typing import List, Optional, Tuple

import torch

from .frozen import FrozenModel, growing_cache, softcap

#: each adapter and its default learning rate (lm-online's ``lr`` when not given; None: full fine-tuning)
ADAPTER_LR = {None: 1e-4, "lora": 1e-3, "last": 1e-4, "bias": 1e-2}
ADAPTERS = tuple(ADAPTER_LR)


class HFLearner(FrozenModel):
    """A Hugging Face causal LM as a learner (module docstring)."""

    def __init__(self, loaded, *, adapter: Optional[str], lora_rank: int = 8, seed: int = 0, last_layers: int = 2,
                 autocast: Optional[torch.dtype] = None):
        if adapter not in ADAPTERS:
            raise ValueError(f"adapter must be one of {ADAPTERS}, got {adapter!r}")
        # "bias": the model itself, untouched (only the bias learns); the others train a private copy
        super().__init__(loaded, autocast, module=loaded.model if adapter == "bias" else copy.deepcopy(loaded.model))
        self.adapter, self.out_bias = adapter, None
        if adapter == "bias":
            self.out_bias = torch.nn.Parameter(torch.zeros(loaded.vocab_size, device=loaded.device))
            self.initial = {"out_bias": torch.zeros_like(self.out_bias)}
            return
        if adapter == "lora":
            self._add_lora(lora_rank, seed)
        elif adapter == "last":
            self._train_last(last_layers)
        else:
            self.module.requires_grad_(True)
        # the values learning starts from (full fine-tuning: the untouched originals)
        self.initial = ({n: p.detach().clone() for n, p in self.named_trainable()} if adapter
                        else dict(loaded.model.named_parameters()))
        self.module.eval()  # no dropout: training must be deterministic

    def _add_lora(self, rank: int, seed: int) -> None:
        from peft import LoraConfig, inject_adapter_in_model
        cfg = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules="all-linear")
        with torch.random.fork_rng(devices=[]):  # seeded adapter initialisation, global RNG untouched
            torch.manual_seed(seed)
            self.module = inject_adapter_in_model(cfg, self.module)
        self.module.requires_grad_(False)
        for n, p in self.module.named_parameters():
            p.requires_grad_("lora_" in n)

    def _train_last(self, last_layers: int) -> None:
        layers = getattr(self.module.base_model, "layers", None)
        if layers is None or not 1 <= last_layers <= len(layers):
            have = "no list of decoder layers" if layers is None else f"{len(layers)} decoder layers"
            raise ValueError(f"adapter='last' trains the last last_layers decoder layers; this model has {have}, "
                             f"got last_layers={last_layers!r}")
        self.module.requires_grad_(False)
        for m in list(layers[len(layers) - last_layers:]) + [getattr(self.module.base_model, "norm", None)]:
            if m is not None:
                m.requires_grad_(True)

    def named_trainable(self) -> List[Tuple[str, torch.nn.Parameter]]:
        if self.adapter == "bias":
            return [("out_bias", self.out_bias)]
        return [(n, p) for n, p in self.module.named_parameters() if p.requires_grad]

    def _body(self, ids: torch.Tensor, past, use_cache: bool):
        if self.adapter == "bias":  # nothing inside the model learns: no graph through it
            with torch.no_grad():
                return super()._body(ids, past, use_cache)
        return super()._body(ids, past, use_cache)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """The frozen model's logits plus the learned bias (for "bias": no graph through the head)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.adapter != "bias"):
            z = self.linear_logits(h)
        return softcap(z if self.out_bias is None else z + self.out_bias, self.cap)

    def new_cache(self, kind: str, length: int):
        return growing_cache(kind)
