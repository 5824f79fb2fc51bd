"""A dataset is one argument: a collection of documents for x, y or given, joined by one rule per family."""

from pathlib import Path

import pytest

import kolmo
from kolmo.inputs import as_dataset, is_dataset

DOCS = ["the cat sat on the mat. ", "the dog sat on the log. ", "a cow in the meadow. "]


def test_a_list_of_documents_is_one_input_joined_by_the_codecs_separator():
    r = kolmo.joint_gap(DOCS[:2], "the cow", compressor="zstd")
    joined = "\x1e".join(DOCS[:2]) + ""
    plain = kolmo.joint_gap(joined, "the cow", compressor="zstd")
    assert (r.c_x, r.c_xy, r.gap) == (plain.c_x, plain.c_xy, plain.gap)
    assert r.documents_x == 2 and r.documents_y is None and r.separator == "\x1e"
    assert plain.documents_x is None and plain.separator is None
    assert r.to_dict()["documents_x"] == 2


@pytest.mark.parametrize("make", [
    lambda docs: docs, lambda docs: tuple(docs), lambda docs: {f"d{i}": d for i, d in enumerate(docs)},
    lambda docs: (d for d in docs), lambda docs: iter([d.encode() for d in docs])])
def test_any_iterable_of_documents(make):
    want = kolmo.conditional_bits("the cow", "\x1e".join(DOCS), compressor="zstd")
    assert kolmo.conditional_bits("the cow", given=make(DOCS), compressor="zstd") == want


def test_a_pandas_series_and_a_folder(tmp_path):
    pd = pytest.importorskip("pandas")
    want = kolmo.ncd("\x1e".join(DOCS), "the cow", compressor="lzma")
    assert kolmo.ncd(pd.Series(DOCS), "the cow", compressor="lzma") == want
    for i, d in enumerate(DOCS):
        (tmp_path / f"{i}.txt").write_text(d)
    assert kolmo.ncd(tmp_path, "the cow", compressor="lzma") == want
    assert kolmo.ncd(Path(tmp_path / "0.txt"), "the cow", compressor="lzma") == kolmo.ncd(DOCS[0], "the cow", compressor="lzma")


def test_single_inputs_stay_single():
    for one in (b"bytes", "text", bytearray(b"x"), memoryview(b"y")):
        assert not is_dataset(one) and as_dataset(one, b"|") == (bytes(one) if not isinstance(one, str) else one.encode(), None)
    assert as_dataset(["a", b"b"], b"|") == (b"a|b", 2)
    np = pytest.importorskip("numpy")
    assert not is_dataset(np.zeros(3, dtype=np.uint8))
    with pytest.raises(TypeError, match=r"x\[1\]"):
        kolmo.joint_gap(["ok", 3.5], "y", compressor="zstd")


def test_explain_and_gap_test_take_datasets():
    e = kolmo.explain("the cat sat on the hat. ", given=DOCS, compressor="zstd")
    assert e.c_y_given_x == kolmo.conditional_bits("the cat sat on the hat. ", "\x1e".join(DOCS), compressor="zstd")
    t = kolmo.gap_test(DOCS, "the cat sat on the hat. ", null=["zebra quartz " * 2, "lorem ipsum " * 2],
                       compressor="zstd", n_boot=0)
    want = kolmo.joint_gap("\x1e".join(DOCS), "the cat sat on the hat. ", compressor="zstd").gap
    assert t.observed == pytest.approx(want)


def test_the_language_models_join_with_a_paragraph_break(tiny_model_dir):
    lm = kolmo.get_compressor("lm", model=str(tiny_model_dir), window=64, stride=32, progress=False)
    assert lm.document_separator == b"\n\n"
    r = kolmo.joint_gap(DOCS, "the cow", compressor=lm)
    assert r.c_x == lm.bits("\n\n".join(DOCS)) and r.separator == "\n\n"
