"""The neural cache (kolmo.lm.mixing.neural_cache): its code lengths against a slow reference of its
definition, the coder's distribution against the batched code lengths, its window of keys, and
its bookkeeping. The mixture's use of it (round trips, conditionals) is in tests/test_mixture.py.
"""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from kolmo.lm.mixing.neural_cache import FLOOR, CacheSettings  # noqa: E402


def reference_bits(h, tokens, alphabet, theta, size=None):
    """The module docstring's formula, one position at a time in float64."""
    q = h / np.linalg.norm(h, axis=1, keepdims=True)
    out = []
    for t in range(len(tokens)):
        lo = 0 if size is None else max(0, t - size)
        if t == lo:
            p = 1.0 / alphabet
        else:
            s = theta * (q[lo:t] @ q[t])
            w = np.exp(s - s.max())
            w /= w.sum()
            p = (1 - FLOOR) * w[tokens[lo:t] == tokens[t]].sum() + FLOOR / alphabet
        out.append(-math.log2(p))
    return np.array(out)


def states(n=300, d=16, alphabet=11, seed=0):
    """Hidden states with structure: a token follows states near its own prototype."""
    rng = np.random.default_rng(seed)
    protos = rng.normal(size=(alphabet, d))
    tokens = rng.integers(0, alphabet, n)
    h = protos[tokens] + 0.7 * rng.normal(size=(n, d))
    return h.astype(np.float32), tokens


@pytest.mark.parametrize("size", [None, 7, 64])
def test_bits_follow_the_definition(size):
    h, tokens = states()
    got = CacheSettings(11, theta=8.0, size=size).state().bits(torch.from_numpy(h), tokens)
    want = reference_bits(h.astype(np.float64), tokens, 11, 8.0, size)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)  # float32 similarities
    if size != 7:  # (seven keys rarely hold the token: misses cost log2(A / FLOOR) bits)
        assert got.sum() < len(tokens) * math.log2(11)  # the structure is learned: below uniform


def test_runs_continue_where_earlier_ones_left():
    h, tokens = states()
    whole = CacheSettings(11, theta=8.0).state().bits(torch.from_numpy(h), tokens)
    st = CacheSettings(11, theta=8.0).state()
    parts = [st.bits(torch.from_numpy(h[a:b]), tokens[a:b]) for a, b in ((0, 5), (5, 290), (290, 300))]
    np.testing.assert_allclose(np.concatenate(parts), whole, rtol=1e-5, atol=1e-5)
    assert st.n == 300


def test_the_coders_rows_give_the_same_code_lengths():
    h, tokens = states(n=120)
    cache = CacheSettings(11, theta=8.0, size=50)
    ideal = cache.state().bits(torch.from_numpy(h), tokens)
    st = cache.state()
    coded = []
    for t in range(len(tokens)):
        row = st.probs(torch.from_numpy(h[t])[None])
        assert row.dtype == np.float64 and row.shape == (11,) and row.min() >= FLOOR / 11
        assert row.sum() == pytest.approx(1.0, abs=1e-6)
        coded.append(-math.log2(row[tokens[t]]))
        st.absorb(int(tokens[t]))
    np.testing.assert_allclose(coded, ideal, rtol=1e-4, atol=1e-4)


def test_rollback_forgets_the_keys_after_the_mark():
    h, tokens = states(n=40)
    st = CacheSettings(11, theta=8.0).state()
    st.bits(torch.from_numpy(h[:20]), tokens[:20])
    st.mark()
    first = st.probs(torch.from_numpy(h[20]))
    st.absorb(int(tokens[20]))
    assert st.n == 21
    st.rollback()
    assert st.n == 20
    np.testing.assert_array_equal(st.probs(torch.from_numpy(h[20])), first)
    with pytest.raises(RuntimeError, match="after the probs"):
        st.absorb(3)
        st.absorb(3)
    with pytest.raises(ValueError, match="holds 21 keys"):
        st.truncate(22)


def test_no_key_yet_is_uniform():
    st = CacheSettings(5).state()
    np.testing.assert_array_equal(st.probs(torch.ones(4)), np.full(5, 0.2))
    assert st.bits(torch.ones((1, 4)), np.array([3]))[0] == pytest.approx(math.log2(5))


@pytest.mark.parametrize("kw, msg", [
    (dict(theta=0.0), "cache_theta must be a positive"),
    (dict(theta=float("inf")), "cache_theta must be a positive"),
    (dict(size=0), "cache_size must be a positive int"),
])
def test_bad_settings_say_what_was_expected(kw, msg):
    with pytest.raises(ValueError, match=msg):
        CacheSettings(10, **kw)
    with pytest.raises(TypeError, match="cache_size must be a positive int"):  # a wrong type: TypeError
        CacheSettings(10, size=2.5)
