"""The fixed-share mixer of kolmo.lm.mixing.mixer: its bounds, its weight sets, and one code path for
ideal code lengths and real coding."""

import math

import numpy as np
import pytest

from bounds import mixture_bound_bits
from kolmo.lm.mixing.mixer import TOP_SHARE, MixerStack, MixerState, new_mixer


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


def test_a_stack_is_one_linear_mixture_of_its_effective_weights():
    """The stack's probability of a token (what the ideal code length reads) is sum_k w_k p_k with
    the effective weights of mix() (what the coder mixes), to float rounding; run is its updates."""
    rng = np.random.default_rng(4)
    bits, ctx = random_bits(rng, 300, 3), rng.integers(0, 4, 300)
    a, b = MixerStack(3, sets=4, etas=(0.1, 0.02, 1.0)), MixerStack(3, sets=4, etas=(0.1, 0.02, 1.0))
    got = a.run(bits, ctx)
    for t in range(300):
        w = b.mix(int(ctx[t]))
        assert sum(w) == pytest.approx(1.0, rel=1e-12)
        p = float(np.dot(w, np.exp2(-bits[t])))
        assert b.update(int(ctx[t]), list(np.exp2(-bits[t]))) == pytest.approx(p, rel=1e-12)
        assert -math.log2(p) == pytest.approx(got[t], rel=1e-12)
    assert [m.weights for m in a.members] == [m.weights for m in b.members] and a.top.weights == b.top.weights
    c = a.copy()
    a.update(0, [0.9, 0.05, 0.05])
    assert c.members[0].weights != a.members[0].weights and c.top.weights != a.top.weights


def test_a_stack_is_never_worse_than_its_best_mixer_plus_the_bound():
    rng = np.random.default_rng(5)
    etas = (0.3, 0.03, 1.0)
    for K in (2, 4):
        bits = np.clip(random_bits(rng, 600, K) - np.linspace(0, 0.5, K), 0.01, None)
        stack = MixerStack(K, etas=etas).run(bits).sum()
        best = min(MixerState(K, eta=e).run(bits).sum() for e in etas)
        assert stack <= mixture_bound_bits(best, len(etas), len(bits), TOP_SHARE) + 1e-9


def test_a_stack_follows_the_rate_that_wins_where_it_wins():
    """First half: two complementary experts (alternately right), where slow Soft-Bayes wins; second
    half: expert 2 is right on every token, where Bayes' rule wins. The stack beats both alone."""
    T = 3000
    alt = np.where(np.arange(T)[:, None] % 2 == np.arange(2)[None, :], 0.9, 0.1)
    p = np.concatenate([np.column_stack([alt, np.full(T, 0.3)]),
                        np.column_stack([np.full((T, 2), 0.05), np.full(T, 0.95)])])
    bits = -np.log2(p)
    soft, bayes = MixerState(3, eta=0.01).run(bits).sum(), MixerState(3).run(bits).sum()
    stack = MixerStack(3, etas=(0.01, 1.0)).run(bits).sum()
    assert stack < min(soft, bayes) - 50


def test_new_mixer_builds_a_stack_from_a_tuple_of_rates():
    assert isinstance(new_mixer(2, eta=0.1), MixerState)
    stack = new_mixer(2, sets=3, share=1e-3, eta=(0.1, 1.0))
    assert isinstance(stack, MixerStack) and stack.sets == 3 and stack.etas == (0.1, 1.0)
    assert [m.share for m in stack.members] == [1e-3, 1e-3]
    with pytest.raises(ValueError, match="at least two mixers"):
        new_mixer(2, eta=(0.1,))
    with pytest.raises(ValueError, match="eta"):
        new_mixer(2, eta=(0.1, 0.0))
