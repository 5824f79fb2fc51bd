"""The learning language-model compressor ``lm-online``: prequential coding with training.

    lm = kolmo.get_compressor("lm-online")                      # SmolLM2-135M, full fine-tuning
    lm = kolmo.get_compressor("lm-online", adapter="lora")      # low-rank adapters (peft)
    lm = kolmo.get_compressor("lm-online", model="scratch")     # a byte transformer from nothing

The "lm" compressor conditions on X only through its window. This one *learns* while it codes:
the input's tokens are coded in blocks, block k under weights theta_k, then the model takes
``steps`` optimizer steps on block k to give theta_{k+1} (:mod:`kolmo.lm.online`)::

    C(x) = sum_k  sum_{t in block k}  -log2 p(x_t | x_<t; theta_k)          (bits)

the prequential code length (Rissanen; Blier and Ollivier 2018). The decoder replays the same
updates, so it is a real code that already pays for the parameters: no separate model cost.

Measures: ``bits`` is that ideal sum (``bits_kind = "ideal"``); C(XY) trains through X then Y;
``conditional_method = "learning"``: C(Y | X) = C(XY) - C(X), so X, a whole dataset, conditions Y
through the weights as well as through the window. ``conditional_bits_many(ys, x)`` and
``joint_bits`` pairs sharing an x train through x's common whole blocks once, then continue each
y from a copy of the weights and optimizer state (the same floats as a run from the start).
Results are remembered per input for the life of the instance. Many independent inputs
(``bits_many``) run one after another.

Options (all in ``config``, the results cache's key). Pretrained models (``model=None``, the
default SmolLM2-135M-Instruct, or any Hugging Face causal LM name or path):

``adapter``     None (full fine-tuning, default lr 1e-4) or "lora" (peft adapters of rank
                ``lora_rank`` = 8 on every linear layer but the head, default lr 1e-3)
``window``, ``stride``   tokens the model sees, as in "lm" (min(model's positions, 2048), window // 2)
``block_tokens``  tokens per block (window // 2: each token sees at least window / 2 tokens)

``model="scratch"``, a byte transformer learning from nothing (:mod:`kolmo.lm.scratch`):

``layers``, ``width``, ``heads``, ``context``   its size (default 2, 128, 4, 128; window = context)
``ngram``, ``buckets``   hashed n-gram embeddings for n = 2 .. ngram (6) in a table of ``buckets``
                (2^20) rows; ``ngram=0`` turns them off. The default table and its Adam moments take
                1.5 GB of memory; ``buckets=1 << 16`` makes it 100 MB
``ngram_lr``    learning rate of that table (default NGRAM_LR_SCALE x ``lr``): the table starts at
                zero and is the model's fast memory (a row is updated only when its n-gram occurs),
                so it learns much faster than the transformer's dense weights
defaults: ``block_tokens`` 32, ``lr`` 3e-4, ``train_on`` "window"; chosen on 1.19 MB of English
(``python -m benchmarks.online_bench --parts 3``), where they give 2.063 bits/byte against
PPMd order 6's 2.079 (``lr`` 2e-3 / 5e-4 with the table at ``lr`` and random: 2.142 / 2.108;
2^18 buckets: 2.075; ``ngram_lr`` 10 / 100 x ``lr``: 2.073 / 2.062)

Both:

``lr``          learning rate > 0; ``steps`` (default 1) optimizer steps per block, 0 turns
                learning off (the model stays theta_0: the same as coding with a frozen model)
``optimizer``   "adam" (default), "adamw" or "sgd"; ``weight_decay`` (0); ``grad_clip`` (1.0:
                global gradient norm, None: off)
``train_on``    "block" (pretrained default: the loss is the block's tokens) or "window" (every
                token of the block's windows, so older tokens are replayed at no extra forward cost)
``seed``        seeds the scratch model's and the adapters' initialisation (default 0)
``device``, ``dtype``   "auto" (CUDA if present) and float32 (training in bfloat16 would lose
                small updates to rounding)
``verify``      (default True) ``compress`` decodes its stream before returning it and raises if it
                does not decode exactly: a second pass of the same cost as encoding, so compress
                takes twice as long. Not in ``config``: it changes no result.
``progress``    None (bars for long inputs), True, or False (silences everything, model loading too)

Streams: kolmo's container (:mod:`kolmo.framing`) around the token count, a CRC-32 per block and
one range-coder stream (layout: :func:`kolmo.lm.online.pack_payload`). The decoder decodes block
k token by token under theta_k, checks its CRC-32
(raising :class:`~kolmo.errors.CorruptStreamError` at the first block that differs), then takes
the same optimizer steps. Decoding needs the same floats as encoding: the same device type,
dtype and library versions (pinned by the stream's fingerprint) and, on the CPU, the same torch
thread count (CPU kernels split their work, and so their float sums, by thread: a stream written
with 2 threads failed to decode with 1). The stream records the encoder's thread count and the
decoder runs with it (restoring the caller's afterwards). A machine whose floats still differ (other
CPU kernels or library builds) fails a block CRC, never returns wrong bytes.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import framing
from ..errors import CorruptStreamError, KolmoError
from ..inputs import Data, as_bytes
from .base import Compressor

_DTYPES = (None, "auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16")
#: the scratch model's default size: small and quick to learn (benchmarks/online_bench.py, part 3)
#: model='scratch': the hashed n-gram table's learning rate over the dense weights' (online_bench part 3)
NGRAM_LR_SCALE = 30.0
_SCRATCH_SIZE = {"layers": 2, "width": 128, "heads": 4, "context": 128, "ngram": 6, "buckets": 1 << 20}


def _positive_int(name: str, value: Any, *, zero: bool = False, none: bool = True) -> None:
    if value is None and none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if zero else 1):
        raise ValueError(f"{name} must be a {'non-negative' if zero else 'positive'} int, got {value!r}")


def _positive_float(name: str, value: Any, *, zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not zero):
        raise ValueError(f"{name} must be a {'non-negative' if zero else 'positive'} finite number, got {value!r}")


class OnlineLMCompressor(Compressor):
    name = "lm-online"
    bits_kind = "ideal"
    conditional_method = "learning"

    def __init__(self, model: Optional[str] = None, *, adapter: Optional[str] = None, lora_rank: int = 8,
                 lr: Optional[float] = None, optimizer: str = "adam", steps: int = 1,
                 block_tokens: Optional[int] = None, window: Optional[int] = None, stride: Optional[int] = None,
                 grad_clip: Optional[float] = 1.0, weight_decay: float = 0.0, seed: int = 0,
                 layers: Optional[int] = None, width: Optional[int] = None, heads: Optional[int] = None,
                 context: Optional[int] = None, ngram: Optional[int] = None, buckets: Optional[int] = None,
                 ngram_lr: Optional[float] = None, device: Optional[str] = "auto", dtype: Optional[str] = "float32",
                 train_on: Optional[str] = None, verify: bool = True, progress: Optional[bool] = None):
        from ..lm.online import OPTIMIZERS, TRAIN_ON
        scratch = model == "scratch"
        if lr is not None:
            _positive_float("lr", lr)
        if ngram_lr is not None:
            _positive_float("ngram_lr", ngram_lr)
            if not scratch:
                raise ValueError("ngram_lr is the learning rate of the hashed n-gram table of model='scratch'; "
                                 f"a pretrained model ({model or 'the default'}) has no such table")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
        if train_on is None:
            train_on = "window" if scratch else "block"
        if train_on not in TRAIN_ON:
            raise ValueError(f"train_on must be one of {', '.join(TRAIN_ON)}, got {train_on!r}")
        if adapter not in (None, "lora"):
            raise ValueError(f"adapter must be None (full fine-tuning) or 'lora', got {adapter!r}")
        if adapter and scratch:
            raise ValueError("adapter='lora' applies to pretrained models; model='scratch' trains all its weights")
        for key, val in (("block_tokens", block_tokens), ("window", window), ("stride", stride),
                         ("layers", layers), ("width", width), ("heads", heads), ("context", context),
                         ("buckets", buckets)):
            _positive_int(key, val)
        _positive_int("ngram", ngram, zero=True)
        _positive_int("steps", steps, zero=True, none=False)
        _positive_int("lora_rank", lora_rank, none=False)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an int, got {seed!r}")
        if grad_clip is not None:
            _positive_float("grad_clip", grad_clip)
        _positive_float("weight_decay", weight_decay, zero=True)
        size = {"layers": layers, "width": width, "heads": heads, "context": context, "ngram": ngram,
                "buckets": buckets}
        if scratch:
            size = {k: v if v is not None else _SCRATCH_SIZE[k] for k, v in size.items()}
            if size["width"] % size["heads"]:
                raise ValueError(f"width ({size['width']}) must be a multiple of heads ({size['heads']})")
        elif any(v is not None for v in size.values()):
            raise ValueError("layers, width, heads, context, ngram and buckets set the size of model='scratch'; "
                             f"a pretrained model ({model or 'the default'}) has its own")
        self.model_name, self.adapter, self.lora_rank = model, adapter, lora_rank
        self.lr = float(lr) if lr is not None else (3e-4 if scratch else 1e-3 if adapter else 1e-4)
        self.ngram_lr = None
        if scratch and size["ngram"] > 1:
            self.ngram_lr = float(ngram_lr) if ngram_lr is not None else NGRAM_LR_SCALE * self.lr
        self.optimizer, self.steps, self.seed, self.train_on = optimizer, steps, seed, train_on
        self.grad_clip = None if grad_clip is None else float(grad_clip)
        self.weight_decay = float(weight_decay)
        self.size = size if scratch else None
        self._block, self._window, self._stride = block_tokens, window, stride
        self._device, self._dtype = device, dtype
        self.verify, self.progress = verify, progress
        self._options = dict(model=model, adapter=adapter, lora_rank=lora_rank, lr=lr, optimizer=optimizer,
                             steps=steps, block_tokens=block_tokens, window=window, stride=stride,
                             grad_clip=grad_clip, weight_decay=weight_decay, seed=seed, layers=layers, width=width,
                             heads=heads, context=context, ngram=ngram, buckets=buckets, ngram_lr=ngram_lr,
                             device=device,
                             dtype=dtype, train_on=train_on, verify=verify, progress=progress)
        self._engine = None
        self._fingerprint: Dict[str, Any] = {}
        self._memo: "OrderedDict[bytes, float]" = OrderedDict()
        if dtype not in _DTYPES and not hasattr(dtype, "is_floating_point"):
            raise ValueError(f"dtype must be one of {', '.join(repr(d) for d in _DTYPES)}, got {dtype!r}")

    def __getstate__(self) -> Dict[str, Any]:
        return dict(self._options)

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    # -- lazy learner and engine ------------------------------------------------------------------
    @property
    def engine(self):
        if self._engine is None:
            from ..lm.models import load_model, resolve_device, resolve_dtype
            from ..lm.online import HFLearner, Prequential
            if self.size is not None:
                from ..lm.scratch import ScratchLearner
                dev = resolve_device(self._device)
                dt = resolve_dtype(self._dtype, dev)
                learner = ScratchLearner(**self.size, seed=self.seed, device=dev, dtype=dt)
                self._fingerprint = {"model": "scratch", **self.size, "init": ScratchLearner.init_scheme,
                                     "dtype": str(dt).replace("torch.", ""), "device_type": dev.type}
            else:
                loaded = load_model(self.model_name, device=self._device, dtype=self._dtype, progress=self.progress)
                learner = HFLearner(loaded, adapter=self.adapter, lora_rank=self.lora_rank, seed=self.seed)
                self._fingerprint = dict(loaded.fingerprint)
            window = self._window or min(learner.max_positions, 2048)
            if window > learner.max_positions:
                raise ValueError(f"window {window} exceeds the model's {learner.max_positions} positions")
            stride = self._stride or max(1, window // 2)
            from ..lm.loglik import check_window
            check_window(window, stride)
            block = self._block or (32 if self.size is not None else max(1, window // 2))
            self._engine = Prequential(learner, block_tokens=block, window=window,
                                       stride=stride, steps=self.steps, lr=self.lr, optimizer=self.optimizer,
                                       grad_clip=self.grad_clip, weight_decay=self.weight_decay,
                                       train_on=self.train_on, sparse_lr=self.ngram_lr)
        return self._engine

    @property
    def stream_config(self) -> Dict[str, Any]:
        e = self.engine
        return {"codec": "lm-online-range-coder", "method": "prequential", **self._fingerprint,
                "adapter": self.adapter, "lora_rank": self.lora_rank if self.adapter else None,
                "lr": self.lr, **({"ngram_lr": self.ngram_lr} if self.ngram_lr is not None else {}),
                "optimizer": self.optimizer, "steps": self.steps, "train_on": self.train_on,
                "block_tokens": e.block_tokens,
                "window": e.window, "stride": e.stride, "grad_clip": self.grad_clip,
                "weight_decay": self.weight_decay, "seed": self.seed, "precision_bits": 24,
                "start_id": int(e.learner.start)}

    @property
    def config(self) -> Dict[str, Any]:
        from importlib.metadata import version

        import torch

        from .. import __version__
        cfg = {**self.stream_config, "kolmo_version": __version__, "torch_version": torch.__version__,
               "constriction_version": version("constriction")}
        if self.size is None:
            import transformers
            cfg["transformers_version"] = transformers.__version__
        if self.adapter == "lora":
            import peft
            cfg["peft_version"] = peft.__version__
        return cfg

    def __repr__(self) -> str:
        model = self.model_name or "SmolLM2-135M-Instruct"
        return f"<kolmo compressor lm-online (model={model}, adapter={self.adapter}, lr={self.lr}, steps={self.steps})>"

    # -- tokens ----------------------------------------------------------------------------------
    def tokens(self, data: Data) -> np.ndarray:
        """The token ids that code ``data`` (bytes for ``model="scratch"``)."""
        return self.engine.learner.encode(as_bytes(data))

    def _seq(self, ids: np.ndarray) -> np.ndarray:
        return np.concatenate([[self.engine.learner.start], ids]).astype(np.int64)

    def _bar(self, total: int, desc: str):
        """A token bar (kolmo.progress: None shows it from 1024 tokens, under an outer switch)."""
        from .. import progress
        return progress.bar(total, f"kolmo lm-online: {desc}", "tok", self.progress, min_total=1024)

    # -- measures --------------------------------------------------------------------------------
    def block_bits(self, data: Data) -> np.ndarray:
        """Ideal code length of each block of ``data`` in bits (float64), block k under theta_k."""
        seq = self._seq(self.tokens(data))
        eng = self.engine
        eng.reset()
        with self._bar(len(seq) - 1, "learning") as bar:
            return np.asarray(eng.run(seq, bar=bar), dtype=np.float64)

    def _shared(self, datas: Sequence[bytes]) -> List[float]:
        """Totals of inputs that share a prefix: train through their common whole blocks once."""
        keys = [hashlib.sha256(d).digest() for d in datas]
        todo = [i for i, k in enumerate(keys) if k not in self._memo and k not in keys[:i]]
        if todo:
            eng = self.engine
            seqs = [self._seq(self.tokens(datas[i])) for i in todo]
            from ..lm.online import common_blocks
            shared = min(common_blocks(seqs[0][1:], s[1:], eng.block_tokens) for s in seqs) if len(seqs) > 1 else 0
            eng.reset()
            with self._bar(sum(len(s) - 1 for s in seqs) - shared * eng.block_tokens * (len(seqs) - 1),
                           "learning") as bar:
                head = eng.run(seqs[0], stop_block=shared, bar=bar) if shared else []
                snap = eng.snapshot() if shared and len(seqs) > 1 else None
                for j, (i, seq) in enumerate(zip(todo, seqs)):
                    if j:
                        eng.restore(snap) if snap is not None else eng.reset()
                    self._remember(keys[i], float(sum(head + eng.run(seq, first_block=shared, bar=bar))))
        return [self._memo[k] for k in keys]

    def _remember(self, key: bytes, bits: float) -> None:
        self._memo[key] = bits
        while len(self._memo) > 4096:
            self._memo.popitem(last=False)

    def bits(self, data: Data) -> float:
        return self.bits_many([data])[0]

    def bits_many(self, datas: Sequence[Data]) -> List[float]:
        """Code lengths of independent inputs, one run each (sequential)."""
        return [self._shared([as_bytes(d)])[0] for d in datas]

    def joint_bits(self, pairs: Sequence[Tuple[Data, Data]]) -> List[float]:
        raw = [(as_bytes(x, name="x"), as_bytes(y, name="y")) for x, y in pairs]
        by_x: Dict[bytes, List[int]] = {}
        for k, (x, _) in enumerate(raw):
            by_x.setdefault(x, []).append(k)
        out = [0.0] * len(raw)
        for x, idx in by_x.items():
            for k, c in zip(idx, self._shared([x + raw[k][1] for k in idx])):
                out[k] = c
        return out

    def conditional_bits_many(self, datas: Sequence[Data], context: Data) -> List[float]:
        """C(Y | X) = C(XY) - C(X) for each y, training through X's shared blocks once."""
        x = as_bytes(context, name="context")
        totals = self._shared([x] + [x + as_bytes(d) for d in datas])
        return [c - totals[0] for c in totals[1:]]

    # -- real coding -----------------------------------------------------------------------------
    def compress(self, data: Data) -> bytes:
        import constriction

        from ..lm.online import pack_payload
        from ..lm.threads import cpu_threads
        raw = as_bytes(data)
        eng = self.engine
        seq = self._seq(eng.learner.encode(raw))
        encoder = constriction.stream.queue.RangeEncoder()
        eng.reset()
        with self._bar(len(seq) - 1, "encoding") as bar:
            eng.run(seq, mode="encode", coder=encoder, bar=bar)
        crcs = [framing.crc32(eng.learner.decode(seq[s:e])) for s, e in eng.blocks(len(seq) - 1)]
        words = np.asarray(encoder.get_compressed(), dtype=np.uint32) if crcs else np.zeros(0, dtype=np.uint32)
        payload = pack_payload(len(seq) - 1, crcs, words, threads=cpu_threads(eng.learner.device))
        blob = framing.pack(self.name, self.stream_config, raw, payload)
        if self.verify:
            try:
                why = "" if self.decompress(blob) == raw else "it decodes to different bytes"
            except CorruptStreamError as exc:
                why = str(exc)
            if why:
                raise KolmoError(f"lm-online: the stream just written does not decode on this machine ({why}): "
                                 "the model's floats are not reproducible here (a nondeterministic GPU kernel?); "
                                 "use device='cpu'")
        return blob

    def decompress(self, blob: bytes) -> bytes:
        from ..lm.online import unpack_payload
        from ..lm.threads import using_threads
        eng = self.engine
        frame = framing.unpack(as_bytes(blob, name="blob"), name=self.name, config=self.stream_config)
        n, crcs, words, threads = unpack_payload(frame.payload, frame.length, lambda n: len(eng.blocks(n)))
        with using_threads(threads, eng.learner.device):
            return self._decode(frame, n, crcs, words)

    def _decode(self, frame, n: int, crcs, words) -> bytes:
        import constriction
        eng = self.engine
        seq = np.zeros(n + 1, dtype=np.int64)
        seq[0] = eng.learner.start
        if n == 0:
            return framing.check_output(frame, b"")

        def check(k: int, s: int, e: int) -> None:
            if framing.crc32(eng.learner.decode(seq[s:e])) != crcs[k]:
                raise CorruptStreamError(
                    f"lm-online stream: block {k} fails its CRC-32 check. Either the stream is corrupted, or "
                    "this machine computes the model's floats differently from the encoder (another device type, "
                    "CPU or library build): decode where it was encoded")

        eng.reset()
        try:
            decoder = constriction.stream.queue.RangeDecoder(words)
            with self._bar(n, "decoding") as bar:
                eng.run(seq, mode="decode", coder=decoder, on_block=check, bar=bar)
            exhausted = decoder.maybe_exhausted()
        except CorruptStreamError:
            raise
        except Exception as exc:  # the range decoder's own errors on garbage input
            raise CorruptStreamError(f"lm-online stream could not be decoded: {exc}") from exc
        if not exhausted:
            raise CorruptStreamError("lm-online stream: coded words remain after the last token (corrupted)")
        return framing.check_output(frame, eng.learner.decode(seq[1:]))

