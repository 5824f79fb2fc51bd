"""The benchmark runner's pure parts: analytic mutual information, sources, the regression gate;
the significance tests' calibration script."""

import json
import math

import pytest

from benchmarks.calibration import main as calibration_main
from benchmarks.suite import compare, substitution_mi, synthetic_sources


def test_substitution_mi():
    assert substitution_mi(100, 0.0) == 800.0
    assert substitution_mi(100, 1.0) == pytest.approx(100 * (8 - 8), abs=1e-9)  # Y independent of X
    q = 1 - 0.2 + 0.2 / 256
    h = -q * math.log2(q) - (255 * 0.2 / 256) * math.log2(0.2 / 256)
    assert substitution_mi(10, 0.2) == pytest.approx(10 * (8 - h))


def test_synthetic_sources_have_their_entropy():
    src = synthetic_sources(n=5000)
    assert src["uniform-bytes"]["entropy_bpb"] == 8.0
    assert src["geometric-16"]["entropy_bpb"] == pytest.approx(2.0, abs=0.01)
    assert 1.0 < src["markov-acgt"]["entropy_bpb"] < 2.0
    assert set(src["markov-acgt"]["data"]) == set(b"ACGT")


def _res(bpb, gap, settings=None):
    return {"settings": settings or {"lm_bytes": 1, "slice": 1, "calibration_bytes": 1},
            "compressors": {"zstd": {"bits_per_byte": {"t": {"bytes": 10, "bits_per_byte": bpb}},
                                     "calibration": {"c": {"gap": gap, "true_mi": 5.0}},
                                     "genesis": {}}}}


def test_compare_flags_quality_regressions_only():
    old = _res(2.0, 100.0)
    assert compare(_res(2.03, 99.0), old, 0.02) == []           # within 2%
    assert len(compare(_res(2.1, 100.0), old, 0.02)) == 1       # bits/byte up 5%
    assert len(compare(_res(2.0, 90.0), old, 0.02)) == 1        # gap down 10%
    other = _res(2.0, 10.0, {"lm_bytes": 2, "slice": 1, "calibration_bytes": 1})
    assert compare(other, old, 0.02) == []                      # other sizes: gaps not comparable


def test_calibration_prints_json_with_versions(capsys):
    res = calibration_main(["--trials", "2", "--pool", "9", "--pairs", "4"])
    printed = json.loads(capsys.readouterr().out)
    assert printed == res and res["benchmark"] == "calibration" and res["env"]["kolmo"]
    assert (res["trials"], res["pool"], res["pairs"], res["zstd_level"]) == (2, 9, 4, 3)
    rates = [res["gap_test_false_positive_rate"], res["pairing_test_false_positive_rate"],
             *res["gap_test_power"].values(), *res["pairing_test_power"].values()]
    assert len(rates) == 6 and all(0 <= r <= 1 for r in rates)


@pytest.mark.usefixtures("one_torch_thread")
def test_mix_bench_conditional_table_is_the_compressors_conditional_code():
    """mix_bench's C(Y|X) table reads the parts' columns from the same shared runs that
    ``conditional_bits`` makes: the mixture's figure is the compressor's, and each part's is the
    difference of its XY and X columns (a tiny scratch mixture: no corpus, no pretrained model)."""
    import kolmo
    from benchmarks.mix_bench import conditional_table
    opts = dict(model="scratch", layers=1, width=32, heads=2, context=32, ngram=0, block_tokens=16,
                progress=False)
    comp = kolmo.get_compressor("lm-online", **opts)
    y = b"the cat sat on the hat. "
    for x, tails in ((b"the cat sat on the mat. " * 4 + b"!", {"head", "x", "xy"}),
                     (b"the cat sat on the mat. " * 4, {"head", "xy"})):  # X ends on a block: no X tail
        mix, parts, secs, runs = conditional_table(comp, x, y)
        assert mix == kolmo.get_compressor("lm-online", **opts).conditional_bits(y, x)
        assert set(runs) == tails and secs >= 0 and list(parts) == list(comp.prequential.experts)
        zero = 0 * runs["xy"][0].sum(axis=0)
        cx = runs["x"][0].sum(axis=0) if "x" in runs else zero
        assert parts == dict(zip(comp.prequential.experts, (runs["xy"][0].sum(axis=0) - cx).tolist()))
        alone = kolmo.get_compressor("lm-online", **{**opts, "mix": None}).conditional_bits(y, x)
        assert parts["learner"] == pytest.approx(alone, rel=1e-9)  # the learner never sees the mixture
    mix0, parts0, _, runs0 = conditional_table(comp, b"", y)
    assert set(runs0) == {"xy"} and mix0 == kolmo.get_compressor("lm-online", **opts).bits(y)


@pytest.mark.usefixtures("one_torch_thread")
def test_mix_bench_coding_times_both_round_trips(tmp_path, capsys):
    """mix_bench's coding part really codes with the learner alone and the mixture (a tiny scratch
    model, a stand-in lcet10.txt) and reports the mixture's CPU time against the learner's."""
    from types import SimpleNamespace

    from benchmarks.mix_bench import part_coding
    (tmp_path / "canterbury-mixed").mkdir()
    (tmp_path / "canterbury-mixed" / "lcet10.txt").write_bytes(b"the cat sat on the mat; the cat ate the rat. " * 12)
    tiny = dict(layers=1, width=32, heads=2, context=32, ngram=0, block_tokens=16)
    a = SimpleNamespace(mix_opts=json.dumps(tiny), device="cpu", progress=False, coding_bytes=300, coding_rounds=1)
    res = part_coding(a, tmp_path)
    assert res["bytes"] == 300 and set(res["cpu_seconds"]) == {"learner alone", "mixture"}
    enc, dec = res["cpu_seconds"]["mixture"]
    assert enc > 0 and dec > 0 and res["compress_ratio"] == enc / res["cpu_seconds"]["learner alone"][0]
    assert "goal <= 1.2 x" in capsys.readouterr().out


@pytest.mark.usefixtures("one_torch_thread")
def test_mix_bench_autocast_times_both_learning_steps(tmp_path, capsys, tiny_model_dir):
    """mix_bench's autocast part takes the same learning step in float32 and under bf16 autocast (a
    tiny random Llama, a stand-in Finnish text) and reports the speed-up and both blocks' bits."""
    from types import SimpleNamespace

    from benchmarks.mix_bench import part_autocast
    (tmp_path / "genesis").mkdir()
    (tmp_path / "genesis" / "finnish.txt").write_bytes("Alussa loi Jumala taivaan ja maan. ".encode("latin-1") * 20)
    opts = dict(model=str(tiny_model_dir), window=48, block_tokens=16)
    a = SimpleNamespace(mix_opts=json.dumps(opts), device="cpu", progress=False, coding_rounds=2)
    res = part_autocast(a, tmp_path)
    assert res["window"] == 48 and res["tokens_learned"] == 16 and isinstance(res["native_bf16"], bool)
    f32, b16 = res["float32"], res["bfloat16"]
    assert len(f32["seconds"]) == len(b16["seconds"]) == 2
    assert res["speedup"] == min(f32["seconds"]) / min(b16["seconds"])
    assert f32["bits_theta0"] != b16["bits_theta0"] and abs(res["bits_rel_diff"]) < 0.02
    assert "speed-up" in capsys.readouterr().out


@pytest.mark.usefixtures("one_torch_thread")
def test_mix_bench_without_each_part_is_the_smaller_mixtures_code():
    """mix_bench's "without each part" re-mixes the runs' columns without one part: what a
    compressor with the other parts codes (the parts never see the mixture)."""
    import kolmo
    from benchmarks.mix_bench import conditional_table, without_each
    opts = dict(model="scratch", layers=1, width=32, heads=2, context=32, ngram=0, block_tokens=16,
                progress=False, ngram_orders=(1, 2))
    comp = kolmo.get_compressor("lm-online", **opts)
    x, y = b"the cat sat on the mat. " * 4 + b"!", b"the cat sat on the hat. "
    runs = conditional_table(comp, x, y)[3]
    got = without_each(comp, runs)
    assert list(got) == ["learner", "ngram", "match"]
    for part, bits in got.items():
        rest = tuple(p for p in ("learner", "ngram", "match") if p != part)
        smaller = kolmo.get_compressor("lm-online", **{**opts, "mix": rest})
        assert bits == pytest.approx(smaller.conditional_bits(y, x), rel=1e-12)
    single = without_each(comp, {"xy": runs["xy"]})
    assert set(single) == set(got) and all(v > 0 for v in single.values())


@pytest.mark.usefixtures("one_torch_thread")
def test_remix_of_saved_columns_is_what_the_compressor_codes(tmp_path, capsys):
    """benchmarks.remix mixes a run's saved columns again: with the run's settings it gives the
    compressor's C(Y|X); with a stack's rates or a part dropped, what the compressor with those
    options codes; a column of another input is refused."""
    import kolmo
    from benchmarks import remix
    from benchmarks.mix_bench import conditional_table, save_columns
    opts = dict(model="scratch", layers=1, width=32, heads=2, context=32, ngram=0, block_tokens=16,
                progress=False, ngram_orders=(1, 2))
    x, y = b"the cat sat on the mat. " * 4 + b"!", b"the cat sat on the hat. "
    comp = kolmo.get_compressor("lm-online", **opts)
    runs = conditional_table(comp, x, y)[3]
    save_columns(str(tmp_path / "run.npz"), runs, comp.prequential.experts)
    got = remix.main([str(tmp_path / "run.npz"), "--eta", str(comp.prequential.eta), "--share", str(comp.prequential.share)])
    assert got == pytest.approx(comp.conditional_bits(y, x), rel=1e-12)
    assert "ngram1" in capsys.readouterr().out
    stack = kolmo.get_compressor("lm-online", **opts, eta=(0.05, 1.0))
    assert remix.main([str(tmp_path / "run.npz"), "--eta", "0.05,1"]) == pytest.approx(
        stack.conditional_bits(y, x), rel=1e-12)
    small = kolmo.get_compressor("lm-online", **{**opts, "mix": ("learner", "match")})
    assert remix.main([str(tmp_path / "run.npz"), "--eta", "0.05", "--drop", "ngram"]) == pytest.approx(
        small.conditional_bits(y, x), rel=1e-12)
    other = conditional_table(kolmo.get_compressor("lm-online", **opts), x + x, y)[3]
    save_columns(str(tmp_path / "other.npz"), other, comp.prequential.experts)
    with pytest.raises(ValueError, match="must have .* tokens"):
        remix.main([str(tmp_path / "run.npz"), "--add", f"more={tmp_path / 'other.npz'}"])
    same = remix.main([str(tmp_path / "run.npz"), "--eta", "0.05", "--drop", "ngram",
                       "--add", f"ngram1={tmp_path / 'run.npz'}:ngram1", "--add", f"ngram2={tmp_path / 'run.npz'}:2"])
    assert same == pytest.approx(comp.conditional_bits(y, x), rel=1e-12)  # the same columns, put back
    with pytest.raises(ValueError, match="no column 'cache'"):
        remix.other_column(f"{tmp_path / 'run.npz'}:cache")


def test_noisy_copies_have_their_entropy():
    """The noisy-copy benchmark's channels: the substitution rate and its H(Y|X) = h(r) + r log2(A-1),
    a changed symbol is never the same one, and the indel bound is above the substitution-free case."""
    import numpy as np
    from benchmarks.noisy_copies import indel_bound, indel_copy, substituted_copy, substitution_entropy
    x, y = substituted_copy(8, 0.1, 20_000, seed=1)
    a, b = np.frombuffer(x, np.uint8), np.frombuffer(y, np.uint8)
    assert a.max() == 7 and b.max() == 7 and abs((a != b).mean() - 0.1) < 0.01
    assert substitution_entropy(2, 0.5) == pytest.approx(1.0)   # a fair coin flip of a bit
    assert substitution_entropy(8, 0.1) == pytest.approx(0.4690 + 0.1 * math.log2(7), abs=1e-4)
    assert substitution_entropy(32, 31 / 32) == pytest.approx(5.0)  # Y independent of X: log2 A
    x, y = indel_copy(32, 0.01, 20_000, seed=2)
    assert abs(len(y) - len(x)) < 100 and y != x      # about as many inserted as deleted (200 each)
    assert indel_copy(32, 0.0, 1000, seed=2)[1] == indel_copy(32, 0.0, 1000, seed=2)[0]
    assert indel_bound(32, 0.0) == 0.0 and indel_bound(32, 0.01) > substitution_entropy(32, 0.01)
