"""The output-layer heads (kolmo.lm.scoring.head): every kind agrees with the float32 reference."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from kolmo.lm.scoring import head as H  # noqa: E402
from kolmo.lm.scoring.head import CCEHead, Head, LowPrecisionHead, choose_head_kind, make_head  # noqa: E402

NO_CUDA = "no CUDA device here: cut-cross-entropy's Triton kernels and mm(out_dtype=float32) need one"



def bits(head, h, targets):
    """-log2 p(target) for each row of ``h`` (n, H), as float64 numpy (n,)."""
    return head.bits_tensor(h, targets).cpu().numpy()


def probs(head, h):
    """Next-token distributions for each row of ``h`` (n, H), as float64 numpy (n, V)."""
    return torch.softmax(head.logits(h), dim=-1).double().cpu().numpy()

def exact_bits(h, weight, bias=None, softcap=None, targets=None):
    """-log2 softmax(W h + b)[t] in float64 from the same (bf16-valued) inputs."""
    h, weight = h.detach(), weight.detach()
    bias = None if bias is None else bias.detach()
    z = h.double() @ weight.double().T
    if bias is not None:
        z = z + bias.double()
    if softcap:
        z = torch.tanh(z / softcap) * softcap
    lp = torch.log_softmax(z, dim=-1)
    return (-lp.gather(1, targets[:, None])[:, 0] / np.log(2)).numpy()


class FakeLM:
    """Just what a head reads: an output layer (with a bias, maybe) and a config (softcap, maybe)."""

    def __init__(self, vocab=300, hidden=24, dtype=torch.bfloat16, bias=False, softcap=None, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.emb = torch.nn.Linear(hidden, vocab, bias=bias)
        with torch.no_grad():
            self.emb.weight.copy_(torch.randn(vocab, hidden, generator=g) * 0.5)
            if bias:
                self.emb.bias.copy_(torch.randn(vocab, generator=g))
        self.emb.to(dtype)
        self.config = type("Cfg", (), {"final_logit_softcapping": softcap})()

    def get_output_embeddings(self):
        return self.emb


def _hidden(n, hidden, dtype, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, hidden, generator=g) * 2.0).to(dtype)  # sharp distributions: large logits


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("bias,softcap", [(False, None), (True, None), (False, 7.0)])
@pytest.mark.parametrize("kind", ["float32", "bf16"])
def test_cpu_kinds_agree_with_reference(kind, dtype, bias, softcap):
    lm = FakeLM(dtype=dtype, bias=bias, softcap=softcap)
    head = make_head(lm, torch.device("cpu"), dtype, kind, head_chunk=300 * 7)  # 7 rows per chunk
    assert head.kind == kind
    h = _hidden(50, 24, dtype)
    t = torch.randint(0, 300, (50,), generator=torch.Generator().manual_seed(2))
    got = bits(head, h, t)
    ref = bits(Head(lm), h, t)
    assert got.dtype == np.float64 and got.shape == (50,)
    np.testing.assert_allclose(got, ref, atol=1e-3)
    np.testing.assert_allclose(got, exact_bits(h, lm.emb.weight, lm.emb.bias, softcap, t), atol=1e-3)
    assert ref.mean() > 0.5 and ref.std() > 0.5  # far from uniform: the comparison means something


def test_bf16_head_keeps_no_float32_weight_and_codes_like_the_reference():
    lm = FakeLM(dtype=torch.bfloat16)
    head = make_head(lm, torch.device("cpu"), torch.bfloat16, "bf16")
    h = _hidden(20, 24, torch.bfloat16)
    bits(head, h, torch.zeros(20, dtype=torch.long))
    assert head.weight.dtype == torch.bfloat16 and head.weight.data_ptr() == lm.emb.weight.data_ptr()
    assert head._w32 is None  # scoring made no float32 copy of the embedding
    # the coder's distributions are the reference's, bit for bit, whatever the kind
    np.testing.assert_array_equal(probs(head, h), probs(Head(lm), h))
    assert head._w32 is not None and head._w32.dtype == torch.float32


def test_empty_input():
    lm = FakeLM()
    for kind in ("float32", "bf16"):
        out = bits(make_head(lm, torch.device("cpu"), torch.bfloat16, kind), torch.zeros(0, 24, dtype=torch.bfloat16),
                                                                             torch.zeros(0, dtype=torch.long))
        assert out.shape == (0,)


def test_auto_selection_and_errors():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert choose_head_kind(cpu, torch.float32, None) == "float32"
    assert choose_head_kind(cpu, torch.bfloat16, None) == "float32"  # the CPU keeps the reference
    assert choose_head_kind(cuda, torch.float32, None) == "float32"
    assert choose_head_kind(cuda, torch.bfloat16, None) == "cce"
    assert choose_head_kind(cuda, torch.float16, None) == "cce"
    assert choose_head_kind(cuda, torch.bfloat16, "cut-cross-entropy is not importable") == "bf16"
    lm = FakeLM()
    assert make_head(lm, cpu, torch.bfloat16).kind == "float32"
    assert type(make_head(lm, cpu, torch.bfloat16, "bf16")) is LowPrecisionHead
    with pytest.raises(ValueError, match="CUDA"):
        make_head(lm, cpu, torch.bfloat16, "cce")
    with pytest.raises(ValueError, match="head must be"):
        make_head(lm, cpu, torch.bfloat16, "fp8")
    assert "bias" in H.cce_unavailable(FakeLM(bias=True), cuda, torch.bfloat16)
    assert "bf16/fp16" in H.cce_unavailable(lm, cuda, torch.float32)


def test_compiled_log_sum_exp_falls_back_with_a_warning(monkeypatch, caplog):
    def broken_compile(fn, **kw):
        def run(*a):
            raise RuntimeError("inductor could not build (simulated)")
        return run
    monkeypatch.setattr(torch, "compile", broken_compile)
    lm = FakeLM()
    head = make_head(lm, torch.device("cpu"), torch.bfloat16, "bf16", compile=True)
    h = _hidden(30, 24, torch.bfloat16)
    t = torch.randint(0, 300, (30,))
    with caplog.at_level("WARNING", logger="kolmo.lm.scoring.head"):
        got = bits(head, h, t)
    assert "compile" in caplog.text and "eagerly" in caplog.text and head._nll.failed
    np.testing.assert_allclose(got, bits(Head(lm), h, t), atol=1e-4)


def test_scorer_bf16_head_on_bf16_weights(tiny_model_dir):
    from kolmo.lm.scoring.loglik import Scorer
    from kolmo.lm.models.loading import load_model
    lm = load_model(str(tiny_model_dir), device="cpu", dtype="bfloat16", progress=False)
    rng = np.random.default_rng(0)
    seqs = [np.concatenate([[lm.start_id], rng.integers(1, lm.tokenizer.alphabet, n)]) for n in (5, 90, 140)]
    ref = Scorer(lm, window=64, stride=32, batch_tokens=500, head="float32")
    fast = Scorer(lm, window=64, stride=32, batch_tokens=500, head="bf16")
    assert (ref.head_kind, fast.head_kind) == ("float32", "bf16")
    assert Scorer(lm, window=64, stride=32, batch_tokens=500).head_kind == "float32"  # auto on a CPU
    assert fast.head.weight.dtype == torch.bfloat16
    for a, b, s in zip(ref.score(seqs, [1, 1, 1]), fast.score(seqs, [1, 1, 1]), seqs):
        assert len(a) == len(s) - 1
        np.testing.assert_allclose(b, a, atol=1e-3)
    ctx = rng.integers(1, lm.vocab_size, 10)
    for a, b in zip(ref.score_with_context(ctx, seqs[:2]), fast.score_with_context(ctx, seqs[:2])):
        np.testing.assert_allclose(b, a, atol=1e-3)


def fake_cce(e, c, targets, softcap=None, reduction="mean", impl="cce"):
    """cut-cross-entropy's linear_cross_entropy in torch, with its arithmetic: float32 log-sum-exp,
    target logit from elementwise bf16 products (each rounded to bf16) summed in float32."""
    assert reduction == "none" and impl == "cce" and e.dtype == c.dtype and e.is_contiguous()
    z = e.float() @ c.float().T
    z_t = (e * c[targets]).float().sum(-1)
    if softcap:
        z, z_t = torch.tanh(z / softcap) * softcap, torch.tanh(z_t / softcap) * softcap
    return torch.logsumexp(z, dim=-1) - z_t


@pytest.mark.parametrize("softcap", [None, 7.0])
def test_cce_head_takes_only_the_log_sum_exp_from_the_kernel(softcap):
    # On the CPU with cut-cross-entropy's arithmetic emulated: its own per-token answer is off by
    # the bf16 rounding of the target products; the head's (zero-row log-sum-exp, exact target
    # logit) agrees with the reference.
    lm = FakeLM(softcap=softcap)
    head = CCEHead(lm, fake_cce)
    h = _hidden(200, 24, torch.bfloat16)
    t = torch.randint(0, 300, (200,), generator=torch.Generator().manual_seed(3))
    want = exact_bits(h, lm.emb.weight, None, softcap, t)
    np.testing.assert_allclose(bits(head, h, t), want, atol=1e-3)
    library = (fake_cce(h, lm.emb.weight.detach(), t, softcap, "none") / np.log(2)).numpy()
    assert np.abs(library - want).max() > 3e-3  # what the library alone would have given
    assert head._w_zero.shape == (301, 24) and head._w_zero.dtype == torch.bfloat16 and head._w32 is None


def test_cce_head_recomputes_rows_with_tiny_partition_sums():
    lm = FakeLM()
    with torch.no_grad():
        lm.emb.weight.copy_(-(lm.emb.weight.abs() + 3))  # with h > 0 every logit is < -70: S ~ e^-70
    head = CCEHead(lm, fake_cce)
    h = _hidden(40, 24, torch.bfloat16).abs()
    t = torch.randint(0, 300, (40,))
    got = bits(head, h, t)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, exact_bits(h, lm.emb.weight, targets=t), atol=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
def test_bf16_head_on_cuda_uses_float32_output_matmul():
    lm = FakeLM(vocab=5000, hidden=64)
    lm.emb.cuda()
    head = make_head(lm, torch.device("cuda"), torch.bfloat16, "bf16")
    h = _hidden(300, 64, torch.bfloat16).cuda()
    t = torch.randint(0, 5000, (300,)).cuda()
    got = bits(head, h, t)
    assert H._MM_OUT_DTYPE.get("cuda", True), "torch.mm(out_dtype=float32) is missing on CUDA: the fallback is slow"
    np.testing.assert_allclose(got, exact_bits(h.cpu(), lm.emb.weight.cpu(), targets=t.cpu()), atol=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
def test_cce_head_on_cuda():
    pytest.importorskip("cut_cross_entropy", reason="cut-cross-entropy is not installed (pip install 'kolmo[gpu]')")
    lm = FakeLM(vocab=5000, hidden=64)
    lm.emb.cuda()
    head = make_head(lm, torch.device("cuda"), torch.bfloat16, "auto")
    assert isinstance(head, CCEHead) and head.kind == "cce"
    h = _hidden(2000, 64, torch.bfloat16).cuda()
    t = torch.randint(0, 5000, (2000,)).cuda()
    got = bits(head, h, t)
    ref = exact_bits(h.cpu(), lm.emb.weight.cpu(), targets=t.cpu())
    np.testing.assert_allclose(got, ref, atol=1e-3)


# -- CompiledOrEager: compiled code is used only where it agrees with the eager code -----------------

def _compiled_as(monkeypatch, fake):
    monkeypatch.setattr(torch, "compile", lambda fn, **options: fake)
    return H.CompiledOrEager(lambda x: x * 2.0, "test function", dynamic=True)


def test_compiled_code_that_agrees_is_kept(monkeypatch):
    fn = _compiled_as(monkeypatch, lambda x: x * 2.0 + 1e-7)  # float noise only
    x = torch.linspace(-3, 3, 50)
    for _ in range(3):
        got = fn(x)
        assert torch.equal(got, x * 2.0 + 1e-7)  # the compiled code's own result
    assert fn.failed is None and fn.compiled is not None


def test_compiled_code_that_disagrees_on_its_first_call_is_dropped(monkeypatch, caplog):
    fn = _compiled_as(monkeypatch, lambda x: x * 2.0 + 0.5)  # finite, and wrong
    x = torch.linspace(-3, 3, 50)
    with caplog.at_level("WARNING", logger="kolmo.lm.scoring.head"):
        got = fn(x)
    assert torch.equal(got, x * 2.0)  # the eager result, never the wrong one
    assert fn.compiled is None and "differs from the eager code's" in fn.failed and "largest difference" in fn.failed
    assert "test function" in caplog.text and "ATEN_CPU_CAPABILITY" in caplog.text
    assert torch.equal(fn(x), x * 2.0)


def test_compiled_code_that_turns_to_nan_later_is_dropped(monkeypatch):
    calls = []

    def fake(x):  # right on the first call, NaN everywhere afterwards (a stale cached graph)
        calls.append(1)
        return x * 2.0 if len(calls) == 1 else torch.full_like(x, float("nan"))
    fn = _compiled_as(monkeypatch, fake)
    x = torch.linspace(-3, 3, 50)
    assert torch.equal(fn(x), x * 2.0) and fn.failed is None
    assert torch.equal(fn(x), x * 2.0)
    assert fn.compiled is None and "non-finite" in fn.failed


def test_non_finite_values_of_the_function_itself_are_not_a_disagreement(monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda fn, **options: lambda x: torch.log(x) + 1e-7)
    fn = H.CompiledOrEager(torch.log, "log", dynamic=True)
    x = torch.tensor([-1.0, 0.0, 1.0, 2.0])  # log gives nan and -inf: in both codes
    got = fn(x)
    assert fn.failed is None and torch.isnan(got[0]) and got[1] == -math.inf
    fn(x)
    assert fn.failed is None and fn.compiled is not None
