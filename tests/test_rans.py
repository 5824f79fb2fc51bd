"""The interleaved rANS coder (kolmo.lm.coding.rans) and its device-side frequency tables (kolmo.lm.coding.tables):
round trips, code length against the ideal and against constriction, quantisation invariants,
validation and corrupted streams."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from kolmo.errors import CorruptStreamError  # noqa: E402
from bounds import code_length_bits  # noqa: E402
from kolmo.lm.coding.tables import Tables, frequencies  # noqa: E402
from kolmo.lm.models.tokens import with_virtual  # noqa: E402
from kolmo.lm.coding.rans import MAX_PRECISION, BatchDecoder, BatchEncoder  # noqa: E402
from kolmo.lm.models.tokens import VIRTUAL_MASS  # noqa: E402

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- helpers ------------------------------------------------------------------------------------

def random_tables(rng, shape, n_symbols, precision, kind):
    """Integer tables (*shape, A), every count >= 1, rows summing to 2**precision.

    kind: "spread" (random weights), "skewed" (a few symbols take nearly all, many counts of 1),
    "extreme" (one symbol with 2**P - (A-1), the rest 1).
    """
    m, a = 1 << precision, n_symbols
    if kind == "extreme":
        f = np.ones((*shape, a), dtype=np.int64)
        hot = rng.integers(0, a, size=shape)
        np.put_along_axis(f, hot[..., None], m - (a - 1), axis=-1)
        return f
    w = rng.random((*shape, a)) ** (30.0 if kind == "skewed" else 1.0)
    f = 1 + np.floor(w / w.sum(-1, keepdims=True) * (m - a)).astype(np.int64)
    rest = m - f.sum(-1)  # >= 0: the floors only lose counts
    idx = rng.integers(0, a, size=shape)[..., None]
    np.put_along_axis(f, idx, np.take_along_axis(f, idx, -1) + rest[..., None], axis=-1)
    return f


def draw_symbols(rng, freq, precision):
    """One symbol per table: half the draws from the table's own distribution, half uniform (rare ones too)."""
    ends = np.cumsum(freq, -1)
    slot = rng.integers(0, 1 << precision, size=freq.shape[:-1])
    by_table = (ends <= slot[..., None]).sum(-1)  # the symbol whose interval holds a uniform slot
    uniform = rng.integers(0, freq.shape[-1], size=freq.shape[:-1])
    return np.where(rng.random(freq.shape[:-1]) < 0.5, by_table, uniform)


def intervals(freq, symbols):
    """(start, freq) of each symbol in its table; freq (..., A), symbols (...)."""
    starts = np.cumsum(freq, -1) - freq
    s = np.take_along_axis(starts, symbols[..., None], -1)[..., 0]
    f = np.take_along_axis(freq, symbols[..., None], -1)[..., 0]
    return s, f


def encode(freq, symbols, precision):
    """freq (n, B, A), symbols (n, B) -> words."""
    enc = BatchEncoder(symbols.shape[1], precision)
    for k in range(symbols.shape[0]):
        enc.push(*intervals(freq[k], symbols[k]))
    return enc.finish()


def decode(words, freq, precision, n_streams=None):
    """Decode len(freq) steps with numpy table look-ups; check_end included."""
    b = freq.shape[1] if n_streams is None else n_streams
    dec = BatchDecoder(words, b, precision)
    out = []
    for k in range(freq.shape[0]):
        ends = np.cumsum(freq[k], -1)
        sym = (ends <= dec.slots()[:, None]).sum(-1)
        dec.advance(*intervals(freq[k], sym))
        out.append(sym)
    dec.check_end()
    return np.array(out, dtype=np.int64).reshape(freq.shape[0], b)


def bound_bits(freq_coded, precision, n_streams):
    """The module's stated bound on 32 * len(words)."""
    n = np.size(freq_coded)
    return code_length_bits(freq_coded, precision) + 64 * n_streams + n * math.log2(1 + 2.0 ** (precision - 32))


# -- round trips -----------------------------------------------------------------------------------

@FAST
@given(b=st.integers(1, 8), n=st.integers(0, 50), precision=st.integers(1, MAX_PRECISION),
       n_symbols=st.integers(1, 40), kind=st.sampled_from(["spread", "skewed", "extreme"]),
       seed=st.integers(0, 2 ** 32 - 1))
def test_round_trip(b, n, precision, n_symbols, kind, seed):
    rng = np.random.default_rng(seed)
    a = min(n_symbols, 1 << precision)
    freq = random_tables(rng, (n, b), a, precision, kind)
    symbols = draw_symbols(rng, freq, precision)
    words = encode(freq, symbols, precision)
    assert words.dtype == np.uint32
    np.testing.assert_array_equal(decode(words, freq, precision), symbols)
    coded = intervals(freq, symbols)[1]
    assert 32 * words.size <= bound_bits(coded, precision, b) + 1e-6


def test_zero_steps_and_certain_symbols_write_nothing():
    assert BatchEncoder(3).finish().size == 0
    BatchDecoder(np.zeros(0, np.uint32), 3).check_end()
    # a symbol of probability 1 carries no information: no words either
    freq = np.full((5, 3, 1), 1 << 24, dtype=np.int64)
    words = encode(freq, np.zeros((5, 3), np.int64), 24)
    assert words.size == 0
    np.testing.assert_array_equal(decode(words, freq, 24), np.zeros((5, 3)))


def test_one_stream_of_one_symbol_writes_two_state_words():
    words = encode(np.array([[[1, (1 << 24) - 1]]]), np.array([[0]]), 24)
    assert words.size == 2  # the final state only
    np.testing.assert_array_equal(decode(words, np.array([[[1, (1 << 24) - 1]]]), 24), [[0]])


@pytest.mark.parametrize("precision", [12, 24, 31])
def test_long_runs_stay_within_the_stated_bound(precision):
    rng = np.random.default_rng(precision)
    b, n = 8, 4000
    freq = random_tables(rng, (n, b), 20, precision, "spread")
    symbols = draw_symbols(rng, freq, precision)
    words = encode(freq, symbols, precision)
    coded = intervals(freq, symbols)[1]
    ideal = code_length_bits(coded, precision)
    assert 32 * words.size <= bound_bits(coded, precision, b)
    # the state flush costs 32..64 bits per stream; rounding is far below its worst case on average
    assert 32 * b - 64 <= 32 * words.size - ideal <= 64 * b + 1e-3 * n * b
    np.testing.assert_array_equal(decode(words, freq, precision), symbols)


def test_through_device_tables_round_trip():
    """The intended use: probabilities -> frequencies -> Tables; only intervals and slots cross."""
    torch.manual_seed(0)
    b, n, a, precision = 5, 60, 300, 24
    logits = torch.randn(n, b, a) * 4
    logits[:, :, 7] = -1e30  # a symbol of probability 0 stays codable
    probs = torch.softmax(logits, -1)
    symbols = torch.randint(0, a, (n, b))
    symbols[3] = 7
    enc = BatchEncoder(b, precision)
    for k in range(n):
        s, f = Tables(frequencies(probs[k], precision)).interval(symbols[k])
        enc.push(s.numpy(), f.numpy())
    words = enc.finish()
    dec = BatchDecoder(words, b, precision)
    for k in range(n):
        table = Tables(frequencies(probs[k], precision))
        sym = table.find(torch.from_numpy(dec.slots()))
        assert torch.equal(sym, symbols[k])
        s, f = table.interval(sym)
        dec.advance(s.numpy(), f.numpy())
    dec.check_end()


def test_many_streams_in_one_vectorised_step():
    """B = 1024 through the whole path (no per-stream Python loop in the coder or the tables)."""
    rng = np.random.default_rng(1)
    b, precision = 1024, 24
    probs = torch.softmax(torch.from_numpy(rng.normal(size=(3, b, 500)) * 3), -1)
    symbols = torch.from_numpy(rng.integers(0, 500, size=(3, b)))
    enc = BatchEncoder(b, precision)
    for k in range(3):
        enc.push(*(t.numpy() for t in Tables(frequencies(probs[k], precision)).interval(symbols[k])))
    words = enc.finish()
    dec = BatchDecoder(words, b, precision)
    for k in range(3):
        table = Tables(frequencies(probs[k], precision))
        sym = table.find(torch.from_numpy(dec.slots()))
        assert torch.equal(sym, symbols[k])
        dec.advance(*(t.numpy() for t in table.interval(sym)))
    dec.check_end()


# -- constriction as the reference ---------------------------------------------------------------

try:
    import constriction
except ImportError:  # only the reference comparisons need it
    constriction = None
needs_constriction = pytest.mark.skipif(constriction is None, reason="constriction is not installed")


def constriction_words(freq, symbols):
    """One stream through constriction's AnsCoder (64-bit state, 32-bit words, 24-bit precision),
    started from our initial state 2**32; `perfect=True` keeps exact dyadic probabilities exact."""
    coder = constriction.stream.stack.AnsCoder(np.array([0, 1], dtype=np.uint32))  # state = 2**32
    family = constriction.stream.model.Categorical(perfect=True)
    if len(symbols):
        coder.encode_reverse(symbols.astype(np.int32), family, freq.astype(np.float64) / 2.0 ** 24)
    return np.asarray(coder.get_compressed(), dtype=np.uint32)


@needs_constriction
@settings(max_examples=25, deadline=None)
@given(n=st.integers(0, 300), n_symbols=st.integers(2, 24), kind=st.sampled_from(["spread", "skewed", "extreme"]),
       seed=st.integers(0, 2 ** 32 - 1))
def test_one_stream_is_bit_identical_to_constriction(n, n_symbols, kind, seed):
    """Same rANS, same tables, same initial state: the same words, in the opposite order (constriction
    is a stack that keeps its state at the end; ours is read front to back)."""
    rng = np.random.default_rng(seed)
    freq = random_tables(rng, (n, 1), n_symbols, 24, kind)
    symbols = draw_symbols(rng, freq, 24)
    ours = encode(freq, symbols, 24)
    ref = constriction_words(freq[:, 0], symbols[:, 0])
    if ours.size == 0:  # we omit a stream that says nothing; constriction writes the state 2**32
        np.testing.assert_array_equal(ref, [0, 1])
    else:
        np.testing.assert_array_equal(ours, ref[::-1])


@needs_constriction
def test_interleaved_streams_cost_what_separate_constriction_streams_cost():
    rng = np.random.default_rng(7)
    n, b = 500, 6
    freq = random_tables(rng, (n, b), 16, 24, "spread")
    symbols = draw_symbols(rng, freq, 24)
    ours = encode(freq, symbols, 24)
    ref = sum(constriction_words(freq[:, i], symbols[:, i]).size for i in range(b))
    assert ours.size == ref  # interleaving adds nothing: B final states, every emitted word once


# -- quantisation ------------------------------------------------------------------------------------

def reference_frequencies(p, precision):
    """The documented recipe in numpy float64 / int64, for rows summing to at most 1."""
    m, a = 1 << precision, p.shape[1]
    f = np.floor(np.clip(p.astype(np.float64), 0, 1) * (m - a)).astype(np.int64) + 1
    assert (f.sum(1) <= m).all()
    first = np.argmax(f, axis=1)  # numpy: the first maximum
    f[np.arange(len(f)), first] += m - f.sum(1)
    return f


@FAST
@given(b=st.integers(1, 6), a=st.integers(1, 300), precision=st.integers(1, MAX_PRECISION),
       scale=st.floats(0.0, 30.0), double=st.booleans(), seed=st.integers(0, 2 ** 32 - 1))
def test_frequencies_sum_exactly_and_are_positive(b, a, precision, scale, double, seed):
    if a > 1 << precision:
        a = 1 << precision
    gen = torch.Generator().manual_seed(seed)
    probs = torch.softmax(torch.randn(b, a, generator=gen, dtype=torch.float64) * scale, -1)
    probs = probs if double else probs.float()
    f = frequencies(probs, precision)
    assert f.dtype == torch.int64 and f.shape == (b, a)
    assert (f >= 1).all() and (f.sum(1) == 1 << precision).all()
    assert torch.equal(f, frequencies(probs.clone(), precision))  # deterministic
    floors = np.floor(probs.double().numpy() * ((1 << precision) - a)) + 1
    if (floors.sum(1) <= 1 << precision).all():  # no row needs rescaling: the plain recipe applies
        np.testing.assert_array_equal(f.numpy(), reference_frequencies(probs.numpy(), precision))


def test_frequencies_give_the_remainder_to_the_first_largest_entry():
    p = torch.tensor([[0.2, 0.4, 0.4], [0.5, 0.25, 0.25], [0.0, 0.0, 1.0]], dtype=torch.float64)
    m = 1 << 10
    base = torch.floor(p * (m - 3)).long() + 1
    f = frequencies(p, 10)
    extra = f - base
    assert extra[0].tolist() == [0, int(m - base[0].sum()), 0]  # the tie goes to the lower index
    assert extra[1].tolist() == [int(m - base[1].sum()), 0, 0]
    assert f[2].tolist() == [1, 1, m - 2]
    flat = frequencies(torch.full((3, 5000), 1 / 5000), 24)  # 5000 equal maxima (vectorised kernels too)
    assert (flat[:, 1:] == flat[0, 1]).all() and (flat[:, 0] > flat[0, 1]).all()


@pytest.mark.parametrize("row", [
    [float("nan"), 0.5, 0.5], [1.0, 1.0, 1.0], [2.0, -1.0, 0.5], [float("inf"), 0.0, 0.0],
    [0.0, 0.0, 0.0], [0.999999, 0.000002, 0.0]])
def test_frequencies_of_malformed_rows_are_still_valid_tables(row):
    f = frequencies(torch.tensor([row]), 8)
    assert (f >= 1).all() and int(f.sum()) == 256


def test_frequencies_when_the_alphabet_fills_the_precision():
    f = frequencies(torch.softmax(torch.randn(2, 64), -1), 6)
    assert (f == 1).all()
    with pytest.raises(ValueError, match="does not fit"):
        frequencies(torch.full((1, 65), 1 / 65), 6)


def test_frequencies_reject_bad_arguments():
    with pytest.raises(ValueError, match="precision"):
        frequencies(torch.ones(1, 2) / 2, 0)
    with pytest.raises(ValueError, match="precision"):
        frequencies(torch.ones(1, 2) / 2, 32)
    with pytest.raises(ValueError, match="shape"):
        frequencies(torch.ones(4) / 4)
    with pytest.raises(TypeError, match="floating"):
        frequencies(torch.ones(1, 4, dtype=torch.int64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        frequencies(np.ones((1, 4)) / 4)


def test_find_inverts_interval_for_every_slot():
    rng = np.random.default_rng(3)
    precision = 6
    for kind in ("spread", "skewed", "extreme"):
        freq = torch.from_numpy(random_tables(rng, (4,), 9, precision, kind))
        table = Tables(freq)
        for slot in range(1 << precision):
            sym = table.find(torch.full((4,), slot))
            start, f = table.interval(sym)
            assert ((start <= slot) & (slot < start + f)).all()
        for symbol in range(9):
            start, f = table.interval(torch.full((4,), symbol))
            assert torch.equal(f, freq[:, symbol])
            for row in range(4):
                for slot in range(int(start[row]), int(start[row] + f[row])):
                    assert int(table.find(torch.full((4,), slot))[row]) == symbol


def test_tables_reject_bad_symbols():
    table = Tables(frequencies(torch.ones(2, 3) / 3, 8))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        table.interval(torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="one entry per row"):
        table.interval(torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="int64"):
        Tables(torch.ones(2, 3, dtype=torch.int32))


def test_virtual_symbols_are_appended_like_the_scorer_does():
    p = torch.softmax(torch.randn(3, 10), -1)
    q = with_virtual(p, 4)
    assert q.dtype == torch.float64 and q.shape == (3, 14)
    ref = np.concatenate([p.double().numpy() * (1.0 - VIRTUAL_MASS), np.full((3, 4), VIRTUAL_MASS / 4)], axis=1)
    np.testing.assert_array_equal(q.numpy(), ref)  # the same float64 operations as Scorer.probs
    assert torch.equal(with_virtual(p, 0), p.double())
    f = frequencies(q, 24)
    assert (f[:, 10:] == f[0, 10]).all() and abs(int(f[0, 10]) - VIRTUAL_MASS / 4 * 2 ** 24) <= 1
    with pytest.raises(ValueError, match="n_virtual"):
        with_virtual(p, -1)
    with pytest.raises(ValueError, match="virtual_mass"):
        with_virtual(p, 2, 0.0)


def test_code_length_bits():
    assert code_length_bits([1 << 23, 1 << 22], 24) == pytest.approx(3.0)
    assert code_length_bits(torch.tensor([1 << 24]), 24) == 0.0
    assert code_length_bits([], 24) == 0.0
    with pytest.raises(ValueError, match="frequencies"):
        code_length_bits([0], 24)


# -- validation and corrupted streams ---------------------------------------------------------------

def test_bad_intervals_raise_value_error():
    enc = BatchEncoder(2, 8)
    with pytest.raises(ValueError, match="freq=0"):
        enc.push([0, 0], [1, 0])
    with pytest.raises(ValueError, match="stream 1"):
        enc.push([0, 200], [1, 57])  # 200 + 57 > 256
    with pytest.raises(ValueError, match="not inside"):
        enc.push([-1, 0], [2, 2])
    with pytest.raises(ValueError, match="not inside"):
        enc.push([5, 0], [-3, 2])
    with pytest.raises(ValueError, match="shape"):
        enc.push([0, 0, 0], [1, 1, 1])
    with pytest.raises(TypeError, match="integer"):
        enc.push([0.0, 0.0], [1.0, 1.0])
    assert len(enc) == 0  # nothing bad was buffered
    dec = BatchDecoder(encode(np.full((1, 2, 2), 128), np.array([[1, 0]]), 8), 2, 8)
    with pytest.raises(ValueError, match="does not contain"):
        dec.advance([0, 0], [128, 128])  # stream 0's slot is in [128, 256)
    with pytest.raises(ValueError, match="freq=0"):
        dec.advance([128, 0], [0, 128])


@pytest.mark.parametrize("make", [
    lambda: BatchEncoder(0), lambda: BatchEncoder(2, 0), lambda: BatchEncoder(2, 32), lambda: BatchEncoder(2, True),
    lambda: BatchDecoder(np.zeros(0, np.uint32), 1, 40)])
def test_bad_configuration_raises_value_error(make):
    with pytest.raises(ValueError):
        make()


def test_finish_only_once():
    enc = BatchEncoder(1)
    enc.finish()
    with pytest.raises(RuntimeError):
        enc.finish()
    with pytest.raises(RuntimeError):
        enc.push([0], [1 << 24])


def _stream(seed=5, n=200, b=4):
    rng = np.random.default_rng(seed)
    freq = random_tables(rng, (n, b), 12, 24, "spread")
    symbols = draw_symbols(rng, freq, 24)
    return encode(freq, symbols, 24), freq


def test_every_truncation_raises_corrupt_stream_error():
    words, freq = _stream()
    for cut in range(words.size):
        with pytest.raises(CorruptStreamError):
            decode(words[:cut], freq, 24)


def test_extra_words_raise_corrupt_stream_error():
    words, freq = _stream()
    with pytest.raises(CorruptStreamError, match="left"):
        decode(np.concatenate([words, [123]]).astype(np.uint32), freq, 24)


def test_flipped_bits_raise_corrupt_stream_error():
    words, freq = _stream()
    rng = np.random.default_rng(11)
    for pos in rng.choice(words.size, size=40, replace=False):
        bad = words.copy()
        bad[pos] ^= np.uint32(1 << int(rng.integers(0, 32)))
        with pytest.raises(CorruptStreamError):
            decode(bad, freq, 24)


def test_random_words_raise_corrupt_stream_error():
    _, freq = _stream()
    rng = np.random.default_rng(13)
    for size in [0, 1, 7, 8, 9, 50, 500, 5000]:
        with pytest.raises(CorruptStreamError):
            decode(rng.integers(0, 2 ** 32, size=size, dtype=np.uint64).astype(np.uint32), freq, 24)


def test_malformed_word_arrays():
    with pytest.raises(CorruptStreamError, match="outside"):
        BatchDecoder(np.array([1, 2 ** 32], dtype=np.int64), 1)
    with pytest.raises(CorruptStreamError, match="below"):
        BatchDecoder(np.array([0, 5], dtype=np.uint32), 1)
    with pytest.raises(CorruptStreamError, match="truncated"):
        BatchDecoder(np.array([1, 0, 1], dtype=np.uint32), 2)
    with pytest.raises(TypeError, match="1-D integer"):
        BatchDecoder(np.zeros(4), 2)


@pytest.mark.parametrize("alphabet", [2, 256, 300])
def test_host_tables_equal_device_tables(alphabet):
    """The numpy tables a CPU model codes small alphabets with are the torch tables, bit for bit."""
    from kolmo.lm.coding.tables import HostTables, frequencies_host
    gen = torch.Generator().manual_seed(alphabet)
    p = torch.softmax(torch.randn(6, alphabet, generator=gen) * 4, dim=-1)
    p[1] *= 1.001  # a row summing to more than 1: the integer rescaling
    p[2, 0] = float("nan")
    for probs in (p, p.double()):
        want = frequencies(probs, 24)
        got = frequencies_host(probs.numpy(), 24)
        np.testing.assert_array_equal(got, want.numpy())
        host, dev = HostTables(got), Tables(want)
        sym = np.arange(6) % alphabet
        np.testing.assert_array_equal(np.stack(host.interval_host(sym)), np.stack(dev.interval_host(sym)))
        slots = np.array([0, 1, (1 << 23), (1 << 24) - 1, 12345, 999], dtype=np.int64)
        np.testing.assert_array_equal(host.find_host(slots), dev.find_host(slots))
