"""What a new user meets first: quiet progress when asked, clear option errors, the version flag."""

import json

import pytest

import kolmo
from kolmo import progress
from kolmo.cli import main

TEXTS = {"fox": b"The quick brown fox jumps over the lazy dog. " * 3,
         "times": b"It was the best of times, it was the worst of times. " * 3,
         "genesis": b"In the beginning God created the heaven and the earth. " * 3}


# -- progress ---------------------------------------------------------------------------------------

def test_progress_switch_semantics():
    assert progress.wanted(True, 10) and not progress.wanted(False, 10)
    assert not progress.wanted(None, 10, min_total=100) and progress.wanted(None, 100, min_total=100)
    assert not progress.wanted(True, 0)
    with progress.silenced():
        assert not progress.allowed() and not progress.wanted(True, 10)
        with progress.silenced(False):
            assert not progress.allowed()
    assert progress.allowed()


def _fresh_tiny_lm(tmp_path, **options):
    """A tiny model never loaded in this process before, so loading happens inside the test."""
    pytest.importorskip("torch")
    from tiny_lm import build_tiny_model
    path = build_tiny_model(tmp_path / "m", seed=7)
    return kolmo.get_compressor("lm", model=str(path), window=64, stride=32, **options)


def test_lm_matrix_progress_false_prints_nothing(tmp_path, capfd):
    lm = _fresh_tiny_lm(tmp_path, progress=True)  # the compressor would show its bars on its own
    capfd.readouterr()
    m = kolmo.matrix(TEXTS, compressor=lm, measure="ncd", progress=False, cache=False)
    assert m.values.shape == (3, 3)
    out, err = capfd.readouterr()
    assert err == "" and out == ""


def test_lm_matrix_progress_true_shows_one_bar_for_the_job(tmp_path, capfd):
    lm = _fresh_tiny_lm(tmp_path, progress=True)
    lm.scorer  # load outside the captured part: only the matrix's own display is checked
    capfd.readouterr()
    kolmo.matrix(TEXTS, compressor=lm, measure="conditional", progress=True, cache=False)
    err = capfd.readouterr().err
    assert "kolmo matrix (lm)" in err
    assert "kolmo lm" not in err  # no per-row scoring bars underneath


def test_lm_loading_is_quiet_without_progress(tmp_path, capfd):
    lm = _fresh_tiny_lm(tmp_path)
    capfd.readouterr()
    kolmo.joint_gap(TEXTS["fox"], TEXTS["times"], compressor=lm, progress=False)
    out, err = capfd.readouterr()
    assert err == "" and out == ""


def test_lm_own_bars_show_when_asked(tiny_lm, capfd):
    tiny_lm.scorer.progress = True  # the fixture is quiet; ask this instance for bars
    try:
        capfd.readouterr()
        tiny_lm.bits(TEXTS["genesis"])
        assert "kolmo lm: scoring" in capfd.readouterr().err
    finally:
        tiny_lm.scorer.progress = False


# -- options ----------------------------------------------------------------------------------------

def test_misspelt_option_names_compressor_options_and_closest():
    with pytest.raises(TypeError) as info:
        kolmo.joint_gap(b"x", b"y", compressor="zstd", levle=3)
    text = str(info.value)
    assert "'zstd'" in text and "'levle'" in text and "did you mean 'level'?" in text and "level" in text


@pytest.mark.parametrize("name, wrong, right", [("lm-online", "lrr", "lr"), ("lm-online", "verfy", "verify"),
                                                ("lm", "windw", "window")])
def test_both_lm_compressors_answer_a_misspelt_option_alike(name, wrong, right):
    """Checked before any model loads: the options and the closest, as every other compressor."""
    with pytest.raises(TypeError) as info:
        kolmo.get_compressor(name, model="scratch" if name == "lm-online" else None, **{wrong: 1})
    text = str(info.value)
    assert f"compressor {name!r} has no option {wrong!r} (did you mean {right!r}?)" in text and "its options are" in text


def test_option_values_get_one_kind_of_error():
    """A value of the wrong type is a TypeError, one out of range a ValueError, whichever compressor."""
    for name, opts in (("lm-online", {"model": "scratch", "window": "3"}), ("lm", {"window": "3"}),
                       ("zstd", {"level": "3"})):
        with pytest.raises(TypeError, match="must be (a positive|an) int"):
            kolmo.get_compressor(name, **opts)
    for name, opts in (("lm-online", {"model": "scratch", "steps": -1}), ("lm", {"stride": 0}),
                       ("zstd", {"level": 99})):
        with pytest.raises(ValueError):
            kolmo.get_compressor(name, **opts)


def test_unknown_option_without_close_match_lists_options():
    with pytest.raises(TypeError) as info:
        kolmo.get_compressor("lzma", colour="blue")
    text = str(info.value)
    assert "did you mean" not in text and "preset" in text and "'colour'" in text


def test_cli_options_with_commas_are_tuples():
    from kolmo.cli import _option
    assert _option("eta=0.1,0.02,1") == ("eta", (0.1, 0.02, 1))
    assert _option("mix=learner,ngram") == ("mix", ("learner", "ngram"))
    assert _option("level=3") == ("level", 3) and _option("verify=false") == ("verify", False)


def test_cli_misspelt_option(capsys):
    assert main(["gap", "-O", "levle=3"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'level'?" in err


# -- version ----------------------------------------------------------------------------------------

def test_version_flag(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"kolmo {kolmo.__version__}"


def test_list_json_has_version(capsys):
    assert main(["list", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["kolmo_version"] == kolmo.__version__ and "zstd" in d["compressors"]
