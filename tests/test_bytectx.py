"""The byte-context memory (kolmo.lm.bytectx) against a slow reference of its definition."""

import numpy as np
import pytest

pytest.importorskip("numba")

from kolmo.lm.bytectx import FLOOR, ByteContext  # noqa: E402

BYTES = [bytes([i]) for i in range(256)]
#: a small vocabulary: every byte, words with and without their prefixes, a duplicate, a special token
VOCAB = BYTES + [b"th", b"the", b" the", b"ab", b"abc", b"abra", b"cad", b"a c", b"", b"the"]
TEXT = b"abracadabra the cat sat on the mat; abracadabra! the end, the abc."


def _tokens(model: ByteContext, text: bytes) -> list:
    """Greedy longest-match tokens of ``text`` over the model's vocabulary (any split will do)."""
    out, i, lookup = [], 0, {}
    for tid, word in enumerate(model.spellings):
        if word and word not in lookup:
            lookup[word] = tid
    while i < len(text):
        k = max(k for k in range(1, len(text) - i + 1) if text[i:i + k] in lookup)
        out.append(lookup[text[i:i + k]])
        i += k
    return out


def _reference(model: ByteContext, tokens: list) -> np.ndarray:
    """The module docstring's distribution after ``tokens``, term by term (no pruning)."""
    words = [model.spellings[t] for t in tokens if model.spellings[t]]
    hist = b"".join(words)
    nodes = {w[:i] for w in model.spellings for i in range(1, len(w) + 1)}
    stops, passes = {}, {}
    for prev, cur in zip([b""] + words, words):
        if prev and prev + cur[:1] in nodes:
            stops[prev] = stops.get(prev, 0) + 1
        for i in range(1, len(cur)):
            passes[cur[:i]] = passes.get(cur[:i], 0) + 1
    sigma0 = (sum(stops.values()) + 1.0) / (sum(stops.values()) + sum(passes.values()) + 2.0)

    def sigma(node: bytes) -> float:
        s, p = stops.get(node, 0), passes.get(node, 0)
        return (s + model.alpha * sigma0) / (s + p + model.alpha)

    def p_byte(h: bytes, b: int) -> float:
        """p(b) after the bytes h (the history, then the way down the trie); counts from the history."""
        p = 1.0 / 256
        for n in range(0, model.order + 1):
            if n > len(h):
                break
            ctx = h[len(h) - n:]
            follow = [hist[i] for i in range(n, len(hist)) if hist[i - n:i] == ctx]
            if follow:
                c, big_c, big_d = follow.count(b), len(follow), len(set(follow))
                p = (max(c - model.delta, 0.0) + (model.delta + model.beta) * big_d * p) / (big_c + model.beta * big_d)
        return p

    q = np.zeros(model.alphabet)
    seen = set()
    for tid, word in enumerate(model.spellings):
        if not word or word in seen:
            continue
        seen.add(word)
        prob = 1.0
        for i in range(len(word)):
            prob *= p_byte(hist + word[:i], word[i]) * ((1.0 - sigma(word[:i])) if i else 1.0)
        more = sum(p_byte(hist + word, c) for c in range(256) if word + bytes([c]) in nodes)
        q[tid] = prob * ((1.0 - more) + sigma(word) * more)
    return (1.0 - FLOOR) * q / q.sum() + FLOOR / model.alphabet


@pytest.mark.parametrize("order", [0, 2, 5])
def test_probs_match_the_reference(order):
    model = ByteContext(VOCAB, order=order, prune=1e-300)
    tokens = _tokens(model, TEXT)
    st = model.state()
    for k, t in enumerate(tokens):
        if k % 7 == 0 or k == len(tokens) - 1:
            np.testing.assert_allclose(st.probs(), _reference(model, tokens[:k]), rtol=1e-9, atol=1e-15)
        st.absorb(t)


def test_distribution_and_bits_are_the_coders():
    model = ByteContext(VOCAB, order=4)
    tokens = _tokens(model, TEXT * 2)
    bits = model.bits(tokens, start=3)
    st, got = model.state(), []
    for k, t in enumerate(tokens):
        p = st.probs()
        assert abs(p.sum() - 1.0) < 1e-12 and p.min() >= FLOOR / model.alphabet * (1 - 1e-12)
        assert p[VOCAB.index(b"")] == pytest.approx(FLOOR / model.alphabet)  # spells nothing
        assert p[len(VOCAB) - 1] == pytest.approx(FLOOR / model.alphabet)    # a duplicate spelling
        if k >= 3:
            got.append(-np.log2(p[t]))
        st.absorb(t)
    assert np.array_equal(np.array(got), bits)  # the same floats: one walk serves both
    assert bits[-len(bits) // 2:].mean() < bits[:len(bits) // 2].mean()  # the repeat is learned


def test_rollback_restores_counts_and_the_tokenizers_choices():
    model = ByteContext(VOCAB, order=3)
    tokens = _tokens(model, TEXT)
    st = model.state()
    for t in tokens[:9]:
        st.absorb(t)
    st.mark()
    before = st.probs().copy()
    for t in tokens[9:]:
        st.absorb(t)
    assert not np.array_equal(st.probs(), before)
    st.rollback()
    assert np.array_equal(st.probs(), before)
    for t in tokens[9:]:  # and on from there as a fresh state would
        st.absorb(t)
    fresh = model.state()
    for t in tokens:
        fresh.absorb(t)
    assert np.array_equal(st.probs(), fresh.probs())


def test_tables_grow_without_changing_a_probability():
    model = ByteContext(BYTES, order=6)
    data = np.random.default_rng(0).integers(0, 256, 3000)
    st = model.state()  # starts with 4096 slots: grows several times here
    for t in data.tolist():
        st.absorb(t)
    ref = ByteContext(BYTES, order=6).state()
    ref._tables(1 << 16)
    for t in data.tolist():
        ref.absorb(t)
    assert len(st._ctx) > 4096
    assert np.array_equal(st.probs(), ref.probs())


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="order"):
        ByteContext(BYTES, order=-1)
    with pytest.raises(ValueError, match="prune"):
        ByteContext(BYTES, prune=0.0)
    with pytest.raises(TypeError, match="spellings"):
        ByteContext(["a", "b"])
    with pytest.raises(ValueError, match="alphabet"):
        ByteContext(BYTES).state().absorb(256)
    with pytest.raises(RuntimeError, match="mark"):
        ByteContext(BYTES).state().rollback()
