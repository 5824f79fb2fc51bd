"""The output layer: hidden states -> code lengths (bits) of chosen tokens, never a [batch, time, vocab] tensor.

Three implementations ("kinds") of the same quantity, ``-log2 softmax(W h + b)[t]``:

``"float32"`` (:class:`Head`, the reference)
    A float32 copy of the output embedding (no copy when the weights are float32 already); rows of
    ``h`` in chunks of at most ``head_chunk`` logits, float32 logits, log-softmax, gather. The CPU's
    head, and the reference every other kind is tested against.

``"bf16"`` (:class:`LowPrecisionHead`, kolmo's own)
    Keeps the weight in the model's dtype (bf16 or fp16: no float32 copy). Per chunk of rows one
    matrix product with *float32 output*: on CUDA ``torch.mm(h, W.T, out_dtype=torch.float32)``
    (tensor cores, float32 accumulation, logits never rounded to bf16); where that overload is
    missing (the CPU, torch < 2.8) the same arithmetic is emulated by upcasting ``h`` and the
    weight for the call (slow; used by the tests only: ``"auto"`` never picks this kind there).
    Then ``logsumexp(z) - z[t]`` in float32 (no log-softmax tensor is written).

    Error analysis. Products of two bf16 (or fp16) numbers are exact in float32 (8 + 8 significant
    bits <= 24; fp16: 11 + 11 <= 24), so a logit differs from the reference's only by float32
    summation order: both are within ``H u sum_i |h_i w_i|`` of the exact value (``u = 2^-24``;
    random-sign rounding makes it about ``sqrt(H) u sum_i |h_i w_i|`` in practice). For H = 576
    and ``sum |h_i w_i| <= 100`` that is at most 3.4e-3 nats in the worst case and ~1.4e-4 nats
    typically, the same as the reference's own float32 error. A token's code length
    ``(lse(z) - z_t) / ln 2`` moves by at most twice the largest logit error plus float32
    rounding of the log-sum-exp (~1e-6 relative), so agreement with the reference is ~1e-4 bits
    per token typically, far inside the 1e-3 relative goal on bits per byte. (Rounding the logits
    to bf16 instead, as a plain bf16 matmul does, costs up to ``|z| 2^-9``: 0.04 nats for a logit
    of 20, which is why this head never does that.)

``"cce"`` (:class:`CCEHead`, CUDA only, optional dependency ``cut-cross-entropy``)
    Apple's Cut Cross-Entropy Triton kernel fuses the matrix product and the log-sum-exp (bf16
    inputs, float32 accumulators, float32 log-sum-exp): no logits ever reach global memory. kolmo
    takes only the log-sum-exp from it. The library's own target logit is a sum of elementwise
    bf16 products, each rounded to bf16: on SmolLM2-135M's hidden states (1000 tokens of English)
    that is an error of 0.023 bits per token (std), up to 0.1 bits, unbiased (-7e-5 on the total). So the
    head asks for the loss of an appended all-zero row of the weight, whose logit is exactly 0 in
    any arithmetic: the kernel returns ``L = ln(S + 1)`` with ``S = sum_v exp(z_v)``, then
    ``ln S = L + ln(1 - e^-L)`` in float64, and the target logit is computed here like the bf16
    head's (exact products, float32 sum). The step from ``L`` to ``ln S`` multiplies ``L``'s float32
    error by ``(S + 1) / S``: at most 2 when ``S >= 1`` (any logit >= 0, as in every trained LM);
    rows with ``L < 0.01`` (``S < 0.01``) are recomputed by the bf16 path. So this head has the bf16
    head's accuracy (float32 log-sum-exp, ~1e-6 relative). Costs: a second copy of the weight in its
    own dtype with the zero row (56 MB for SmolLM2-135M), no float32 copy. The kernel's reductions
    use atomics, so repeated runs differ at float32 noise. Not available for heads with a bias.

``make_head(lm, device, dtype, kind="auto")`` picks: on CUDA with bf16/fp16 weights ``"cce"`` when
cut-cross-entropy imports and the head has no bias, else ``"bf16"``; everywhere else ``"float32"``.
The chosen kind is the head's ``kind`` attribute (and the Scorer's ``head_kind``).

Whatever the kind, :meth:`Head.logits` and :meth:`Head.probs` (the arithmetic coder's
distributions) are the reference's float32 computation, so coded streams never depend on the
kind; a low-precision head makes its float32 weight copy only when first asked for probabilities.
Library investigated and not used: liger-kernel's fused linear cross-entropy rounds each chunk's
logits to the weight's dtype (bf16) before its float32 softmax, calls ``.item()`` on every call and
allocates gradient buffers in its forward; cut-cross-entropy keeps the logits in float32 registers.
"""

from __future__ import annotations

import logging
import math
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from ..models.frozen import softcap

LN2 = math.log(2.0)
HEAD_KINDS = ("float32", "bf16", "cce")
LOW_PRECISION = (torch.bfloat16, torch.float16)
log = logging.getLogger(__name__)


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


class CompiledOrEager:
    """``torch.compile(fn)`` that falls back to ``fn`` for good, with a logged warning, if compiling
    or running the compiled code fails, or if its numbers cannot be trusted (out-of-memory errors
    propagate: the caller backs off).

    Trust is checked, not assumed: compiled code can be wrong without failing. (Measured with torch
    2.13 on an AVX-512 CPU: a graph that inductor's FX graph cache saved in a process of the default
    kernel level returns NaN everywhere when loaded by a process run with
    ``ATEN_CPU_CAPABILITY=avx2``; the cache's key does not hold the kernel level.) So the first
    compiled call is compared with ``fn`` on the same input (a tensor result must agree within
    ``rtol`` of the eager result's largest magnitude, and be finite where it is), and every later
    tensor result that holds a NaN or an infinity is computed again by ``fn``: where ``fn``'s is
    finite, the compiled code is dropped. A wrong result that stays finite after a first call that
    agreed would pass: this guards against broken builds and caches, not against a kernel that
    miscomputes some shapes only."""

    def __init__(self, fn: Callable, name: str, *, rtol: float = 1e-3, **options):
        self.fn, self.name, self.rtol = fn, name, rtol
        self.failed: Optional[str] = None
        self._checked = False
        try:
            self.compiled = torch.compile(fn, **options)
        except Exception as exc:  # torch.compile itself unavailable (e.g. an unsupported Python)
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        self.failed = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        self.compiled = None
        log.warning("kolmo: torch.compile of the %s failed (%s); running it eagerly (same numbers up to "
                    "float rounding)", self.name, self.failed)

    def __call__(self, *args):
        if self.compiled is not None:
            try:
                got = self.compiled(*args)
            except Exception as exc:
                if is_oom(exc):
                    raise
                self._fail(exc)
            else:
                if not isinstance(got, torch.Tensor):
                    return got
                if self._checked and bool(torch.isfinite(got).all()):
                    return got
                want = self.fn(*args)
                why = self._disagreement(got, want)
                if why is None:
                    self._checked = True
                    return got
                self._fail(RuntimeError(f"the compiled code's result differs from the eager code's ({why}); "
                                        "a stale torch.compile cache (TORCHINDUCTOR_CACHE_DIR) made under "
                                        "another ATEN_CPU_CAPABILITY can do this"))
                return want
        return self.fn(*args)

    def _disagreement(self, got: torch.Tensor, want: torch.Tensor) -> Optional[str]:
        """None where ``got`` (compiled) may stand for ``want`` (eager), else what differs."""
        if got.shape != want.shape:
            return f"shape {tuple(got.shape)} against {tuple(want.shape)}"
        fin = torch.isfinite(want)
        if not bool(torch.equal(torch.isfinite(got), fin)):
            return "non-finite values where the eager result has finite ones, or the other way"
        if not bool(fin.any()):
            return None
        g, w = got[fin].double(), want[fin].double()
        err, scale = float((g - w).abs().max()), float(w.abs().max())
        if err > self.rtol * max(scale, 1.0):
            return f"largest difference {err:.3g} against a largest magnitude {scale:.3g}"
        return None


def _nll(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """-ln softmax(z)[t] per row: (c, V) float32 logits, (c,) targets -> (c,) float32 nats."""
    return torch.logsumexp(z, dim=-1) - z.gather(1, t[:, None])[:, 0]


_MM_OUT_DTYPE: dict = {}  # device type -> whether torch.mm(..., out_dtype=float32) works there


def matmul_f32(h: torch.Tensor, w: torch.Tensor, w32: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``h @ w.T`` as float32 with float32 accumulation, for ``h`` (n, H) and ``w`` (V, H) in one dtype.

    Low-precision inputs use ``torch.mm(out_dtype=float32)`` where the device has it; elsewhere
    ``w32`` (``w`` upcast, given by the caller) or a per-call upcast gives the same arithmetic.
    """
    if h.dtype == torch.float32 and w.dtype == torch.float32:
        return F.linear(h, w)
    dev = h.device.type
    if _MM_OUT_DTYPE.get(dev, dev == "cuda"):
        try:
            return torch.mm(h, w.t(), out_dtype=torch.float32)
        except Exception as exc:  # an older torch, or a backend without the overload
            if is_oom(exc):
                raise
            _MM_OUT_DTYPE[dev] = False
            log.warning("kolmo: torch %s has no mm(out_dtype=float32) on %s (%s); the bf16 head upcasts "
                        "its weight per call instead (same numbers, slower)", torch.__version__, dev,
                        str(exc).splitlines()[0][:200])
    return F.linear(h.float(), w32 if w32 is not None else w.float())


class Head:
    """The output layer in float32 chunks: hidden states -> log2-probabilities of chosen tokens."""

    kind = "float32"

    def __init__(self, lm, head_chunk: int = 1 << 24, keep_dtype: bool = False):
        emb = lm.get_output_embeddings()
        # (V, H) in float32 (no copy when already float32), or in the model's dtype (keep_dtype)
        self.weight = emb.weight.detach() if keep_dtype else emb.weight.detach().float()
        bias = getattr(emb, "bias", None)
        self.bias = None if bias is None else bias.detach().float()
        self.softcap = getattr(lm.config, "final_logit_softcapping", None)
        self.vocab = self.weight.shape[0]
        self.rows = max(1, head_chunk // self.vocab)

    def _weight32(self) -> torch.Tensor:
        return self.weight

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        z = F.linear(h.float(), self._weight32(), self.bias)  # (n, V) float32
        return softcap(z, self.softcap)

    def bits_tensor(self, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """-log2 p(target) for each row of ``h`` (n, H): float64 (n,) on ``h``'s device, no host sync."""
        parts = []
        for i in range(0, h.shape[0], self.rows):
            lp = torch.log_softmax(self.logits(h[i:i + self.rows]), dim=-1)  # (c, V)
            picked = lp.gather(1, targets[i:i + self.rows, None])[:, 0]  # (c,)
            parts.append(-picked.double() / LN2)
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64, device=h.device)


class LowPrecisionHead(Head):
    """Kind ``"bf16"``: the weight stays in the model's dtype; float32-output matrix products in
    chunks of rows, then log-sum-exp minus the target logit (see the module docstring)."""

    kind = "bf16"

    def __init__(self, lm, head_chunk: int = 1 << 25, compile: bool = False):
        super().__init__(lm, head_chunk, keep_dtype=True)  # the weight in the model's dtype: no float32 copy
        self._w32: Optional[torch.Tensor] = None
        self._nll = CompiledOrEager(_nll, "head's log-sum-exp", dynamic=True) if compile else _nll

    def _weight32(self) -> torch.Tensor:
        # only the coder's probabilities need it (identical to the reference's); made on first use
        if self._w32 is None:
            self._w32 = self.weight.float()
        return self._w32

    def bits_tensor(self, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        h = h.to(self.weight.dtype)
        w32 = None
        if self.weight.dtype != torch.float32 and not _MM_OUT_DTYPE.get(h.device.type, h.device.type == "cuda"):
            w32 = self._w32 if self._w32 is not None else self.weight.float()  # for this call only
        parts = []
        for i in range(0, h.shape[0], self.rows):
            z = matmul_f32(h[i:i + self.rows], self.weight, w32)  # (c, V) float32
            if self.bias is not None:
                z += self.bias
            z = softcap(z, self.softcap)
            parts.append(self._nll(z, targets[i:i + self.rows]).double() / LN2)
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64, device=h.device)


class CCEHead(LowPrecisionHead):
    """Kind ``"cce"``: the log-sum-exp from cut-cross-entropy's fused Triton kernel, the target
    logit computed exactly (CUDA; see the module docstring)."""

    kind = "cce"
    MIN_LSE = 0.01  # rows whose ln(S + 1) is below this are recomputed by the bf16 path

    def __init__(self, lm, linear_cross_entropy: Callable):
        super().__init__(lm)
        if self.bias is not None:
            raise ValueError("cut-cross-entropy has no bias term; use head='bf16' for this model")
        self._lce = linear_cross_entropy
        zero = self.weight.new_zeros((1, self.weight.shape[1]))
        self._w_zero = torch.cat([self.weight, zero])  # (V + 1, H): row V has logit exactly 0

    def bits_tensor(self, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        n = h.shape[0]
        if n == 0:
            return torch.zeros(0, dtype=torch.float64, device=h.device)
        h = h.to(self.weight.dtype).contiguous()
        zero_row = torch.full((n,), self.vocab, dtype=torch.long, device=h.device)
        lse1 = self._lce(h, self._w_zero, zero_row, softcap=self.softcap or None, reduction="none",
                         impl="cce").double()  # (n,) ln(S + 1) nats
        lse = lse1 + torch.log1p(-torch.exp(-lse1))  # ln S
        z_t = (h.float() * self.weight[targets].float()).sum(-1)  # (n,) exact products, float32 sum
        z_t = softcap(z_t, self.softcap)
        bits = (lse - z_t.double()) / LN2
        low = torch.nonzero(lse1 < self.MIN_LSE)[:, 0]
        if len(low):  # S < 0.01: ln(1 - e^-L) would amplify L's rounding; exact path for these rows
            bits[low] = LowPrecisionHead.bits_tensor(self, h[low], targets[low])
        return bits


def _cce_function():
    """cut-cross-entropy's ``linear_cross_entropy``, or a string saying why it cannot be used."""
    try:
        from cut_cross_entropy import linear_cross_entropy
    except Exception as exc:  # not installed, or its Triton import failed
        return (f"cut-cross-entropy is not importable ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                "install it with `pip install 'kolmo[gpu]'`")
    return linear_cross_entropy


def cce_unavailable(lm, device, dtype) -> Optional[str]:
    """Why the ``"cce"`` head cannot serve this model here, or None if it can."""
    if torch.device(device).type != "cuda":
        return "cut-cross-entropy's Triton kernels need a CUDA device"
    if dtype not in LOW_PRECISION:
        return f"cut-cross-entropy is used for bf16/fp16 weights only, not {dtype}"
    if getattr(lm.get_output_embeddings(), "bias", None) is not None:
        return "cut-cross-entropy has no bias term and this model's head has one"
    fn = _cce_function()
    return fn if isinstance(fn, str) else None


def choose_head_kind(device, dtype, cce_reason: Optional[str]) -> str:
    """The ``"auto"`` rule: on CUDA with bf16/fp16 weights ``"cce"`` if usable (``cce_reason`` is
    None) else ``"bf16"``; otherwise the float32 reference."""
    if torch.device(device).type == "cuda" and dtype in LOW_PRECISION:
        return "cce" if cce_reason is None else "bf16"
    return "float32"


def make_head(lm, device, dtype=None, kind: str = "auto", *, compile: bool = False,
              head_chunk: Optional[int] = None) -> Head:
    """The output layer of ``lm`` (on ``device``, weights in ``dtype``) as a head of ``kind``.

    ``kind``: ``"auto"`` (see :func:`choose_head_kind`), ``"float32"``, ``"bf16"`` or ``"cce"``.
    Asking for ``"cce"`` where it cannot run raises ValueError with the reason. ``compile`` compiles
    the bf16 head's log-sum-exp (falls back to eager with a warning). The result's ``kind``
    attribute is the kind chosen.
    """
    if dtype is None:
        dtype = lm.get_output_embeddings().weight.dtype
    if kind not in ("auto",) + HEAD_KINDS:
        raise ValueError(f"head must be 'auto' or one of {HEAD_KINDS}, got {kind!r}")
    reason = None
    if kind in ("auto", "cce"):
        reason = cce_unavailable(lm, device, dtype)
        if kind == "cce" and reason is not None:
            raise ValueError(f"head='cce' is unavailable: {reason}")
        if kind == "auto":
            kind = choose_head_kind(device, dtype, reason)
            if kind == "bf16":
                log.info("kolmo: head 'bf16' (cce unavailable: %s)", reason)
    if kind == "float32":
        return Head(lm) if head_chunk is None else Head(lm, head_chunk)
    if kind == "bf16":
        return LowPrecisionHead(lm, compile=compile, **({} if head_chunk is None else {"head_chunk": head_chunk}))
    return CCEHead(lm, _cce_function())
