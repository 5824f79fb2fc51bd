"""The fixed-share mixer of kolmo.lm.mixer: its bounds, its weight sets, and one code path for
ideal code lengths and real coding."""

import math

import numpy as np
import pytest

from kolmo.lm.mixer import MixerState, mixture_bound_bits


def random_bits(rng, T, K):
    return rng.uniform(0.05, 12.0, size=(T, K))


def test_one_expert_is_that_expert():
    bits = random_bits(np.random.default_rng(0), 200, 1)
    assert np.allclose(MixerState(1).run(bits), bits[:, 0], rtol=1e-12)


@pytest.mark.parametrize("share", [0.0, 1e-4, 1e-2])
def test_never_worse_than_the_best_expert_plus_the_bound(share):
    rng = np.random.default_rng(1)
    for K in (2, 3, 5):
        bits = random_bits(rng, 500, K)
        bits[:, 1] -= 0.5  # expert 1 is best overall
        bits = np.clip(bits, 0.01, None)
        got = MixerState(K, share=share).run(bits).sum()
        best = bits.sum(axis=0).min()
        assert got <= mixture_bound_bits(best, K, len(bits), share) + 1e-9


def test_fixed_share_follows_a_switch_where_bayes_does_not():
    T = 2000
    bits = np.empty((T, 2))
    bits[:T // 2] = (1.0, 6.0)  # expert 0 is right on the first half (think X) ...
    bits[T // 2:] = (6.0, 1.0)  # ... expert 1 on the second (think Y)
    bayes = MixerState(2, share=0.0).run(bits)[T // 2:].sum()
    shared = MixerState(2, share=1e-3).run(bits)[T // 2:].sum()
    best_in_y = T // 2 * 1.0
    # Bayes' rule pays ~5 bits per token until the weight recovers from 2^-5000; fixed share pays
    # about log2(K / share) once, plus its share per token
    assert bayes > best_in_y + 1000
    assert shared < best_in_y + math.log2(2 / 1e-3) + T // 2 * -math.log2(1 - 1e-3) + 10


def test_weight_sets_are_chosen_by_context():
    T = 1000
    rng = np.random.default_rng(2)
    ctx = rng.integers(0, 2, T)
    bits = np.where(ctx[:, None] == 0, [1.0, 8.0], [8.0, 1.0])  # which expert is right depends on the context
    one = MixerState(2).run(bits).sum()
    gated = MixerState(2, sets=2).run(bits, ctx).sum()
    assert gated < 0.5 * one


def test_run_is_a_sequence_of_updates():
    rng = np.random.default_rng(3)
    bits, ctx = random_bits(rng, 300, 3), rng.integers(0, 4, 300)
    a, b = MixerState(3, sets=4, share=1e-3, eta=0.5), MixerState(3, sets=4, share=1e-3, eta=0.5)
    got = a.run(bits, ctx)
    for t in range(300):
        p = float(np.dot(b.mix(int(ctx[t])), np.exp2(-bits[t])))
        assert b.update(int(ctx[t]), list(np.exp2(-bits[t]))) == pytest.approx(p, rel=1e-12)
        assert -math.log2(p) == pytest.approx(got[t], rel=1e-12)
    assert a.weights == b.weights  # the same operations in the same order: the same floats


def test_copy_is_independent():
    a = MixerState(2)
    b = a.copy()
    a.update(0, [0.9, 0.1])
    assert b.weights == [[0.5, 0.5]] and a.weights != b.weights


@pytest.mark.parametrize("kw, msg", [(dict(experts=0), "experts"), (dict(experts=2, sets=0), "sets"),
                                     (dict(experts=2, share=1.0), "share"), (dict(experts=2, eta=0.0), "eta")])
def test_bad_settings_say_what_was_expected(kw, msg):
    with pytest.raises(ValueError, match=msg):
        MixerState(**kw)


def test_bad_inputs_say_what_was_expected():
    m = MixerState(2, sets=2)
    with pytest.raises(ValueError, match=r"\(tokens, 2\)"):
        m.run(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="outside its 2 weight sets"):
        m.run(np.zeros((3, 2)), np.array([0, 1, 2]))


def test_soft_bayes_competes_with_the_best_fixed_mixture():
    """Complementary experts: each is right (p = 0.9) on alternate tokens and wrong (0.1) on the others.
    Either alone costs 1.74 bits per token, their even mixture 1 bit."""
    T = 4000
    p = np.where(np.arange(T)[:, None] % 2 == np.arange(2)[None, :], 0.9, 0.1)
    bits = -np.log2(p)
    best_single = bits.sum(axis=0).min() / T
    soft = MixerState(2, eta=0.01).run(bits).sum() / T
    bayes = MixerState(2).run(bits).sum() / T
    assert best_single == pytest.approx(1.737, abs=1e-3)
    assert soft < 1.01 < best_single - 0.5 < bayes  # Bayes follows one expert at a time
