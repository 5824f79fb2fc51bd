"""The learning compressor lm-online: prequential code lengths, learning, conditioning and streams.
The learner alone (``mix=None``); tests/test_mixture.py tests the default, a mixture around it.

Tiny models only (the scratch byte transformer with 2 layers of width 32, and tests/tiny_lm.py's
random Llama), one torch thread (faster for tiny tensors on a shared machine; restored after).
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import kolmo  # noqa: E402
from kolmo import framing  # noqa: E402
from kolmo.cache import config_hash  # noqa: E402
from kolmo.errors import CorruptStreamError, StreamMismatchError  # noqa: E402

TEXT = (b"In the beginning God created the heaven and the earth. And the earth was without form, and void; "
        b"and darkness was upon the face of the deep. ")
SCRATCH = dict(model="scratch", layers=2, width=32, heads=4, context=64, ngram=0, block_tokens=32, lr=3e-3,
               train_on="block", progress=False, mix=None)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def scratch(**kw):
    return kolmo.get_compressor("lm-online", **{**SCRATCH, **kw})


@pytest.fixture
def tiny(tiny_model_dir):
    def make(**kw):
        opts = dict(model=str(tiny_model_dir), window=48, block_tokens=16, lr=1e-2, progress=False, mix=None)
        return kolmo.get_compressor("lm-online", **{**opts, **kw})
    return make


def reference_block_bits(comp, data):
    """Block k scored separately under theta_k: the weights are saved before each block, then each
    block is scored again from its saved weights with full float64 log-softmax (slow, obvious)."""
    eng = comp.prequential
    lr = eng.learner
    seq = comp._seq(comp.tokens(data))
    blocks = eng.blocks(len(seq) - 1)
    eng.reset()
    thetas = []
    for k in range(len(blocks)):
        thetas.append([p.detach().clone() for p in eng.params])
        eng.run(seq, first_block=k, stop_block=k + 1)
    out = []
    with torch.no_grad():
        for (s, e), theta in zip(blocks, thetas):
            for p, t in zip(eng.params, theta):
                p.copy_(t)
            b = max(0, e - eng.window)  # one window per block: block_tokens <= stride
            h, _ = lr.advance(lr.inputs(seq[b:e])[None])
            head = lr.module.get_output_embeddings() if hasattr(lr.module, "get_output_embeddings") else lr.module.head
            logp = torch.log_softmax(head(h[0]).double(), dim=-1)[s - b - 1:e - b - 1]
            out.append(float(-logp.gather(1, torch.from_numpy(seq[s:e])[:, None]).sum()) / np.log(2))
    return np.array(out)


@pytest.mark.parametrize("which", ["scratch", "tiny"])
def test_prequential_sum_is_block_by_block_coding(which, tiny):
    comp = scratch() if which == "scratch" else tiny()
    data = TEXT * 2
    got = comp.block_bits(data)
    ref = reference_block_bits(comp, data)
    assert len(got) >= 4
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-2)
    assert comp.bits(data) == pytest.approx(ref.sum(), rel=1e-5)
    # the same per-token floats summed in another order (per block, then blocks; or all at once):
    # equal to float64 rounding, not bit for bit (exact equality held on one CPU by chance and
    # failed under AVX-512 kernels)
    assert comp.bits(data) == pytest.approx(float(got.sum()), rel=1e-12)


def test_deterministic_two_instances():
    a, b = scratch(), scratch()
    assert a.bits(TEXT) == b.bits(TEXT)
    assert a.compress(TEXT) == b.compress(TEXT)
    assert scratch(seed=1).bits(TEXT) != a.bits(TEXT)  # the seed sets the initialisation


@pytest.mark.parametrize("data", [b"", b"x", TEXT[:40], bytes(range(256)), TEXT * 3])
def test_round_trip_scratch(data):
    comp = scratch(steps=2)
    blob = comp.compress(data)  # verify=True: compress already decoded it once
    assert comp.decompress(blob) == data
    assert comp.bits(b"") == 0.0


def assert_steps_match_full_forward(model, ids):
    """One-token steps with the KV cache give the batched forward's hidden states (to rounding)."""
    with torch.no_grad():
        full, _ = model(ids)
        h, past = model(ids[:, :7], use_cache=True)
        steps = [h]
        for t in range(7, ids.shape[1]):
            h, past = model(ids[:, t:t + 1], past=past, use_cache=True)
            steps.append(h)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_scratch_kv_cache_matches_full_forward():
    from kolmo.lm.models.scratch import START, ByteTransformer
    model = ByteTransformer(layers=2, width=32, heads=4, context=64, ngram=4, buckets=257, seed=3)
    assert_steps_match_full_forward(model, torch.tensor([[START] + list(TEXT[:40])]))


def test_round_trip_scratch_ngram_and_size():
    comp = scratch(ngram=4, buckets=1024, train_on="window")
    data = TEXT * 3
    blob = comp.compress(data)
    assert comp.decompress(blob) == data
    payload = len(framing.unpack(blob, name="lm-online", config=comp.stream_config).payload)
    # within 2% + 32 bytes of the ideal code length: no per-block checks
    assert abs(payload - comp.bits(data) / 8) <= 0.02 * comp.bits(data) / 8 + 32
    assert comp.bits(data) < scratch().bits(data)  # the n-gram table learns fast


def test_round_trip_tiny_hf_and_size(tiny, rng_bytes):
    comp = tiny()
    for data in (b"", TEXT * 2, rng_bytes(150, seed=3) + b"\x04\xff text"):
        blob = comp.compress(data)
        assert comp.decompress(blob) == data
    data = TEXT * 2
    payload = len(framing.unpack(comp.compress(data), name="lm-online", config=comp.stream_config).payload)
    # within 2% + 32 bytes of the ideal code length: no per-block checks
    assert abs(payload - comp.bits(data) / 8) <= 0.02 * comp.bits(data) / 8 + 32


def test_lora_adapters(tiny):
    pytest.importorskip("peft")
    comp = tiny(adapter="lora", lora_rank=4, lr=3e-2, steps=2)
    data = TEXT * 2
    assert comp.decompress(comp.compress(data)) == data
    cfg = comp.config
    assert cfg["adapter"] == "lora" and cfg["lora_rank"] == 4 and "peft_version" in cfg
    frozen = tiny(steps=0).bits(data)
    assert comp.bits(data) < frozen  # the adapters learn
    assert tiny(adapter="lora", lora_rank=4, lr=3e-2, steps=2).bits(data) == comp.bits(data)


def test_conditional_is_joint_minus_single(tiny):
    x, y, z = TEXT, b"and the Spirit of God moved upon the face of the waters. " * 2, b""
    comp = tiny()
    fresh = tiny()
    c_x, c_xy = fresh.bits(x), fresh.bits(x + y)
    assert comp.conditional_bits(y, x) == c_xy - c_x
    assert comp.conditional_bits_many([y, z, x], x) == [c_xy - c_x, 0.0, tiny().bits(x + x) - c_x]
    assert tiny().joint_bits([(x, y), (x, z), (y, x)]) == [c_xy, c_x, tiny().bits(y + x)]
    r = kolmo.joint_gap(x, y, compressor=comp)
    assert r.conditional_method == "learning" and r.bits_kind == "ideal" and not r.warnings
    assert r.c_y_given_x == r.c_xy - r.c_x and r.c_x_given_y == r.c_yx - r.c_y
    assert kolmo.ncd(x, y, compressor=comp) == r.ncd


def test_shared_runs_reports_each_run_and_sums_its_blocks():
    from kolmo.lm.coding.prequential import shared_runs
    comp = scratch()
    x, y = TEXT * 2, b"and the Spirit of God moved upon the face of the waters. "
    seqs = [comp._seq(comp.tokens(x)), comp._seq(comp.tokens(x + y))]
    seen = []
    totals = shared_runs(comp.prequential, seqs, on_run=lambda key, bits: seen.append((key, sum(bits))))
    assert [k for k, _ in seen] == ["head", 0, 1]  # x and xy share whole blocks: one head run, then each
    head = seen[0][1]
    # sum(head + tail) against sum(head) + sum(tail): the same floats added in another order, equal
    # to rounding (a few ulps), not bit for bit
    assert head > 0 and totals == pytest.approx([head + seen[1][1], head + seen[2][1]], rel=1e-12, abs=0)
    assert totals == [scratch().bits(x), scratch().bits(x + y)]
    seen.clear()
    shared_runs(comp.prequential, [comp._seq(comp.tokens(b"")), seqs[1]], on_run=lambda key, bits: seen.append(key))
    assert seen == [0, 1]  # nothing shared: no head run


def test_matrix_entries_equal_joint_gap(tmp_path):
    items = {"a": TEXT[:60], "b": TEXT[40:120], "c": bytes(range(50))}
    comp = scratch()
    cache = tmp_path / "r.sqlite"
    m = kolmo.matrix(items, compressor=comp, measure="conditional", cache=cache, progress=False)
    g = kolmo.matrix(items, compressor=comp, measure="gap", cache=cache, progress=False)
    for i in items:
        for j in items:
            r = kolmo.joint_gap(items[j], items[i], compressor=scratch())  # X = column, Y = row
            assert m[i, j] == r.c_y_given_x  # C(row | column)
            assert g[j, i] == r.gap
    warm = kolmo.matrix(items, compressor=scratch(), measure="conditional", cache=cache, progress=False)
    np.testing.assert_array_equal(np.asarray(warm), np.asarray(m))


def test_config_is_the_cache_key():
    a, b = scratch(lr=1e-3), scratch(lr=2e-3)
    assert a.config["lr"] == 1e-3 and a.config["model"] == "scratch" and a.config["block_tokens"] == 32
    assert config_hash(a.config) != config_hash(b.config)
    assert config_hash(a.config) == config_hash(scratch(lr=1e-3).config)
    for key in ("optimizer", "steps", "seed", "window", "stride", "grad_clip", "dtype", "device_type", "layers"):
        assert key in a.config
    with pytest.raises(StreamMismatchError):
        b.decompress(a.compress(TEXT[:30]))


def test_the_coding_steps_are_in_the_config(monkeypatch):
    """A scratch stream names the steps that computed its floats (the compiled ones on a CPU); a
    stream made with other steps is refused before decoding, not decoded wrong."""
    from kolmo.lm.models import scratch_steps
    a = scratch()
    assert a.config["coding_steps"] == scratch_steps.COMPILED_STEPS
    assert scratch(dtype="bfloat16").config["coding_steps"] == "forward"
    blob = a.compress(TEXT[:30])
    monkeypatch.setattr(scratch_steps, "COMPILED_STEPS", "kolmo.lm.kernels/0")
    other = scratch()
    assert other.config["coding_steps"] == "kolmo.lm.kernels/0"
    with pytest.raises(StreamMismatchError):
        other.decompress(blob)


def test_a_stream_decodes_under_another_thread_count():
    """CPU floats depend on torch's thread count: the stream records the encoder's, the decoder uses it."""
    comp = scratch(ngram=3, buckets=1 << 10, verify=False)
    torch.set_num_threads(2)
    try:
        blob = comp.compress(TEXT * 3)
    finally:
        torch.set_num_threads(1)
    assert comp.decompress(blob) == TEXT * 3
    assert torch.get_num_threads() == 1  # the caller's count is restored


def test_ngram_table_starts_at_zero_and_learns_at_its_own_rate():
    from kolmo.lm.settings import NGRAM_LR_SCALE
    comp = scratch(ngram=3, buckets=1 << 10)
    assert comp.config["ngram_lr"] == NGRAM_LR_SCALE * 3e-3
    assert scratch(ngram=3, buckets=1 << 10, ngram_lr=0.5).config["ngram_lr"] == 0.5
    assert "ngram_lr" not in scratch().config  # ngram=0: no table
    assert config_hash(comp.config) != config_hash(scratch(ngram=3, buckets=1 << 10, ngram_lr=0.5).config)
    table = comp.prequential.learner.module.hashed.weight
    assert not table.detach().any()
    slow, fast = scratch(ngram=3, buckets=1 << 10, ngram_lr=1e-6), scratch(ngram=3, buckets=1 << 10, ngram_lr=3e-2)
    for c in (slow, fast):
        c.bits(TEXT * 2)
    moved = [float(c.prequential.learner.module.hashed.weight.detach().abs().max()) for c in (slow, fast)]
    assert 0 < moved[0] < 1e-4 < 1e-2 < moved[1]
    assert fast.bits(TEXT * 2) < slow.bits(TEXT * 2)  # a repeated text: the fast memory pays


@pytest.mark.parametrize("opts,match", [
    (dict(lr=0), "lr must be a positive"), (dict(lr=-1e-3), "lr must be a positive"),
    (dict(lr=float("nan")), "lr must be"), (dict(block_tokens=0), "block_tokens must be a positive"),
    (dict(optimizer="rmsprop"), "optimizer must be one of adam, adamw, sgd"),
    (dict(steps=-1), "steps must be a non-negative"), (dict(adapter="lora"), "applies to pretrained"),
    (dict(width=30, heads=4), "multiple of heads"), (dict(dtype="int8"), "dtype must be"),
    (dict(grad_clip=0), "grad_clip"), (dict(weight_decay=-1), "weight_decay"),
    (dict(ngram_lr=-1e-2), "ngram_lr must be a positive")])
def test_bad_options_raise(opts, match):
    with pytest.raises(ValueError, match=match):
        scratch(**opts)


def test_bad_options_for_pretrained(tiny):
    with pytest.raises(ValueError, match="size of model='scratch'"):
        tiny(layers=2)
    with pytest.raises(ValueError, match="adapter must be"):
        tiny(adapter="ia3")
    with pytest.raises(ValueError, match="no such table"):
        tiny(ngram_lr=1e-2)
    with pytest.raises(ValueError, match="window"):
        tiny(window=4096).bits(b"x")


def test_corrupt_stream_raises(rng_bytes):
    comp = scratch()
    data = TEXT * 2
    blob = comp.compress(data)
    payload = bytearray(framing.unpack(blob, name="lm-online", config=comp.stream_config).payload)
    for pos in (len(payload) - 5, len(payload) // 2 + 3):
        bad = bytearray(payload)
        bad[pos] ^= 0x10
        with pytest.raises(CorruptStreamError):
            comp.decompress(framing.pack("lm-online", comp.stream_config, data, bytes(bad)))
    for cut in (bytes(payload[:-4]), bytes(payload[:3]), b"", bytes(payload[:-1])):
        with pytest.raises(CorruptStreamError):
            comp.decompress(framing.pack("lm-online", comp.stream_config, data, cut))


def test_learning_helps_on_repetitive_input():
    data = TEXT * 5  # 32-byte blocks: ~20 blocks, the text repeats every ~4
    learned = scratch(steps=2).block_bits(data)
    frozen = scratch(steps=0).block_bits(data)
    assert learned[0] == pytest.approx(frozen[0], rel=1e-6)  # block 0 is coded before any learning
    assert learned[-5:-1].mean() < 0.6 * frozen[-5:-1].mean()
    assert learned[-5:-1].mean() < 0.6 * learned[0]


def test_registered_pickles_and_quiet(capsys):
    import pickle
    assert "lm-online" in kolmo.list_compressors()
    comp = scratch()
    clone = pickle.loads(pickle.dumps(comp))
    assert clone.bits(TEXT) == comp.bits(TEXT)
    comp.compress(TEXT)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    assert "lm-online" in repr(comp)


def test_streams_of_the_old_payload_format_are_refused_by_name():
    """kolmo 0.3's lm-online streams (a range coder, a CRC-32 per block) are refused, naming the format."""
    comp = scratch()
    old = {**{k: v for k, v in comp.stream_config.items() if k != "payload"}, "codec": "lm-online-range-coder"}
    blob = framing.pack("lm-online", old, TEXT, b"\x02\x10" + bytes(12))
    with pytest.raises(kolmo.StreamMismatchError, match="payload format 0"):
        comp.decompress(blob)


def test_a_block_that_fails_verification_goes_to_the_safe_mode(compress_failing_one_verification):
    comp = scratch()
    data = TEXT * 2
    blob = compress_failing_one_verification(comp, data)
    assert comp.safe_blocks == [(2, 0)]
    p = framing.unpack_lm_payload(framing.unpack(blob, name="lm-online", config=comp.stream_config).payload,
                                  len(data), lambda lengths, prime: 1)
    assert p.safe == (2,) and p.crc16 is None
    assert comp.decompress(blob) == data


def test_code_parts_are_the_prequential_terms():
    comp = scratch()
    x, y = TEXT, TEXT[:60] + b" and more"
    alone = comp.code_parts(y)
    assert alone.unit == "token" and alone.spans[0] == (0, 1) and alone.spans[-1][1] == len(y)
    assert alone.total == pytest.approx(comp.bits(y), rel=1e-9)
    given = comp.code_parts(y, given=x)
    assert given.spans == alone.spans  # bytes are tokens: no token crosses the seam
    # conditional_bits is C(XY) - C(X); the parts are C(XY) - (X's tokens' bits inside XY): the same but
    # for X's last block, whose window ends later inside XY (less context for its tokens)
    assert given.total == pytest.approx(comp.conditional_bits(y, x), rel=1e-3)
    assert given.total < alone.total  # y repeats x
    e = kolmo.explain(y, given=x, compressor=comp)
    assert e.unit == "token" and len(e) == len(y)
    with pytest.raises(ValueError, match="explains per token"):
        comp.code_parts(y, block=8)


def test_coding_steps_hash_the_same_ngram_buckets():
    """One-token steps hash n-grams in numpy: the same buckets as the batched path (random table rows
    make a wrong bucket visible), the same hidden states to float rounding."""
    from kolmo.lm.models.scratch import ByteTransformer
    model = ByteTransformer(layers=2, width=32, heads=4, context=64, ngram=6, buckets=1 << 20, seed=1)
    with torch.no_grad():
        model.hashed.weight.normal_(generator=torch.Generator().manual_seed(0))
    assert_steps_match_full_forward(model, torch.randint(0, 256, (3, 40), generator=torch.Generator().manual_seed(1)))


@pytest.mark.parametrize("opts", [dict(ngram=4, buckets=1 << 10), dict(optimizer="adamw"), dict(optimizer="sgd")])
def test_a_reset_optimizer_is_a_new_one(opts):
    """reset() zeroes the last optimizer's state in place instead of making a new one: every run
    after the first gives the floats of a compressor that has never run (Adam's and SparseAdam's
    moments and step counts, SGD's empty state)."""
    used = scratch(**opts)
    used.bits(TEXT[:100])
    assert used.prequential.opts and any(o.state for o in used.prequential.opts) == (opts.get("optimizer") != "sgd")
    assert used.bits(TEXT) == scratch(**opts).bits(TEXT)
    if "ngram" in opts:  # theta_0 of the hashed table is one zero, not a copy of the table
        assert used.prequential.learner.initial["hashed.weight"].numel() == 1
        assert used.prequential.learner.module.hashed.weight.abs().sum() > 0  # it learned, and reset restores 0
    blob = used.compress(TEXT)
    assert blob == scratch(**opts).compress(TEXT) and used.decompress(blob) == TEXT


def test_a_reset_learner_with_an_adapter_is_a_new_one(tiny):
    used = tiny(adapter="lora")
    used.bits(TEXT[:80])
    assert used.bits(TEXT) == tiny(adapter="lora").bits(TEXT)


def test_replay_steps_on_earlier_blocks_drawn_from_the_seed(monkeypatch):
    from kolmo.lm.coding.prequential import Prequential
    comp = scratch(replay=2, seed=5)
    data = TEXT * 2
    calls = []
    real = Prequential._step
    monkeypatch.setattr(Prequential, "_step", lambda self, seq, s, e, parts: (calls.append((s, e)), real(self, seq, s, e, parts)))
    comp.bits(data)
    B, blocks = 32, comp.prequential.blocks(len(data))
    want = []
    for k, (s, e) in enumerate(blocks[:-1]):  # no learning after the last block
        want.append((s, e))
        for r in range(2 if k else 0):
            j = int(np.random.default_rng([5, k, r]).integers(0, k))
            want.append((1 + j * B, 1 + (j + 1) * B))
    assert calls == want and len(set(calls)) < len(calls)


def test_replay_learns_and_round_trips():
    data = TEXT * 3
    plain, replayed = scratch(), scratch(replay=1)
    assert replayed.bits(data) != plain.bits(data)
    assert replayed.config["replay"] == 1 and "replay" not in plain.config  # old cache keys stand
    assert replayed.decompress(replayed.compress(data)) == data
    x, y = TEXT * 2, b"and the Spirit of God moved upon the face of the waters. "
    assert replayed.conditional_bits(y, x) == scratch(replay=1).bits(x + y) - scratch(replay=1).bits(x)
    with pytest.raises(ValueError, match="replay"):
        scratch(replay=-1)
    with pytest.raises(ValueError, match="steps=0 turns learning off"):
        scratch(replay=1, steps=0)
