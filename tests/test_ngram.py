"""The token memories of kolmo.lm.mixing.ngram: the vectorised code lengths agree with the incremental
states the coder uses, the distributions are proper, repeats become cheap, rollback is exact.
Numpy only (no torch)."""

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kolmo.lm.mixing.match import MatchModel
from kolmo.lm.mixing.ngram import TokenNGram

RTOL, ATOL = 1e-9, 1e-12      # ATOL: bits near 0, where p rounds near 1 in either computation


def incremental(model, ids, check=True):
    """(bits, buckets) from the state, absorbing one token after each prediction."""
    state, bits, buckets = model.state(), [], []
    for t, x in enumerate(ids):
        assert len(state) == t
        p = state.probs()
        if check:
            assert p.shape == (model.alphabet,) and p.dtype == np.float64
            assert abs(p.sum() - 1.0) < 1e-12 and (p > 0).all()
        bits.append(-np.log2(p[x]))
        if isinstance(model, MatchModel):
            buckets.append(state.bucket())
        state.absorb(x)
    return np.array(bits), np.array(buckets, np.int64)


def sequences(max_alphabet=5, max_len=60):
    """Random ids from small alphabets, sometimes with a long repeat of themselves."""
    @st.composite
    def make(draw):
        alphabet = draw(st.integers(1, max_alphabet))
        ids = draw(st.lists(st.integers(0, alphabet - 1), max_size=max_len))
        if draw(st.booleans()) and ids:
            cut = draw(st.integers(0, len(ids)))
            ids = ids + ids[cut:] + ids
        return alphabet, ids
    return make()


@settings(max_examples=60, deadline=None)
@given(sequences(), st.integers(0, 5))
def test_ngram_vectorised_agrees_with_incremental(case, order):
    alphabet, ids = case
    model = TokenNGram(alphabet, order)
    fast, _ = incremental(model, ids)
    np.testing.assert_allclose(model.bits(ids), fast, rtol=RTOL, atol=ATOL)
    start = len(ids) // 3
    np.testing.assert_allclose(model.bits(ids, start=start), fast[start:], rtol=RTOL, atol=ATOL)


@settings(max_examples=60, deadline=None)
@given(sequences(), st.sampled_from([(4,), (6, 3, 1), (9, 5, 2, 1), (3, 2)]))
def test_match_vectorised_agrees_with_incremental(case, lengths):
    alphabet, ids = case
    model = MatchModel(alphabet, lengths)
    fast, buckets = incremental(model, ids)
    bits, vec_buckets = model.bits_and_buckets(ids)
    np.testing.assert_allclose(bits, fast, rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(vec_buckets, buckets)
    np.testing.assert_array_equal(model.buckets(ids), buckets)
    start = len(ids) // 2
    np.testing.assert_allclose(model.bits(ids, start), fast[start:], rtol=RTOL, atol=ATOL)
    assert ((buckets >= 0) & (buckets < model.n_buckets)).all()


@pytest.mark.parametrize("model", [TokenNGram(1, 3), TokenNGram(2, 0), TokenNGram(7, 2),
                                   MatchModel(1, (2, 1)), MatchModel(2, (3,)), MatchModel(300, (8, 4))])
def test_edge_cases(model):
    assert model.bits([]).shape == (0,) and model.bits(np.zeros(0, np.int64)).dtype == np.float64
    one = model.bits([0])
    assert one.shape == (1,) and one[0] == pytest.approx(np.log2(model.alphabet))
    ids = [0] * 40 + [min(1, model.alphabet - 1)] * 5
    np.testing.assert_allclose(model.bits(ids), incremental(model, ids)[0], rtol=RTOL, atol=ATOL)
    assert model.bits(ids, start=len(ids)).shape == (0,)
    if model.alphabet == 1:
        assert (model.bits(ids) == 0).all() and (model.state().probs() == 1).all()


def test_a_long_repeat_becomes_cheap():
    first = np.random.default_rng(1).integers(0, 1000, 500)
    ids = np.concatenate([first, first])
    match = MatchModel(1000, (32, 16, 8, 4)).bits(ids)
    assert match[500:].mean() < 0.5 and match[:500].mean() > 9
    ngram = TokenNGram(1000, 4).bits(ids)
    assert ngram[500:].mean() < 0.25 * ngram[:500].mean()
    model = MatchModel(1000, (32, 16, 8, 4))
    gates = model.buckets(ids)
    assert (gates[:504] == 0).all() and (gates[504:] > 0).all()   # a pointer once 4 tokens repeat
    assert (gates[600:] == model.n_buckets - 1).all()              # and, learned, the most confident set


def test_text_fits_better_than_uniform():
    text = np.frombuffer(b"the cat sat on the mat; the dog sat on the log. " * 20, np.uint8)
    for model in (TokenNGram(256, 3), MatchModel(256, (8, 4, 2))):
        assert model.bits(text).mean() < 2.0


@pytest.mark.parametrize("model", [TokenNGram(6, 3), MatchModel(6, (5, 3, 1))])
def test_rollback_restores_probs_exactly(model):
    rng = np.random.default_rng(2)
    ids = rng.integers(0, 3, 200).tolist()
    state = model.state()
    for x in ids[:120]:
        state.absorb(x)
    state.mark()
    before = state.probs()
    bucket = state.bucket() if isinstance(model, MatchModel) else None
    for _ in range(3):                    # the mark stays: roll back to it again and again
        for x in ids[120:] + rng.integers(0, 6, 30).tolist():
            state.absorb(x)
        state.rollback()
        assert len(state) == 120
        np.testing.assert_array_equal(state.probs(), before)
        if bucket is not None:
            assert state.bucket() == bucket
    # and the rolled-back state goes on exactly like one that never saw the undone tokens
    fresh = model.state()
    for x in ids[:120]:
        fresh.absorb(x)
    for x in ids[120:]:
        state.absorb(x)
        fresh.absorb(x)
        np.testing.assert_array_equal(state.probs(), fresh.probs())


def test_rollback_needs_a_mark():
    with pytest.raises(RuntimeError, match="mark"):
        TokenNGram(4, 2).state().rollback()


@pytest.mark.parametrize("model", [TokenNGram(50, 4), MatchModel(50, (6, 3))])
def test_probs_are_deterministic(model):
    ids = np.random.default_rng(3).integers(0, 10, 300).tolist() * 2
    a, b = model.state(), model.state()
    for x in ids:
        a.absorb(x)
        b.absorb(x)
    pa, pb = a.probs(), b.probs()
    assert pa.tobytes() == pb.tobytes() == a.probs().tobytes()


def test_bad_input_says_what_to_do():
    with pytest.raises(ValueError, match=r"\[0, 5\).*alphabet > 7"):
        TokenNGram(5, 2).bits([0, 7])
    with pytest.raises(ValueError, match="got values from -1"):
        MatchModel(5).bits([-1, 2])
    with pytest.raises(TypeError, match="integers; got dtype float64"):
        TokenNGram(5, 2).bits([0.0, 1.0])
    with pytest.raises(ValueError, match="1-D"):
        TokenNGram(5, 2).bits([[0, 1]])
    with pytest.raises(ValueError, match="alphabet must be a positive int"):
        TokenNGram(0, 2)
    with pytest.raises(TypeError, match="alphabet must be a positive int"):
        MatchModel(2.5)
    with pytest.raises(ValueError, match="max_order"):
        TokenNGram(5, -1)
    for lengths in [(4, 8), (4, 4), (), (8, 0), (8, 2.5), 8, (True,)]:
        with pytest.raises(ValueError, match="strictly decreasing tuple of positive ints"):
            MatchModel(5, lengths)
    with pytest.raises(ValueError, match="start"):
        TokenNGram(5, 2).bits([1, 2], start=3)
    state = TokenNGram(5, 2).state()
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        state.absorb(5)
    with pytest.raises(TypeError):
        state.absorb(1.5)
    assert len(state) == 0                # a refused token changes nothing


def test_bits_take_lists_and_any_integer_dtype():
    ids = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]
    model = TokenNGram(10, 2)
    expect = model.bits(ids)
    for arr in (np.array(ids, np.uint8), np.array(ids, np.int32), np.array(ids, np.uint64)):
        np.testing.assert_array_equal(model.bits(arr), expect)


def test_vectorised_hash_is_the_incremental_recurrence():
    from kolmo.lm.mixing.ngram import _B, _prefix_hashes, _windows
    ids = np.random.default_rng(5).integers(0, 70000, 300)
    prefix = [0]
    for x in ids.tolist():
        prefix.append((prefix[-1] * _B + x + 1) % 2**64)
    assert _prefix_hashes(ids).tolist() == prefix
    w = _windows(_prefix_hashes(np.concatenate([ids[:5], ids[:5]])), 5)
    assert w.shape == (5,) and w[0] != w[1]           # positions 5..9; and an equal window hashes alike:
    assert _windows(_prefix_hashes(np.concatenate([ids[:5], ids[:5], [0]])), 5)[5] == w[0]


def test_speed_smoke():
    ids = np.random.default_rng(4).integers(0, 256, 200_000)
    for model in (TokenNGram(256, 6), MatchModel(256, (32, 16, 8, 4))):
        t0 = time.perf_counter()
        assert model.bits(ids).shape == (200_000,)
        assert time.perf_counter() - t0 < 10.0, model


@pytest.mark.parametrize("orders", [(0, 2), (1, 2, 4), (3,)])
def test_every_order_is_a_prediction_of_its_own(orders):
    """bits_by_order's columns are the single-order models' bits, and the state's probs_by_order
    gives the same numbers token by token (the same operations: equal to float rounding)."""
    rng = np.random.default_rng(5)
    ids = np.concatenate([rng.integers(0, 7, 150), rng.integers(0, 7, 40)] * 2)
    many = TokenNGram(7, orders)
    cols = many.bits_by_order(ids)
    for j, n in enumerate(orders):
        assert np.allclose(cols[:, j], TokenNGram(7, n).bits(ids), rtol=1e-12, atol=1e-12)
    state = many.state()
    for t in range(len(ids)):
        got = state.probs_by_order()
        assert len(got) == len(orders)
        buf = np.full((len(orders), 7), np.nan)
        assert state.probs_by_order(out=buf) is buf and buf.tobytes() == got.tobytes()  # in place, same floats
        for j in range(len(orders)):
            assert -np.log2(got[j][ids[t]]) == pytest.approx(cols[t, j], rel=1e-9, abs=1e-12)
            assert got[j].sum() == pytest.approx(1.0, abs=1e-12)
        state.absorb(int(ids[t]))


def test_orders_must_increase():
    with pytest.raises(ValueError, match="increasing tuple"):
        TokenNGram(5, (3, 1))
