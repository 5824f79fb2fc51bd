"""The learning language-model compressor ``lm-online``: prequential coding with training.

    lm = kolmo.get_compressor("lm-online")                      # SmolLM2-135M, full fine-tuning
    lm = kolmo.get_compressor("lm-online", adapter="lora")      # low-rank adapters (peft)
    lm = kolmo.get_compressor("lm-online", model="scratch")     # a byte transformer from nothing

The "lm" compressor conditions on X only through its window. This one *learns* while it codes:
the input's tokens are coded in blocks, block k under weights theta_k, then the model takes
``steps`` optimizer steps on block k to give theta_{k+1} (:mod:`kolmo.lm.coding.prequential`)::

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

``model="scratch"``, a byte transformer learning from nothing (:mod:`kolmo.lm.models.scratch`):

``layers``, ``width``, ``heads``, ``context``   its size (default 2, 128, 4, 128; window = context)
``ngram``, ``buckets``   hashed n-gram embeddings for n = 2 .. ngram (6) in a table of ``buckets``
                (2^20) rows; ``ngram=0`` turns them off. The default table and its Adam moments take
                1.5 GB of memory; ``buckets=1 << 16`` makes it 100 MB
``ngram_lr``    learning rate of that table (default NGRAM_LR_SCALE x ``lr``): the table starts at
                zero and is the model's fast memory (a row is updated only when its n-gram occurs),
                so it learns much faster than the transformer's dense weights
defaults: ``block_tokens`` 32, ``lr`` 3e-4, ``train_on`` "window" (measured in :mod:`kolmo.lm.settings`)

The mixture (:mod:`kolmo.lm.mixing.mixture`): ``mix`` a tuple of parts, each optional: "learner" (the
model above, learning), "fast" (a second copy of it on the same blocks, learning at ``fast_lr``,
default 3 x ``lr``: twice the learning's time and memory), "frozen" (the pretrained model untouched, in context), "ngram" (token
n-gram memory, one expert per order in ``ngram_orders``), "match" (a pointer into the past that keeps its
alignment through changed tokens, and the longest earlier repeat, context lengths ``match_lengths``), "cache" (a neural cache: the tokens that followed the earlier positions whose
frozen-model hidden states are most like the current one, weighted by exp(``cache_theta`` x cosine
similarity) over the last ``cache_size`` positions, None: all; :mod:`kolmo.lm.mixing.neural_cache`); mixed
per token (Soft-Bayes rate ``eta``, fixed ``share``; weight set chosen by
the match model's confidence with ``gate="match"``, one set with None; ``eta`` a tuple of rates, e.g.
``(0.1, 0.02, 1.0)``: one mixer per rate under a top Bayes mixer, :class:`kolmo.lm.mixing.mixer.MixerStack`). Default ``mix="auto"``, measured in
benchmarks/mix_bench.py: where the pretrained models compute in bf16 (``autocast``, below), every part
with ``cache_theta`` 200 and ``eta`` (0.1, 0.02, 1.0) unless given (:data:`kolmo.lm.settings.BF16_MIX`:
bf16 pays for the second learner); in float32 every part the model has but "fast" (scratch: no
"frozen", no "cache"). ``mix=None``: the learner alone.

Both:

``lr``          learning rate > 0; ``steps`` (default 1) optimizer steps per block, 0 turns
                learning off (the model stays theta_0: the same as coding with a frozen model)
``replay``      (default 0) after each block's steps, this many more, each on an earlier block
                drawn from ``seed`` (experience replay: more passes over what was coded, one
                forward and backward pass each; needs steps >= 1)
``optimizer``   "adam" (default), "adamw" or "sgd"; ``weight_decay`` (0); ``grad_clip`` (1.0:
                global gradient norm, None: off)
``train_on``    "block" (pretrained default: the loss is the block's tokens) or "window" (every
                token of the block's windows, so older tokens are replayed at no extra forward cost)
``seed``        seeds the scratch model's and the adapters' initialisation (default 0)
``device``, ``dtype``   "auto" (CUDA if present) and float32 (training in bfloat16 would lose
                small updates to rounding)
``autocast``    "auto" (default), "bfloat16" or None: pretrained models' products in bf16 under
                ``torch.autocast``, float32 weights, optimizer and head (:mod:`kolmo.lm.models.learners`):
                2.2 x faster where the CPU has bf16 instructions (avx512_bf16, AMX) or on a GPU,
                as fast as float32 with AVX-512 alone, 8.6 x slower with AVX2 alone (emulated);
                "auto" picks bfloat16 where the device has it in hardware
                (:func:`kolmo.lm.machine.native_bf16`), None elsewhere, and config names the
                choice; None: float32 everywhere. A bf16 stream decodes where bf16 runs as it did
                for the encoder (its float record says whether that was in hardware: refused up
                front elsewhere); a stream of the defaults from other hardware is refused with the
                option that decodes it; ``kolmo compress`` writes the resolved choice
``verify``      (default True) ``compress`` runs each block's coding schedule twice and stores a
                block whose tables differ in the safe mode (:mod:`kolmo.lm.coding.coder`). Not in
                ``config``: it changes no ideal code length.
``progress``    None (bars for long inputs), True, or False (silences everything, model loading too)

Streams: kolmo's container around the language models' payload (:mod:`kolmo.lm.coding.coder`, layout
:func:`kolmo.framing.pack_lm_payload`): the record of what the encoder's floats depended on
(:mod:`kolmo.lm.machine`), the token count and one rANS stream; the decoder decodes block k on
the same step schedule under theta_k, then takes the same optimizer steps. It needs the same
floats: device type, dtype and model (the configuration), thread count (the decoder uses the
recorded one), CPU kernel level and BLAS (checked before decoding: StreamMismatchError).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import framing
from .._version import __version__
from ..inputs import Data, as_bytes
from ..options import check_options
from .base import CodeParts
from .lm_streams import LMStreams

class OnlineLMCompressor(LMStreams):
    name = "lm-online"
    RETIRED = "payload format 0 (kolmo 0.3: a range coder and a CRC-32 per block)"
    bits_kind = "ideal"
    conditional_method = "learning"

    def __init__(self, model: Optional[str] = None, *, verify: bool = True, progress: Optional[bool] = None,
                 **options: Any):
        from ..lm.settings import OnlineSettings
        check_options(self.name, OnlineSettings, options, also=("verify", "progress"))
        self.settings = OnlineSettings(model, **options)
        if not isinstance(verify, bool):
            raise ValueError(f"verify must be True or False, got {verify!r}")
        self.verify, self.progress = verify, progress
        self._options = dict(options, model=model, verify=verify, progress=progress)
        self._prequential = None
        self._memo: "OrderedDict[bytes, float]" = OrderedDict()

    def __getattr__(self, key: str):  # the settings' values (lr, steps, adapter, ...) read through
        if key.startswith("_") or key == "settings":
            raise AttributeError(key)
        return getattr(self.settings, key)

    @property
    def prequential(self):
        """The :class:`~kolmo.lm.coding.prequential.Prequential` engine (loads the model on first use)."""
        if self._prequential is None:
            self._prequential = self.settings.build(self.progress)
        return self._prequential

    @property
    def coder(self):
        from ..lm.coding.coder import Coder
        e = self.prequential
        return Coder(e.coding_model, window=e.window, stride=e.stride, verify=self.verify, what="lm-online stream",
                      label="kolmo lm-online", progress=self.progress, bf16=self.settings.autocast is not None)

    @property
    def stream_config(self) -> Dict[str, Any]:
        return self.settings.stream_config(self.prequential)

    @property
    def config(self) -> Dict[str, Any]:
        import torch
        cfg = {**self.stream_config, "kolmo_version": __version__, "torch_version": torch.__version__}
        if self.settings.size is None:
            import transformers
            cfg["model"] = self.settings.model_label
            cfg["transformers_version"] = transformers.__version__
        if self.settings.adapter == "lora":
            import peft
            cfg["peft_version"] = peft.__version__
        return cfg

    def __repr__(self) -> str:
        s = self.settings
        return (f"<kolmo compressor lm-online (model={s.model_name or 'SmolLM2-135M-Instruct'}, adapter={s.adapter}, "
                f"lr={s.lr}, steps={s.steps})>")

    # -- tokens ----------------------------------------------------------------------------------
    def tokens(self, data: Data) -> np.ndarray:
        """The token ids that code ``data`` (bytes for ``model="scratch"``)."""
        return self.prequential.learner.encode(as_bytes(data))

    def _seq(self, ids: np.ndarray) -> np.ndarray:
        return np.concatenate([[self.prequential.learner.start], ids]).astype(np.int64)

    def _bar(self, total: int, desc: str):
        from .. import progress
        return progress.bar(total, f"kolmo lm-online: {desc}", "tok", self.progress, min_total=1024)

    # -- measures --------------------------------------------------------------------------------
    def block_bits(self, data: Data) -> np.ndarray:
        """Ideal code length of each block of ``data`` in bits (float64), block k under theta_k."""
        return np.asarray([b.sum() for b in self._token_bits(self._seq(self.tokens(data)))], dtype=np.float64)

    def _token_bits(self, seq: np.ndarray) -> List[np.ndarray]:
        eng = self.prequential
        eng.reset()
        with self._bar(len(seq) - 1, "learning") as bar:
            return eng.run(seq, bar=bar, per_token=True)

    def code_parts(self, data: Data, *, given: Optional[Data] = None, block: Optional[int] = None) -> CodeParts:
        """Per-token ideal code lengths of ``data``, learning from ``given`` first when it is given:
        the tokens of ``given + data`` (jointly tokenized) that spell bytes of ``data``, with their
        spans clipped to it (a token across the seam counts for ``data``). Alone they sum to
        ``bits(data)``; given X to C(XY) minus X's tokens' bits inside XY, which is
        ``conditional_bits`` = C(XY) - C(X) but for X's last block, whose windows end later inside
        XY (measured: within 0.1% on short inputs)."""
        from ..lm.models.tokens import token_spans
        if block is not None:
            raise ValueError(f"block applies to the codecs; the {self.name} compressor explains per token")
        raw = as_bytes(data)
        x = b"" if given is None else as_bytes(given, name="given")
        ids = self.tokens(x + raw)
        bits = np.concatenate(self._token_bits(self._seq(ids))) if len(ids) else np.zeros(0)
        spans = token_spans(self.prequential.learner.decode, ids, -len(x))
        keep = [k for k, (_, e) in enumerate(spans) if e > 0]
        return CodeParts(spans=[(max(spans[k][0], 0), spans[k][1]) for k in keep], bits=bits[keep], unit="token")

    def _shared(self, datas: Sequence[bytes]) -> List[float]:
        """Totals of inputs that share a prefix: train through their common whole blocks once."""
        from ..lm.coding.prequential import shared_runs
        import torch
        threads = torch.get_num_threads().to_bytes(2, "little")  # the floats depend on it (kolmo.lm.machine)
        keys = [hashlib.sha256(d).digest() + threads for d in datas]
        todo = [i for i, k in enumerate(keys) if k not in self._memo and k not in keys[:i]]
        if todo:
            seqs = [self._seq(self.tokens(datas[i])) for i in todo]
            with self._bar(sum(len(s) - 1 for s in seqs), "learning") as bar:
                for i, bits in zip(todo, shared_runs(self.prequential, seqs, bar)):
                    self._memo[keys[i]] = bits
                    while len(self._memo) > 4096:
                        self._memo.popitem(last=False)
        return [self._memo[k] for k in keys]

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
        """A real rANS-coded stream of ``data`` (verified block by block when ``verify``)."""
        raw = as_bytes(data)
        coder = self.coder
        payload = coder.compress_blocks(self.tokens(raw), self.prequential)
        self.safe_blocks = coder.safe  # (block, first diverging token) of the last compress
        return framing.pack(self.name, self.stream_config, raw, payload, checked=False)

    def resolved_options(self) -> Dict[str, Any]:
        """Options that choose this configuration on any machine: ``autocast`` as resolved here
        (``"auto"``, the default, picks by hardware, and ``mix="auto"`` follows it)."""
        return {"autocast": self.settings.autocast}

    def decompress(self, blob: bytes) -> bytes:
        frame = self.unpack(blob)
        return framing.check_output(frame, self.coder.decompress_blocks(frame.payload, frame.length, self.prequential))

    def format0_config(self) -> Dict[str, Any]:
        """The configuration payload format 0 wrote for these settings (a range coder, the old identity)."""
        cfg = {**{k: v for k, v in self.stream_config.items() if k != "payload"}, "codec": "lm-online-range-coder"}
        return {**cfg, **self.settings.legacy_fingerprint()}

    def other_hardware_default(self):
        if self._options.get("autocast", "auto") != "auto" or self.settings.size is not None:
            return None
        other = None if self.settings.autocast else "bfloat16"
        opts = {k: v for k, v in self._options.items() if k not in ("model", "verify", "progress")}
        alt = type(self.settings)(self.settings.model_name, **{**opts, "autocast": other})
        alt.fingerprint = self.settings.fingerprint
        if other:
            return alt.stream_config(self.prequential), (
                "this lm-online stream was written where the models compute in bf16 (autocast='bfloat16', the "
                "default on hardware with bf16; mix='auto' then adds the second learner), and this machine's "
                "default is float32: pass autocast='bfloat16' (`-O autocast=bfloat16`) to decode it; it decodes "
                "where bf16 runs as it did for the encoder (in hardware there: a CPU with avx512_bf16 or AMX, "
                "or the GPU)")
        return alt.stream_config(self.prequential), (
            "this lm-online stream was written in float32 (autocast=None, the default where the hardware has "
            "no bf16), and this machine's default is bf16: pass autocast=None (`-O autocast=none`) to decode it")
