"""lm's mixture of the model and the match model (kolmo.lm.mixing.matched): it finds a noisy copy
beyond the model's window, costs at most its bound where the match model never helps, and its
streams decode (in chunks, after a shared prefix, through the safe mode), with the option that
decodes another stream named."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import kolmo  # noqa: E402
from kolmo.errors import StreamMismatchError  # noqa: E402
from kolmo.lm.mixing import matched  # noqa: E402
from kolmo.lm.mixing.mixer import SHARE  # noqa: E402


def noisy_copy(n: int, rate: float, seed: int = 0):
    """X: n letters of 8, i.i.d.; Y: X with each letter replaced w.p. ``rate`` by another one."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 8, n)
    y = x.copy()
    hit = rng.random(n) < rate
    y[hit] = (x[hit] + rng.integers(1, 8, int(hit.sum()))) % 8
    return (x + 97).astype(np.uint8).tobytes(), (y + 97).astype(np.uint8).tobytes()


def with_options(tiny_model_dir, **options):
    """lm with the match model, unless ``match=False`` is among the options."""
    return kolmo.get_compressor("lm", model=str(tiny_model_dir), window=32, stride=8, dtype="float32",
                                progress=False, **{"match": True, **options})


def test_lm_finds_a_noisy_copy_beyond_its_window(tiny_lm, tiny_lm_match):
    x, y = noisy_copy(1500, 0.1)  # X is 1,500 tokens, the window 64: the model alone sees none of the copy
    alone, mixed = tiny_lm.conditional_bits(y, x), tiny_lm_match.conditional_bits(y, x)
    assert mixed < 0.35 * alone
    # H(Y|X) = n (h(r) + r log2 7) = 703 bits for n = 1500, r = 0.1; a random model adds what it costs
    h = 1500 * (-0.1 * math.log2(0.1) - 0.9 * math.log2(0.9) + 0.1 * math.log2(7))
    assert mixed < 3.0 * h
    # C(XY) - C(X) finds it too (the mixture learns its weights over X there)
    assert tiny_lm_match.bits(x + y) - tiny_lm_match.bits(x) < 0.35 * (tiny_lm.bits(x + y) - tiny_lm.bits(x))


def test_the_mixture_costs_at_most_its_bound_over_the_model(tiny_lm, tiny_lm_match):
    """Bayes' rule with fixed share: per weight set at most log2(1 / w_frozen) = log2(16 / 15) bits over
    the model alone, plus log2(1 / (1 - share)) a token (kolmo.lm.mixing.matched's docstring)."""
    rng = np.random.default_rng(1)
    data = bytes(rng.integers(32, 127, 700).astype(np.uint8))  # no repeats worth a match
    alone, mixed = tiny_lm.token_bits(data), tiny_lm_match.token_bits(data)
    sets = tiny_lm_match.mix.match.n_buckets
    bound = alone.sum() + sets * math.log2(1 / (1 - matched.PRIOR)) + len(alone) * math.log2(1 / (1 - SHARE))
    assert mixed.sum() <= bound + 1e-9
    assert tiny_lm_match.bits(data) == pytest.approx(mixed.sum(), rel=1e-12)


def test_a_single_chunk_stream_codes_the_ideal_mixture(tiny_model_dir):
    """The real coder's mixture (MatchedStep, one step at a time) is the ideal one (MatchMix.bits over
    batched scores): a token learned at the wrong step would cost far more than the 1% allowed."""
    x, y = noisy_copy(500, 0.1, seed=2)
    lm = with_options(tiny_model_dir, chunk_tokens=100_000)
    blob = lm.compress(x + y)
    assert lm.safe_chunks == []
    ideal = lm.bits(x + y)
    assert ideal < 0.8 * with_options(tiny_model_dir, match=False).bits(x + y)  # the copy is found
    assert 8 * len(blob) <= 1.01 * ideal + 8 * 40  # 19 bytes of container and table, 8 of coder state
    assert 8 * len(blob) >= ideal
    assert lm.decompress(blob) == x + y


def test_chunks_after_a_shared_prefix_round_trip(tiny_model_dir, monkeypatch):
    lm = with_options(tiny_model_dir, coder_batch=3)
    monkeypatch.setitem(lm.MIN_CHUNK_TOKENS, "cpu", 60)
    monkeypatch.setitem(lm.PRIME_TOKENS, "cpu", 20)
    x, y = noisy_copy(200, 0.1, seed=3)
    data = x + y
    prime, segment = lm.coding_plan(len(lm.tokens(data)))
    assert prime == 20 and segment < len(data) // 3  # a prefix, several chunks, sliding windows in each
    blob = lm.compress(data)
    assert lm.safe_chunks == []
    assert with_options(tiny_model_dir, coder_batch=3).decompress(blob) == data


def test_a_diverging_chunk_goes_to_the_safe_mode(tiny_model_dir, monkeypatch):
    """Verification covers the mixture: perturb the mixed distributions of one row in the encoder's
    second run; that chunk is stored safe, and the stream decodes."""
    lm = with_options(tiny_model_dir, chunk_tokens=50, coder_batch=4)
    runs = {"again": False}
    begin, advance = matched.MatchedStep.begin_run, matched.MatchedStep.advance

    def begin_run(self, again=False):
        runs["again"] = again
        begin(self, again)

    def perturbed(self, ids, past=None, use_cache=True):
        probs, cache = advance(self, ids, past, use_cache)
        if runs["again"] and probs.shape[0] > 1:
            probs = probs.clone()
            probs[1] = probs[1] * 0.5 + 0.5 / probs.shape[-1]
        return probs, cache

    monkeypatch.setattr(matched.MatchedStep, "begin_run", begin_run)
    monkeypatch.setattr(matched.MatchedStep, "advance", perturbed)
    x, y = noisy_copy(100, 0.1, seed=4)
    blob = lm.compress(x + y)
    assert [c for c, _ in lm.safe_chunks] == [1]
    monkeypatch.undo()
    assert with_options(tiny_model_dir, chunk_tokens=50, coder_batch=4).decompress(blob) == x + y


def test_another_match_setting_names_the_option_that_decodes_it(tiny_model_dir):
    data = b"a stream of the model alone, and one mixed with the match model"
    alone, mixed = with_options(tiny_model_dir, match=False), with_options(tiny_model_dir)
    with pytest.raises(StreamMismatchError, match="match=False"):
        mixed.decompress(alone.compress(data))
    with pytest.raises(StreamMismatchError, match="match=True"):
        alone.decompress(mixed.compress(data))
    assert mixed.config["match_model"] == "aligned-3" and "match_model" not in alone.config
    with pytest.raises(ValueError, match="match must be True or False"):
        with_options(tiny_model_dir, match="yes")


def test_match_mix_checks_its_inputs():
    mix = matched.MatchMix(8)
    with pytest.raises(ValueError, match="frozen_bits must hold the bits of ids"):
        mix.bits(np.zeros(3), np.arange(5), start=1)
    assert mix.bits(np.zeros(0), np.arange(4), start=4).shape == (0,)
    # a perfect copy: the match model takes over, so the second half costs far less than 3 bits a token
    ids = np.tile(np.random.default_rng(0).integers(0, 8, 300), 2)
    bits = mix.bits(np.full(600, 3.0), ids)
    assert bits[300:].sum() < 0.1 * 300 * 3.0
