"""lm-online's settings: its options checked and turned into a learner and a prequential engine.

:class:`OnlineSettings` holds every option of the ``lm-online`` compressor
(:mod:`kolmo.compressors.lm_online` documents them), validated with errors that say what was
expected; :meth:`OnlineSettings.build` loads the model and makes the
:class:`~kolmo.lm.coding.prequential.Prequential` engine; :meth:`OnlineSettings.stream_config` is every
setting that changes a code length or a stream.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

from ..options import check_float, check_int

#: lm-online's ``autocast`` option: the dtype of the body's products (None: the weights' own)
_AUTOCAST = {None: None, "bfloat16": "bfloat16", "bf16": "bfloat16", "auto": "auto"}
_FLOAT32 = ("float32", "fp32", "torch.float32")  #: the dtypes autocast applies to
#: model='scratch': the hashed n-gram table's learning rate over the dense weights' (benchmarks/saved/default_sweeps.json, scratch_size)
NGRAM_LR_SCALE = 30.0
#: the scratch model's default size: small and quick to learn (benchmarks/saved/default_sweeps.json, scratch_size)
_SCRATCH_SIZE = {"layers": 2, "width": 128, "heads": 4, "context": 128, "ngram": 6, "buckets": 1 << 20}


#: the mixture's memories by alphabet (index: model == "scratch", bytes) (benchmarks/saved/default_sweeps.json, ngram_orders, match_lengths)
_NGRAM_ORDERS = {False: (1, 2, 3, 4), True: (1, 2, 3, 4, 6, 8)}
#: the mixer's Soft-Bayes rate by alphabet (benchmarks/saved/default_sweeps.json, mixer_eta)
_ETA = {False: 0.1, True: 0.05}
_MATCH_LENGTHS = {False: (16, 8, 4, 2), True: (32, 16, 8, 4)}
#: the second learner's ("fast") learning rate over the learner's (benchmarks/saved/default_sweeps.json, fast_lr)
FAST_LR_SCALE = 3.0


#: ``mix="auto"`` where the pretrained models compute in bf16 (``autocast``): every part, the second
#: learner "fast" included, with these defaults for options not given. bf16 halves a learning step
#: where the hardware has it, which pays for the second learner within the 1.5 x rule (the Finnish
#: Genesis at X = 150 kB: 3369.8 bits = 0.7497 x lm in context in 1.19 x the learner alone's time,
#: against 3418.6 for float32's default mixture; benchmarks/saved/learner_150k.json)
BF16_MIX = {"cache_theta": 200.0, "eta": (0.1, 0.02, 1.0)}


def auto_mix(scratch: bool, bf16: bool) -> Tuple[str, ...]:
    """The parts of ``mix="auto"``: every part the model has, but the second learner "fast" only
    where the pretrained models compute in bf16 (it doubles the learning; in float32 that is 2.2 x
    the learner alone's time, over the 1.5 x that the default may take)."""
    from .mixing.mixture import PARTS
    return tuple(p for p in PARTS if not (scratch and p in ("frozen", "cache")) and (p != "fast" or bf16))


def _check_mix(mix: Any, scratch: bool, order, lengths, gate, share, eta,
               cache_theta=None, cache_size=None) -> Optional[Tuple[str, ...]]:
    """``mix`` as a tuple of part names (None: the learner alone, no mixture; "auto" resolved by the
    caller with :func:`auto_mix`), checked."""
    from .mixing.mixer import new_mixer
    from .mixing.mixture import GATES, PARTS
    if mix is None:
        if any(v is not None for v in (order, lengths, cache_theta, cache_size)):
            raise ValueError("ngram_orders, match_lengths, cache_theta and cache_size set the mixture's memories; "
                             "pass mix=(...) to use one")
        return None
    if isinstance(mix, str):
        mix = (mix,)
    if not isinstance(mix, (tuple, list)) or not mix or any(p not in PARTS for p in mix) or len(set(mix)) < len(mix):
        raise ValueError(f"mix must be a non-empty sequence of distinct parts from {PARTS}, got {mix!r}")
    if scratch and "frozen" in mix:
        raise ValueError("mix part 'frozen' is a pretrained model read in context; model='scratch' has none "
                         "(its 'learner' starts from random weights)")
    if scratch and "cache" in mix:
        raise ValueError("mix part 'cache' keeps a pretrained model's hidden states; model='scratch' has none")
    from .mixing.neural_cache import THETA, CacheSettings
    CacheSettings(2, theta=THETA if cache_theta is None else cache_theta, size=cache_size)  # its own checks
    from .mixing.match import MatchModel
    from .mixing.ngram import TokenNGram
    for name, value, model in (("ngram_orders", order, TokenNGram), ("match_lengths", lengths, MatchModel)):
        if value is not None:
            try:
                model(2, value)  # the memory's own check of its orders / its ladder of lengths
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"{name}: {exc}") from None
    if gate not in GATES:
        raise ValueError(f"gate must be one of {GATES}, got {gate!r}")
    new_mixer(len(mix), share=share, eta=1.0 if eta is None else eta)  # checks share and eta
    return tuple(p for p in PARTS if p in mix)  # one order of experts everywhere: the config's and the coder's


class OnlineSettings:
    """The validated options of ``lm-online`` (see :mod:`kolmo.compressors.lm_online`)."""

    def __init__(self, model: Optional[str] = None, *, adapter: Optional[str] = None, lora_rank: int = 8,
                 last_layers: int = 2,
                 lr: Optional[float] = None, optimizer: str = "adam", steps: int = 1, replay: int = 0,
                 block_tokens: Optional[int] = None, window: Optional[int] = None, stride: Optional[int] = None,
                 grad_clip: Optional[float] = 1.0, weight_decay: float = 0.0, seed: int = 0,
                 layers: Optional[int] = None, width: Optional[int] = None, heads: Optional[int] = None,
                 context: Optional[int] = None, ngram: Optional[int] = None, buckets: Optional[int] = None,
                 ngram_lr: Optional[float] = None, device: Optional[str] = "auto", dtype: Optional[str] = "float32",
                 train_on: Optional[str] = None, mix: Any = "auto", ngram_orders: Any = None,
                 match_lengths: Optional[Sequence[int]] = None, gate: Optional[str] = "match",
                 share: float = 1e-4, eta: Optional[float] = None, cache_theta: Optional[float] = None,
                 cache_size: Optional[int] = None, fast_lr: Optional[float] = None, autocast: Optional[str] = "auto"):
        scratch = model == "scratch"
        self.model_name = model
        self._precision(scratch, device, dtype, autocast)
        if isinstance(mix, str) and mix == "auto":  # with bf16, BF16_MIX's values for the options not given
            bf16 = self.autocast == "bfloat16"
            mix = auto_mix(scratch, bf16)
            if bf16:
                cache_theta = BF16_MIX["cache_theta"] if cache_theta is None else cache_theta
                eta = BF16_MIX["eta"] if eta is None else eta
        self._mixture(scratch, mix, ngram_orders, match_lengths, gate, share, eta, cache_theta, cache_size)
        self._model(scratch, adapter, lora_rank, last_layers, dict(layers=layers, width=width, heads=heads,
                                                                    context=context, ngram=ngram, buckets=buckets))
        self._learning(scratch, lr, fast_lr, ngram_lr, optimizer, steps, replay, train_on, grad_clip,
                       weight_decay, seed)
        self._block = check_int("block_tokens", block_tokens, none=True)
        self._window = check_int("window", window, none=True)
        self._stride = check_int("stride", stride, none=True)
        self.fingerprint: Dict[str, Any] = {}
        self.model_label = "scratch"  #: the model's name, shown in config beside its identity
        self.legacy_fingerprint = lambda: dict(self.fingerprint)  #: payload format 0's (kolmo.lm.models.loading)

    def _precision(self, scratch: bool, device, dtype, autocast) -> None:
        """``dtype`` checked; ``autocast`` resolved ("auto": bfloat16 where bf16 runs in hardware)."""
        from .models.loading import check_dtype
        check_dtype(dtype)
        if autocast not in _AUTOCAST:
            raise ValueError(f"autocast must be None (the model's own dtype), 'bfloat16' (its products in bf16 "
                             f"under torch.autocast) or 'auto' (bfloat16 where the device computes bf16 in "
                             f"hardware), got {autocast!r}")
        self.autocast = _AUTOCAST[autocast]
        if self.autocast == "auto":  # resolved here: config names the result
            from . import machine
            from .models.loading import resolve_device
            native = not scratch and str(dtype) in _FLOAT32 and machine.native_bf16(resolve_device(device))
            self.autocast = "bfloat16" if native else None
        if self.autocast == "bfloat16":
            if scratch:
                raise ValueError("autocast applies to pretrained models; model='scratch' computes its coding steps "
                                 "in its own dtype (float32 or float64)")
            if str(dtype) not in _FLOAT32:
                raise ValueError(f"autocast={autocast!r} runs a float32 model's products in bf16, but dtype={dtype!r}: "
                                 "pass dtype='float32' (the default) or leave autocast unset")
        self._device, self._dtype = device, dtype

    def _mixture(self, scratch: bool, mix, ngram_orders, match_lengths, gate, share, eta, cache_theta,
                 cache_size) -> None:
        """The mixture's parts and their settings (defaults by alphabet: scratch's bytes or tokens)."""
        from .mixing.neural_cache import THETA
        self.mix = _check_mix(mix, scratch, ngram_orders, match_lengths, gate, share, eta, cache_theta, cache_size)
        self.cache_theta = float(cache_theta) if cache_theta is not None else THETA
        self.cache_size = cache_size
        orders = ngram_orders if ngram_orders is not None else _NGRAM_ORDERS[scratch]
        self.ngram_orders = (orders,) if isinstance(orders, int) else tuple(orders)
        self.match_lengths = tuple(match_lengths) if match_lengths is not None else _MATCH_LENGTHS[scratch]
        self.gate, self.share = gate, float(share)
        self.eta = (_ETA[scratch] if eta is None else tuple(float(e) for e in eta) if isinstance(eta, (tuple, list))
                    else float(eta))

    def _model(self, scratch: bool, adapter, lora_rank, last_layers, size: Dict[str, Any]) -> None:
        """What learns (``adapter``) of a pretrained model, or the scratch model's size."""
        from .models.learners import ADAPTER_LR
        if adapter not in ADAPTER_LR:
            raise ValueError(f"adapter must be one of {tuple(ADAPTER_LR)} (None: full fine-tuning), got {adapter!r}")
        if adapter and scratch:
            raise ValueError(f"adapter={adapter!r} applies to pretrained models; model='scratch' trains all its weights")
        self.adapter = adapter
        self.lora_rank = check_int("lora_rank", lora_rank)
        self.last_layers = check_int("last_layers", last_layers)
        for key, val in size.items():
            check_int(key, val, 0 if key == "ngram" else 1, none=True)
        if scratch:
            size = {k: v if v is not None else _SCRATCH_SIZE[k] for k, v in size.items()}
            if size["width"] % size["heads"]:
                raise ValueError(f"width ({size['width']}) must be a multiple of heads ({size['heads']})")
        elif any(v is not None for v in size.values()):
            raise ValueError("layers, width, heads, context, ngram and buckets set the size of model='scratch'; "
                             f"a pretrained model ({self.model_name or 'the default'}) has its own")
        self.size = size if scratch else None

    def _learning(self, scratch: bool, lr, fast_lr, ngram_lr, optimizer, steps, replay, train_on, grad_clip,
                  weight_decay, seed) -> None:
        """The optimizer and its rates: lr by adapter, the second learner's and the n-gram table's."""
        from .coding.prequential import OPTIMIZERS, TRAIN_ON
        from .models.learners import ADAPTER_LR
        check_float("lr", lr, none=True)
        if check_float("fast_lr", fast_lr, none=True) is not None and (self.mix is None or "fast" not in self.mix):
            raise ValueError(f"fast_lr={fast_lr!r} is the learning rate of the mixture's second learner; "
                             f"add the part: mix=(..., 'fast'), got mix={self.mix!r}")
        if check_float("ngram_lr", ngram_lr, none=True) is not None and not scratch:
            raise ValueError("ngram_lr is the learning rate of the hashed n-gram table of model='scratch'; "
                             f"a pretrained model ({self.model_name or 'the default'}) has no such table")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
        train_on = train_on if train_on is not None else "window" if scratch else "block"
        if train_on not in TRAIN_ON:
            raise ValueError(f"train_on must be one of {', '.join(TRAIN_ON)}, got {train_on!r}")
        self.steps = check_int("steps", steps, 0)
        self.replay = check_int("replay", replay, 0)
        if self.replay and not self.steps:
            raise ValueError(f"replay={replay} adds steps on earlier blocks after each block's own, but steps=0 "
                             "turns learning off (the model never trains): pass steps >= 1, or leave replay at 0")
        self.seed = check_int("seed", seed, -(1 << 63))
        self.grad_clip = check_float("grad_clip", grad_clip, none=True)
        self.weight_decay = check_float("weight_decay", weight_decay, zero=True)
        self.optimizer, self.train_on = optimizer, train_on
        self.lr = float(lr) if lr is not None else (3e-4 if scratch else ADAPTER_LR[self.adapter])
        #: the "fast" part's learning rate: FAST_LR_SCALE x lr unless given (to 12 digits, so that the
        #: default and the same rate given are one configuration: 3 x 1e-4 is 0.00030000000000000003)
        self.fast_lr = float(fast_lr) if fast_lr is not None else float(f"{FAST_LR_SCALE * self.lr:.12g}")
        self.ngram_lr = None
        if scratch and self.size["ngram"] > 1:
            self.ngram_lr = float(ngram_lr) if ngram_lr is not None else NGRAM_LR_SCALE * self.lr

    def build(self, progress=None):
        """Load the model and return the :class:`~kolmo.lm.coding.prequential.Prequential` engine (sets ``fingerprint``)."""
        import torch
        from .models.loading import load_model, resolve_device, resolve_dtype
        from .models.learners import HFLearner
        from .coding.prequential import Prequential
        if self.size is not None:
            from .models.scratch import ScratchLearner
            from .models.scratch_steps import step_kind
            dev = resolve_device(self._device)
            dt = resolve_dtype(self._dtype, dev)

            def new_learner():
                return ScratchLearner(**self.size, seed=self.seed, device=dev, dtype=dt)
            self.fingerprint = {"model": "scratch", **self.size, "init": ScratchLearner.init_scheme,
                                "dtype": str(dt).replace("torch.", ""), "device_type": dev.type,
                                "coding_steps": step_kind(dev, dt)}
        else:
            loaded = load_model(self.model_name, device=self._device, dtype=self._dtype, progress=progress)
            autocast = getattr(torch, self.autocast) if self.autocast is not None else None

            def new_learner():  # a private copy of the loaded model (or its adapters) each time
                return HFLearner(loaded, adapter=self.adapter, lora_rank=self.lora_rank, seed=self.seed,
                                 last_layers=self.last_layers, autocast=autocast)
            self.fingerprint = dict(loaded.fingerprint)
            self.model_label = loaded.name
            self.legacy_fingerprint = loaded.legacy_fingerprint
        learner = new_learner()
        window = self._window or min(learner.max_positions, 2048)
        if window > learner.max_positions:
            raise ValueError(f"window {window} exceeds the model's {learner.max_positions} positions")
        stride = self._stride or max(1, window // 2)
        from .scoring.batching import check_window
        check_window(window, stride)
        block = self._block or (32 if self.size is not None else max(1, window // 2))

        def engine(net, lr: float, sparse_lr: Optional[float]) -> Prequential:
            return Prequential(net, block_tokens=block, window=window, stride=stride, steps=self.steps, lr=lr,
                               optimizer=self.optimizer, grad_clip=self.grad_clip, weight_decay=self.weight_decay,
                               train_on=self.train_on, sparse_lr=sparse_lr, replay=self.replay, seed=self.seed)
        inner = engine(learner, self.lr, self.ngram_lr)
        if self.mix is None:
            return inner
        from .models.frozen import FrozenModel
        from .mixing.mixture import MixedPrequential
        from .mixing.match import MatchModel
        from .mixing.neural_cache import CacheSettings
        from .mixing.ngram import TokenNGram
        a = learner.alphabet
        fast = None
        if "fast" in self.mix:  # another private copy of the same model, on the same blocks
            # (the scratch model's hashed table keeps its rate over the dense weights')
            fast_sparse = self.ngram_lr * self.fast_lr / self.lr if self.ngram_lr is not None else None
            fast = engine(new_learner(), self.fast_lr, fast_sparse)
        frozen = FrozenModel(loaded, autocast) if "frozen" in self.mix or "cache" in self.mix else None
        cache = CacheSettings(a, self.cache_theta, self.cache_size) if "cache" in self.mix else None
        return MixedPrequential(inner, self.mix, fast=fast, frozen=frozen, cache=cache,
                                ngram=TokenNGram(a, self.ngram_orders), match=MatchModel(a, self.match_lengths),
                                gate=self.gate, share=self.share, eta=self.eta)

    def stream_config(self, engine) -> Dict[str, Any]:
        """Every setting a stream or a code length depends on (after :meth:`build`)."""
        from .. import framing
        from .coding.schedule import PRECISION_BITS
        return {"codec": "lm-online-rans", "method": "prequential", **self.fingerprint,
                "adapter": self.adapter, "lora_rank": self.lora_rank if self.adapter == "lora" else None,
                **({"last_layers": self.last_layers} if self.adapter == "last" else {}),
                "lr": self.lr, **({"ngram_lr": self.ngram_lr} if self.ngram_lr is not None else {}),
                "optimizer": self.optimizer, "steps": self.steps, **({"replay": self.replay} if self.replay else {}),
                "train_on": self.train_on,
                "block_tokens": engine.block_tokens, "window": engine.window, "stride": engine.stride,
                "grad_clip": self.grad_clip, "weight_decay": self.weight_decay, "seed": self.seed,
                "precision_bits": PRECISION_BITS, "start_id": int(engine.learner.start),
                "payload": framing.PAYLOAD_VERSION, **({"autocast": self.autocast} if self.autocast else {}),
                **self._mix_config()}

    def _mixer_config(self) -> Dict[str, Any]:
        from .mixing.mixer import TOP_SHARE
        if isinstance(self.eta, tuple):
            return {"eta": list(self.eta), "mixer": "soft-bayes stack, fixed share", "top_share": TOP_SHARE}
        return {"eta": self.eta, "mixer": "soft-bayes, fixed share"}

    def _mix_config(self) -> Dict[str, Any]:
        from .mixing.match import MatchModel
        from .mixing.neural_cache import FLOOR
        if self.mix is None:
            return {}
        return {"mix": list(self.mix), **({"fast_lr": self.fast_lr} if "fast" in self.mix else {}),
                "ngram_orders": list(self.ngram_orders) if "ngram" in self.mix else None,
                "match_lengths": list(self.match_lengths) if "match" in self.mix or self.gate else None,
                # the match model's rule (kolmo.lm.mixing.match): streams of another rule are refused, not misdecoded
                **({"match_model": MatchModel.version} if "match" in self.mix or self.gate else {}),
                "gate": self.gate, "share": self.share, **self._mixer_config(),
                **({"cache_theta": self.cache_theta, "cache_size": self.cache_size, "cache_floor": FLOOR}
                   if "cache" in self.mix else {})}
