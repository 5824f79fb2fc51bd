"""lm-online's mixture (kolmo.lm.mixing.mixture): ideal code lengths, never worse than a part, real
coding through the one engine (round trips, verification, safe mode), and its options.

Tiny models only (the scratch byte transformer of width 32, tests/tiny_lm.py's random Llama), one
torch thread.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import kolmo  # noqa: E402
from kolmo.cache import config_hash  # noqa: E402

TEXT = (b"In the beginning God created the heaven and the earth. And the earth was without form, and void; "
        b"and darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters. ")
SCRATCH = dict(model="scratch", layers=2, width=32, heads=4, context=64, ngram=0, block_tokens=32, lr=3e-3,
               train_on="block", progress=False)
ALL_SCRATCH = ("learner", "ngram", "match")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def scratch(**kw):
    return kolmo.get_compressor("lm-online", **{**SCRATCH, **kw})


@pytest.fixture
def tiny(tiny_model_dir):
    def make(**kw):
        opts = dict(model=str(tiny_model_dir), window=48, block_tokens=16, lr=1e-2, progress=False)
        return kolmo.get_compressor("lm-online", **{**opts, **kw})
    return make


def test_a_mixture_of_one_learner_is_the_learner():
    assert scratch(mix=("learner",)).bits(TEXT) == pytest.approx(scratch(mix=None).bits(TEXT), rel=1e-9)


def test_parts_code_what_their_models_code():
    from kolmo.lm.mixing.match import MatchModel
    from kolmo.lm.mixing.ngram import TokenNGram
    ids = np.frombuffer(TEXT, dtype=np.uint8).astype(np.int64)
    assert scratch(mix="ngram", ngram_orders=3).bits(TEXT) == pytest.approx(TokenNGram(256, 3).bits(ids).sum(), rel=1e-9)
    match = MatchModel(256, (16, 8, 4))
    assert scratch(mix="match", match_lengths=(16, 8, 4), gate=None).bits(TEXT) == pytest.approx(
        match.bits(ids).sum(), rel=1e-9)


def _inputs():
    rng = np.random.default_rng(7)
    noise = rng.integers(0, 256, 150, dtype=np.uint8).tobytes()
    yield TEXT, TEXT[:120] + b"and the evening and the morning were the first day. " + TEXT[40:90]
    yield noise, noise[:70] + TEXT[:60]  # X teaches nothing but an exact repeat
    yield TEXT[:100], bytes(rng.integers(97, 123, 160, dtype=np.uint8))  # Y: random letters
    yield b"", b"abcabcabd" * 15


@pytest.mark.parametrize("x, y", list(_inputs()), ids=["english", "noise", "letters", "no-x"])
def test_never_worse_than_its_best_part(x, y):
    """The issue's property: C(Y) and C(Y | X) of the mixture <= its best single part's + 1% + 32 bits."""
    mixed = scratch(mix=ALL_SCRATCH)
    parts = {p: scratch(mix=(p,)) for p in ALL_SCRATCH}
    for measure in (lambda c: c.bits(y), lambda c: c.conditional_bits(y, x)):
        best = min(measure(c) for c in parts.values())
        assert measure(mixed) <= best * 1.01 + 32


def test_mixture_learns_an_exact_repeat_better_than_the_learner():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, 600, dtype=np.uint8).tobytes()
    alone, mixed = scratch(mix=None), scratch(mix=ALL_SCRATCH)
    assert mixed.conditional_bits(x, x) < 0.2 * alone.conditional_bits(x, x)


def test_per_token_parts_sum_to_bits():
    comp = scratch(mix=ALL_SCRATCH)
    parts = comp.code_parts(TEXT)
    assert parts.total == pytest.approx(comp.bits(TEXT), rel=1e-9)
    assert comp.block_bits(TEXT).sum() == pytest.approx(comp.bits(TEXT), rel=1e-9)


@pytest.mark.parametrize("mix", [ALL_SCRATCH, ("ngram", "match"), ("learner", "ngram")])
def test_round_trip_scratch(mix):
    comp = scratch(mix=mix)
    data = TEXT * 2 + bytes(range(40))
    blob = comp.compress(data)
    assert comp.safe_blocks == []
    assert comp.decompress(blob) == data
    assert len(blob) <= comp.bits(data) / 8 * 1.02 + 64  # the real stream is its ideal code length


def test_round_trip_tiny_with_frozen(tiny):
    comp = tiny(mix=("learner", "frozen", "ngram", "match"))
    data = TEXT + "héllo wörld ☃ ".encode() * 3 + bytes([0, 255, 128])
    blob = comp.compress(data)
    assert comp.safe_blocks == []
    assert comp.decompress(blob) == data
    frozen = tiny(steps=0, mix=None)  # the frozen model alone is lm-online without learning
    assert tiny(mix="frozen").bits(data) == pytest.approx(frozen.bits(data), rel=1e-6)


def test_a_safe_block_keeps_encoder_and_decoder_together(compress_failing_one_verification):
    """A block stored in the safe mode updates the memories with its tokens, and leaves the weights."""
    comp = scratch(mix=ALL_SCRATCH)
    data = TEXT * 2
    blob = compress_failing_one_verification(comp, data)
    assert comp.safe_blocks == [(2, 0)]
    assert comp.decompress(blob) == data


def test_a_verification_rerun_replays_the_memories_exactly():
    """The encoder's second run of a block (again=True) replays the memories' rows from the first
    run's tape: its intervals are those of a run that computes everything again, and a rerun of
    other tokens is refused instead of replaying rows that belong to the first."""
    from kolmo.lm.coding.schedule import intervals
    comp = scratch(mix=ALL_SCRATCH)
    pre = comp.prequential
    seq = np.concatenate([[pre.learner.start], np.frombuffer(TEXT, np.uint8)]).astype(np.int64)[None]
    step = pre.coding_model
    pre.reset()
    (s, e), = pre.blocks(len(TEXT))[:1]
    first = intervals(step, seq, pre.windows(s, e))
    replayed = intervals(step, seq, pre.windows(s, e), again=True)
    fresh = intervals(step, seq, pre.windows(s, e))
    for a, b, c in zip(first, replayed, fresh):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    assert step._tape is not None and len(step._tape) == e - s
    other = seq.copy()
    other[0, s + 3] ^= 1
    with pytest.raises(RuntimeError, match="repeat the last run's tokens"):
        intervals(step, other, pre.windows(s, e), again=True)


def test_compress_asks_the_memories_once_per_step(monkeypatch):
    """compress's verification replays the memories (again=True from the engine): they are asked
    for their rows as often as when decoding, not twice as often."""
    from kolmo.lm.mixing.ngram import NGramState
    real, calls = NGramState.probs_by_order, [0]

    def counted(self, out=None):
        calls[0] += 1
        return real(self, out)

    monkeypatch.setattr(NGramState, "probs_by_order", counted)
    comp = scratch(mix=ALL_SCRATCH)
    blob = comp.compress(TEXT)
    encoding, calls[0] = calls[0], 0
    assert comp.decompress(blob) == TEXT
    assert encoding == calls[0] > 0


def test_parts_are_mixed_in_one_order():
    a, b = scratch(mix=("match", "learner", "ngram")), scratch(mix=ALL_SCRATCH)
    assert a.config == b.config and a.prequential.experts[0] == "learner"


def test_config_names_the_mixture():
    a, b = scratch(mix=ALL_SCRATCH), scratch(mix=ALL_SCRATCH, share=1e-3)
    assert a.config["mix"] == list(ALL_SCRATCH) and a.config["mixer"] == "soft-bayes, fixed share"
    assert config_hash(a.config) != config_hash(b.config) != config_hash(scratch(mix=None).config)
    assert "mix" not in scratch(mix=None).config  # the learner alone, as before mixtures
    assert scratch().config["mix"] == list(ALL_SCRATCH)  # the default: every part the model has
    assert "cache_theta" not in scratch().config  # mixtures without the neural cache keep their cache keys


@pytest.mark.parametrize("opts, msg", [
    (dict(mix=("learner", "oracle")), "distinct parts"),
    (dict(mix=("learner", "learner")), "distinct parts"),
    (dict(mix=("frozen",)), "no.*frozen|'frozen' is a pretrained"),
    (dict(mix=None, ngram_orders=3), "pass mix="),
    (dict(mix="ngram", match_lengths=(4, 8)), "decreasing"),
    (dict(mix="ngram", gate="order"), "gate"),
    (dict(mix="ngram", share=1.5), "share"),
    (dict(mix=("learner", "cache")), "'cache' keeps a pretrained model's hidden states"),
    (dict(mix=None, cache_theta=50.0), "pass mix="),
])
def test_bad_options_say_what_was_expected(opts, msg):
    with pytest.raises(ValueError, match=msg):
        scratch(**opts)


def test_each_part_in_the_mixtures_run_is_that_part_alone():
    """The benchmark reads every expert's code length from the mixture's run: the parts never see the mixture."""
    comp = scratch(mix=ALL_SCRATCH, ngram_orders=(1, 3))
    comp.bits(TEXT)
    cols = dict(zip(comp.prequential.experts, comp.prequential.last_columns.sum(axis=0)))
    assert list(cols) == ["learner", "ngram1", "ngram3", "match"]
    assert cols["learner"] == pytest.approx(scratch(mix="learner").bits(TEXT), rel=1e-9)
    for n in (1, 3):
        assert cols[f"ngram{n}"] == pytest.approx(scratch(mix="ngram", ngram_orders=n).bits(TEXT), rel=1e-9)
    assert cols["match"] == pytest.approx(scratch(mix="match").bits(TEXT), rel=1e-9)


def test_never_worse_than_its_best_part_with_a_pretrained_model(tiny):
    x, y = TEXT, "héllo wörld, the face of the waters ".encode() * 2
    parts = ("learner", "frozen", "ngram", "match", "cache")
    mixed = tiny(mix=parts)
    for measure in (lambda c: c.bits(y), lambda c: c.conditional_bits(y, x)):
        best = min(measure(tiny(mix=(p,))) for p in parts)
        assert measure(mixed) <= best * 1.01 + 32


def test_the_compiled_mix_is_numpy_s_sum_bit_for_bit():
    """kernels.mix_rows against the products and the sequential sum of numpy (add.accumulate)."""
    from kolmo.lm.kernels import mix_rows
    rng = np.random.default_rng(3)
    for k, a in [(1, 5), (3, 256), (9, 300)]:
        probs = rng.dirichlet(np.ones(a) * 0.3, size=k)
        w = rng.dirichlet(np.ones(k))
        want = np.add.accumulate(probs * w[:, None], axis=0)[-1]
        got = np.empty(a)
        mix_rows(probs, w, got)
        np.testing.assert_array_equal(got, want)


def test_the_neural_cache_in_the_mixture(tiny):
    """The cache part: its column is the cache alone, fed by the frozen model whether or not that
    is mixed; conditionals continue its keys from the shared blocks; real streams round-trip,
    with the verification recomputing its rows (no safe block)."""
    import functools
    from kolmo.lm.mixing.neural_cache import THETA, CacheSettings
    tiny = functools.partial(tiny, autocast=None)  # float32: the cache's floats are the frozen model's own
    data = TEXT + "héllo wörld ☃ ".encode() * 3 + bytes([0, 255, 128])
    every = tiny()  # the default in float32: every part but the second learner
    assert every.config["mix"] == ["learner", "frozen", "ngram", "match", "cache"]
    assert every.config["cache_theta"] == THETA == 150.0 and every.config["cache_size"] is None
    every.bits(data)
    cols = dict(zip(every.prequential.experts, every.prequential.last_columns.sum(axis=0)))
    alone = tiny(mix="cache", gate=None)
    assert cols["cache"] == pytest.approx(alone.bits(data), rel=1e-9)
    seq = np.asarray(alone._seq(alone.tokens(data)))
    hidden = []
    eng = alone.prequential
    for s, e in eng.blocks(len(seq) - 1):
        eng.inner._score(seq, s, e, net=eng.frozen, hidden=hidden)
    want = CacheSettings(eng.learner.alphabet, THETA).state().bits(torch.cat(hidden), seq[1:])
    assert alone.bits(data) == pytest.approx(want.sum(), rel=1e-9)
    x, y = TEXT, b"and the Spirit of God moved upon the face of the deep"
    assert every.conditional_bits(y, x) == pytest.approx(tiny().bits(x + y) - tiny().bits(x), rel=1e-9)
    for comp in (tiny(mix=("learner", "cache"), cache_size=20), every):
        blob = comp.compress(data)
        assert comp.safe_blocks == []
        assert comp.decompress(blob) == data
        assert len(blob) <= comp.bits(data) / 8 * 1.02 + 64
    assert config_hash(tiny(cache_theta=50.0).config) != config_hash(every.config)


def test_a_safe_block_drops_the_caches_keys_in_encoder_and_decoder(tiny, compress_failing_one_verification):
    comp = tiny(mix=("learner", "ngram", "cache"))
    data = TEXT * 2
    blob = compress_failing_one_verification(comp, data)
    assert comp.safe_blocks == [(2, 0)]
    assert comp.decompress(blob) == data


def test_the_fast_part_is_a_second_learner_at_its_own_rate():
    """"fast" codes what the learner alone codes at fast_lr (the same operations on its own copy),
    the learner beside it is untouched by it, and conditional runs share X's blocks for both."""
    comp = scratch(mix=("learner", "fast", "ngram"), fast_lr=1e-2)
    comp.bits(TEXT)
    cols = dict(zip(comp.prequential.experts, comp.prequential.last_columns.T))
    assert list(cols) == ["learner", "fast", "ngram1", "ngram2", "ngram3", "ngram4", "ngram6", "ngram8"]
    # per token, the same floats as each learner alone (the same operations in the same order)
    np.testing.assert_array_equal(cols["fast"], scratch(mix=None, lr=1e-2).code_parts(TEXT).bits)
    np.testing.assert_array_equal(cols["learner"], scratch(mix=None).code_parts(TEXT).bits)
    assert cols["fast"].sum() < 0.95 * cols["learner"].sum()  # at 1e-2 against 3e-3 it learns this text faster
    x, y = TEXT, TEXT[:90] + b"and the evening and the morning were the first day."
    alone = scratch(mix=("fast",), fast_lr=1e-2)
    assert alone.conditional_bits(y, x) == scratch(mix=None, lr=1e-2).conditional_bits(y, x)


def test_fast_lr_defaults_to_a_multiple_of_lr_and_names_itself_in_config():
    from kolmo.lm.settings import FAST_LR_SCALE
    a = scratch(mix=("learner", "fast"))
    assert a.settings.fast_lr == pytest.approx(FAST_LR_SCALE * SCRATCH["lr"], rel=1e-12)
    assert a.config["fast_lr"] == a.settings.fast_lr
    assert a.config == scratch(mix=("learner", "fast"), fast_lr=9e-3).config  # the default given: one configuration
    assert config_hash(a.config) != config_hash(scratch(mix=("learner", "fast"), fast_lr=1e-3).config)
    assert "fast_lr" not in scratch().config and "fast" not in scratch().config["mix"]  # not in the default


@pytest.mark.parametrize("opts, msg", [
    (dict(fast_lr=1e-3), "add the part"),
    (dict(mix=None, fast_lr=1e-3), "add the part"),
    (dict(mix=("learner", "fast"), fast_lr=0.0), "fast_lr must be a positive"),
])
def test_bad_fast_options_say_what_was_expected(opts, msg):
    with pytest.raises(ValueError, match=msg):
        scratch(**opts)


def test_round_trip_with_two_learners(tiny):
    """Real coding through the one engine with both learners trained after each block (a
    pretrained model: two private copies)."""
    comp = tiny(mix=("learner", "fast", "frozen", "ngram"))
    data = TEXT + "héllo wörld ☃ ".encode() * 2
    blob = comp.compress(data)
    assert comp.safe_blocks == []
    assert comp.decompress(blob) == data
    assert len(blob) <= comp.bits(data) / 8 * 1.02 + 64
    other = tiny(mix=("learner", "fast", "frozen", "ngram"), fast_lr=1e-3)  # (the default: 3 x 1e-2)
    with pytest.raises(kolmo.KolmoError):
        other.decompress(blob)  # a stream names its fast learner's rate


def test_a_safe_block_trains_both_learners_in_encoder_and_decoder(compress_failing_one_verification):
    comp = scratch(mix=("learner", "fast", "ngram"))
    blob = compress_failing_one_verification(comp, TEXT * 2)
    assert comp.safe_blocks == [(2, 0)]
    assert comp.decompress(blob) == TEXT * 2


def test_autocast_bf16_learns_and_codes_through_the_engine(tiny):
    """autocast="bfloat16": every pretrained model's body (both learners, the frozen model that also
    feeds the cache) runs its products in bf16; weights stay float32 and learn; real coding decodes;
    the stream and the cache key name it; a float32 compressor refuses its stream."""
    parts = ("learner", "fast", "frozen", "ngram", "cache")
    comp, plain = tiny(mix=parts, autocast="bfloat16"), tiny(mix=parts, autocast=None)
    assert comp.config["autocast"] == "bfloat16" and "autocast" not in plain.config
    assert config_hash(comp.config) != config_hash(plain.config)
    data = TEXT + "héllo wörld ☃ ".encode() * 2
    bits, want = comp.bits(data), plain.bits(data)
    assert bits != want and bits == pytest.approx(want, rel=0.02)  # bf16 products: other floats, the same code
    eng = comp.prequential
    for net in (eng.inner.learner, eng.fast.learner):
        assert all(p.dtype == torch.float32 for p in net.module.parameters())
        moved = [n for n, p in net.named_trainable() if not torch.equal(p, net.initial[n])]
        assert moved  # it learned
    h, _ = eng.frozen.advance(eng.frozen.inputs(np.arange(1, 9))[None])
    assert h.dtype == torch.float32
    blob = comp.compress(data)
    assert comp.safe_blocks == []
    assert comp.decompress(blob) == data
    assert len(blob) <= bits / 8 * 1.02 + 64
    with pytest.raises(kolmo.KolmoError):
        plain.decompress(blob)


@pytest.mark.parametrize("opts, msg", [
    (dict(autocast="float16"), "autocast must be None"),
    (dict(autocast="bfloat16", dtype="bfloat16"), "runs a float32 model's products"),
])
def test_bad_autocast_options_say_what_was_expected(tiny, opts, msg):
    with pytest.raises(ValueError, match=msg):
        tiny(**opts)


def test_autocast_is_for_pretrained_models():
    with pytest.raises(ValueError, match="model='scratch' computes"):
        scratch(autocast="bfloat16")
    assert "autocast" not in scratch(autocast="auto").config  # "auto": nothing to autocast


@pytest.mark.parametrize("native", [True, False])
def test_autocast_auto_uses_bf16_where_the_hardware_has_it(tiny, monkeypatch, native):
    from kolmo.lm import machine
    monkeypatch.setattr(machine, "native_bf16", lambda device: native)
    comp = tiny(mix=("learner", "frozen"), autocast="auto")
    assert comp.config.get("autocast") == ("bfloat16" if native else None)
    assert comp.config == tiny(mix=("learner", "frozen"), autocast="bfloat16" if native else None).config
    assert comp.prequential.learner.autocast == (torch.bfloat16 if native else None)
    assert comp.prequential.frozen.autocast == comp.prequential.learner.autocast


@pytest.mark.parametrize("native", [True, False])
def test_the_default_mixture_follows_the_hardware(tiny, monkeypatch, native):
    """The defaults (autocast="auto", mix="auto"): where the models compute in bf16 in hardware,
    every part with the second learner, a stack of mixers and cache_theta 200 (settings.BF16_MIX);
    elsewhere float32 and every part but "fast". Options given keep their values."""
    from kolmo.lm import machine
    from kolmo.lm.mixing.neural_cache import THETA
    from kolmo.lm.settings import BF16_MIX
    monkeypatch.setattr(machine, "native_bf16", lambda device: native)
    cfg = tiny().config
    if native:
        assert cfg["autocast"] == "bfloat16"
        assert cfg["mix"] == ["learner", "fast", "frozen", "ngram", "match", "cache"]
        assert cfg["eta"] == list(BF16_MIX["eta"]) and cfg["cache_theta"] == BF16_MIX["cache_theta"] == 200.0
        spelled = dict(autocast="bfloat16", mix=("learner", "fast", "frozen", "ngram", "match", "cache"),
                       eta=(0.1, 0.02, 1.0), cache_theta=200)
        assert tiny(**spelled).config == cfg
        given = tiny(eta=0.05, cache_theta=100).config
        assert given["eta"] == 0.05 and given["cache_theta"] == 100.0 and "fast" in given["mix"]
    else:
        assert "autocast" not in cfg
        assert cfg["mix"] == ["learner", "frozen", "ngram", "match", "cache"]
        assert cfg["eta"] == 0.1 and cfg["cache_theta"] == THETA
        assert tiny(autocast=None, mix=("learner", "frozen", "ngram", "match", "cache")).config == cfg
    # an explicit choice holds on every machine
    assert "fast" not in tiny(autocast=None).config["mix"]
    assert "fast" in tiny(autocast="bfloat16").config["mix"]
    assert "autocast" not in tiny(mix=None, autocast=None).config
    assert tiny(mix=None).config.get("autocast") == ("bfloat16" if native else None)  # the learner alone too


def test_a_default_stream_from_other_hardware_says_which_option_decodes_it(tiny, monkeypatch):
    """A stream written with the defaults where bf16 is in hardware, read with the defaults where
    it is not (and back): the error names the option that decodes it; with it, it decodes."""
    from kolmo.lm import machine
    data = TEXT[:150]
    monkeypatch.setattr(machine, "native_bf16", lambda device: True)
    bf16 = tiny(mix=("learner", "ngram"))
    blob16 = bf16.compress(data)
    monkeypatch.setattr(machine, "native_bf16", lambda device: False)
    plain = tiny(mix=("learner", "ngram"))
    with pytest.raises(kolmo.StreamMismatchError, match="autocast='bfloat16'"):
        plain.decompress(blob16)
    assert tiny(mix=("learner", "ngram"), autocast="bfloat16").decompress(blob16) == data
    blob32 = plain.compress(data)
    monkeypatch.setattr(machine, "native_bf16", lambda device: True)
    with pytest.raises(kolmo.StreamMismatchError, match="autocast=None"):
        tiny(mix=("learner", "ngram")).decompress(blob32)
    assert tiny(mix=("learner", "ngram"), autocast=None).decompress(blob32) == data
    assert bf16.resolved_options() == {"autocast": "bfloat16"} and plain.resolved_options() == {"autocast": None}


def test_kolmo_compress_writes_the_hardware_s_choice(tiny_model_dir, monkeypatch, tmp_path):
    """`kolmo compress` with the defaults writes autocast as resolved, so `kolmo decompress` on a
    machine whose default is the other one rebuilds the encoder's configuration."""
    import json
    from kolmo.cli import main
    from kolmo.lm import machine
    src, blob, back = tmp_path / "in.txt", tmp_path / "in.kolmo", tmp_path / "out.txt"
    src.write_bytes(TEXT[:150])
    opts = ["-O", f"model={tiny_model_dir}", "-O", "window=48", "-O", "block_tokens=16", "-O", "mix=learner,ngram"]
    monkeypatch.setattr(machine, "native_bf16", lambda device: True)
    assert main(["compress", str(src), "-o", str(blob), "-c", "lm-online", *opts]) == 0
    data = blob.read_bytes()
    meta = json.loads(data[12:12 + int.from_bytes(data[8:12], "little")])
    assert meta["options"]["autocast"] == "bfloat16" and meta["options"]["window"] == 48
    monkeypatch.setattr(machine, "native_bf16", lambda device: False)
    assert main(["decompress", str(blob), "-o", str(back)]) == 0
    assert back.read_bytes() == src.read_bytes()


def test_a_bf16_stream_is_refused_up_front_where_bf16_runs_otherwise(tiny, monkeypatch):
    """The stream's float record says whether the CPU computed bf16 in hardware; a CPU that
    computes it the other way (emulated, or in hardware) refuses it before decoding. A float32
    stream does not depend on it."""
    from kolmo.lm import machine
    vendor, flags = machine._cpuinfo()
    data = TEXT[:120]
    comp = tiny(mix=("learner", "ngram"), autocast="bfloat16")
    plain = tiny(mix=("learner", "ngram"), autocast=None)
    blob, blob32 = comp.compress(data), plain.compress(data)
    native = machine.native_bf16_cpu()
    other = flags - {"avx512_bf16", "amx_bf16"} if native else flags | {"avx512_bf16"}
    monkeypatch.setattr(machine, "_cpuinfo", lambda: (vendor, frozenset(other)))
    with pytest.raises(machine.FloatMismatchError, match="bf16") as info:
        tiny(mix=("learner", "ngram"), autocast="bfloat16").decompress(blob)
    assert info.value.record.bf16_native is native and not info.value.reproducible
    here, there = ("in hardware", "emulated") if native else ("emulated", "in hardware")
    assert f"bf16 {here}; this process computes them with" in str(info.value) and f"bf16 {there}, so" in str(info.value)
    assert plain.decompress(blob32) == data


def test_native_bf16_reads_the_cpu_flags(monkeypatch):
    from kolmo.lm import machine
    for flags, want in (({"avx512f", "avx512_bf16"}, True), ({"amx_bf16", "avx2"}, True), ({"avx512f"}, False),
                        ({"avx2"}, False)):
        monkeypatch.setattr(machine, "_cpuinfo", lambda: ("Intel", frozenset(flags)))
        assert machine.native_bf16(torch.device("cpu")) is want


def test_a_stack_of_mixers_codes_through_the_engine(tiny):
    """eta as a tuple: one mixer per rate under a top mixer (kolmo.lm.mixing.mixer.MixerStack), in the
    ideal code length and in real coding; the stream names its rates."""
    comp = tiny(mix=("learner", "frozen", "ngram", "match"), eta=(0.1, 0.02, 1.0))
    assert comp.config["eta"] == [0.1, 0.02, 1.0] and comp.config["mixer"] == "soft-bayes stack, fixed share"
    assert comp.config["top_share"] > 0
    data = TEXT + "héllo wörld ☃ ".encode() * 3
    blob = comp.compress(data)
    assert comp.safe_blocks == []
    assert comp.decompress(blob) == data
    assert len(blob) <= comp.bits(data) / 8 * 1.02 + 64
    with pytest.raises(kolmo.KolmoError):
        tiny(mix=("learner", "frozen", "ngram", "match"), eta=0.1).decompress(blob)


def test_a_stack_is_never_worse_than_its_best_part():
    x, y = TEXT, TEXT[:80] + b"and the waters were gathered together unto one place"
    comp = scratch(mix=ALL_SCRATCH, eta=(0.05, 1.0))
    got = comp.conditional_bits(y, x)
    cols = {}
    for part in ALL_SCRATCH:
        cols[part] = scratch(mix=part).conditional_bits(y, x)
    assert got <= min(cols.values()) * 1.01 + 32
    with pytest.raises(ValueError, match="at least two"):
        scratch(mix=ALL_SCRATCH, eta=(0.1,))
