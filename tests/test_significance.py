"""kolmo.gap_test and kolmo.pairing_test: calibration, power, determinism, cache, bad inputs."""

import json
import math

import numpy as np
import pytest

import kolmo
from benchmarks.calibration import random_text, related, vocabulary

FAST = {"compressor": "zstd", "level": 3}


@pytest.fixture
def source():  # a fresh generator per test: results do not depend on which tests run
    rng = np.random.default_rng(2024)
    vocab = vocabulary(rng)
    return rng, vocab, lambda: random_text(rng, vocab, int(rng.integers(300, 400)))


def test_gap_test_calibration_and_power(source):
    """Independent pairs: share of p < 0.05 <= 0.08; Y holding an 80-byte chunk of X: p < 0.05 in most."""
    rng, _, text = source
    comp = kolmo.get_compressor("zstd", level=3)
    trials, false_pos, hits = 200, 0, 0
    for _ in range(trials):
        x, y = text(), text()
        null = [text() for _ in range(99)]
        false_pos += kolmo.gap_test(x, y, null, comp, n_boot=0, cache=False).p_value < 0.05
        hits += kolmo.gap_test(x, related(rng, x, y, 80), null, comp, n_boot=0, cache=False).p_value < 0.05
    assert false_pos / trials <= 0.08
    assert hits / trials >= 0.9


def test_pairing_test_calibration_and_power(source):
    rng, _, text = source
    comp = kolmo.get_compressor("zstd", level=3)
    trials, false_pos, hits = 100, 0, 0
    for t in range(trials):
        xs = [text() for _ in range(12)]
        ys = [text() for _ in range(12)]
        kw = dict(n_perm=199, n_boot=0, cache=False, progress=False, seed=t)
        false_pos += kolmo.pairing_test(xs, ys, comp, **kw).p_value < 0.05
        if t < 30:
            ys = [related(rng, a, b, 16) for a, b in zip(xs, ys)]
            hits += kolmo.pairing_test(xs, ys, comp, **kw).p_value < 0.05
    assert false_pos / trials <= 0.08
    assert hits / 30 >= 0.8


def test_gap_test_result(source):
    _, _, text = source
    x = text()
    y = x[:150] + text()
    null = {f"z{k}": text() for k in range(30)}
    r = kolmo.gap_test(x, y, null, seed=1, cache=False, **FAST)
    assert r.observed == kolmo.joint_gap(x, y, **FAST).gap
    assert list(r.null_gaps) == [kolmo.joint_gap(x, z, **FAST).gap for z in null.values()]
    assert r.n_null == 30 and r.null_mean == pytest.approx(np.mean(r.null_gaps))
    assert r.null_sd == pytest.approx(np.std(r.null_gaps, ddof=1))
    assert r.p_value == 1 / 31  # y holds half of x: it beats every unrelated item
    assert r.effect == r.observed - r.null_mean and r.effect_sd == pytest.approx(r.effect / r.null_sd)
    lo, hi = r.ci
    assert lo <= r.effect <= hi and "null pool" in r.ci_of
    assert r == kolmo.gap_test(x, y, list(null.values()), seed=1, cache=False, **FAST)  # deterministic
    d = json.loads(r.to_json())
    assert d["p_value"] == r.p_value and d["effect"] == r.effect and d["config"]["level"] == 3
    assert d["units"] == "bits" and d["bits_kind"] == "compressed" and d["test"] == "GapTestResult"
    assert "p-value" in repr(r) and "one-sided" in repr(r)
    with pytest.raises(AttributeError):
        r.p_value = 0.5  # frozen
    assert kolmo.gap_test(x, y, null, n_boot=0, cache=False, **FAST).ci is None


def test_pairing_test_result(source):
    rng, _, text = source
    xs = [text() for _ in range(6)]
    ys = [related(rng, a, text(), 100) for a in xs]
    r = kolmo.pairing_test(xs, ys, n_perm=500, seed=3, cache=False, progress=False, **FAST)
    assert r.gaps.shape == (6, 6)
    assert r.gaps[2, 4] == kolmo.joint_gap(xs[2], ys[4], **FAST).gap
    assert r.observed == pytest.approx(np.mean(np.diag(r.gaps))) and list(r.pair_gaps) == np.diag(r.gaps).tolist()
    assert r.p_value < 0.01 and r.n_null == 500 and r.effect > 0 and r.effect_sd > 3
    assert r.ci[0] <= r.observed <= r.ci[1] and "pairs" in r.ci_of
    again = kolmo.pairing_test(xs, ys, n_perm=500, seed=3, cache=False, progress=False, **FAST)
    assert again == r and again.to_dict() == r.to_dict()
    assert "gaps" not in r.to_dict() and json.loads(r.to_json())["n_pairs"] == 6
    # derangements: every null pairing is wrong, so their mean is the mean over unrelated pairs
    dr = kolmo.pairing_test(xs, ys, n_perm=5000, permutation="derangement", seed=0, cache=False,
                            progress=False, **FAST)
    off = r.gaps[~np.eye(6, dtype=bool)].mean()
    assert dr.null_mean == pytest.approx(off, rel=0.02) and dr.permutation == "derangement"
    assert dr.p_value == 1 / 5001
    assert "derangement" in repr(dr)


def test_pairing_test_uses_the_cache(source, tmp_path):
    """The n x n gaps go through the results cache: a re-run compresses nothing, matrix() agrees."""
    _, _, text = source
    xs, ys = [text() for _ in range(4)], [text() for _ in range(4)]
    comp = kolmo.get_compressor("zstd", level=3)
    calls = {"joint": 0, "bits": 0}
    joint, bits_many = comp.joint_bits, comp.bits_many

    def count_joint(pairs):
        calls["joint"] += len(pairs)
        return joint(pairs)

    def count_bits(datas):
        calls["bits"] += len(datas)
        return bits_many(datas)

    comp.joint_bits, comp.bits_many = count_joint, count_bits
    db = tmp_path / "c.sqlite"
    first = kolmo.pairing_test(xs, ys, comp, n_perm=100, seed=0, cache=db, progress=False)
    assert calls == {"joint": 16, "bits": 8}
    second = kolmo.pairing_test(xs, ys, comp, n_perm=100, seed=0, cache=db, progress=False)
    assert calls == {"joint": 16, "bits": 8} and second == first
    m = kolmo.matrix(xs + ys, comp, measure="gap", cache=db, progress=False)  # shares the entries
    assert calls == {"joint": 64, "bits": 8}  # only the 48 pairs the test did not need
    assert np.array_equal(np.asarray(m)[:4, 4:], first.gaps)
    g = kolmo.gap_test(xs[0], ys[0], ys[1:], comp, cache=db, seed=0)
    assert calls == {"joint": 64, "bits": 8} and g.observed == first.gaps[0, 0]


def test_any_compressor(any_compressor):
    x = b"the quick brown fox jumps over the lazy dog, again and again. " * 2
    ys = [x[:40] + b" and then some", b"lorem ipsum dolor sit amet", b"completely other words here"]
    r = kolmo.gap_test(x, ys[0], ys[1:], any_compressor, cache=False, seed=0, n_boot=50)
    assert r.observed == pytest.approx(kolmo.joint_gap(x, ys[0], compressor=any_compressor).gap)
    assert r.compressor == any_compressor.name and r.bits_kind == any_compressor.bits_kind
    p = kolmo.pairing_test([x, ys[1]], [ys[0], ys[2]], any_compressor, n_perm=20, seed=0, cache=False,
                           progress=False)
    assert p.gaps[0, 1] == pytest.approx(kolmo.joint_gap(x, ys[2], compressor=any_compressor).gap)
    assert 0 < p.p_value <= 1


def test_bad_inputs():
    with pytest.raises(ValueError, match="null is empty"):
        kolmo.gap_test(b"x", b"y", [])
    with pytest.raises(TypeError, match="sequence of items"):
        kolmo.gap_test(b"x", b"y", b"not a pool")
    with pytest.raises(TypeError, match="sequence of items"):
        kolmo.gap_test(b"x", b"y", "some text")
    with pytest.raises(TypeError, match="list of items"):
        kolmo.gap_test(b"x", b"y", 3)
    with pytest.raises(TypeError, match="expected bytes"):
        kolmo.gap_test(b"x", 3.5, [b"z"])  # (a list for y is a dataset: tests/test_datasets.py)
    with pytest.raises(ValueError, match="n_boot"):
        kolmo.gap_test(b"x", b"y", [b"z"], n_boot=-1)
    with pytest.raises(ValueError, match="confidence"):
        kolmo.gap_test(b"x", b"y", [b"z"], confidence=95)
    with pytest.raises(ValueError, match="2 xs and 3 ys"):
        kolmo.pairing_test([b"a", b"b"], [b"a", b"b", b"c"])
    with pytest.raises(ValueError, match="n_perm must be a positive int"):
        kolmo.pairing_test([b"a", b"b"], [b"a", b"b"], n_perm=0)
    with pytest.raises(TypeError, match="n_perm"):  # a wrong type is a TypeError (kolmo.options)
        kolmo.pairing_test([b"a", b"b"], [b"a", b"b"], n_perm=True)
    with pytest.raises(ValueError, match="at least 2 pairs"):
        kolmo.pairing_test([b"a"], [b"b"])
    with pytest.raises(ValueError, match="permutation must be one of"):
        kolmo.pairing_test([b"a", b"b"], [b"a", b"b"], permutation="shuffle-lines")
    with pytest.warns(kolmo.KolmoWarning, match="contains x itself"):
        kolmo.gap_test(b"abc", b"abd", [b"abc", b"xyz"], cache=False)


def test_effect_sd_degenerate():
    r = kolmo.gap_test(b"aaaa", b"aaaa", [b"bbbb"], cache=False, n_boot=10, seed=0)
    assert r.null_sd == 0.0 and (math.isinf(r.effect_sd) or math.isnan(r.effect_sd))
