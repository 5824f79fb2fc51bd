"""kolmo.explain: parts that sum to C(Y) and C(Y|X), HTML, CLI; Compressor.code_parts and CodeParts."""

import json
import math
from html.parser import HTMLParser

import numpy as np
import pytest

import kolmo
from kolmo.compressors.base import CodeParts, Compressor

X = (b"In the beginning God created the heaven and the earth. And the earth was without form, "
     b"and void; and darkness was upon the face of the deep. " * 3)
Y = (b"And God said, Let there be light: and there was light. In the beginning God created the "
     b"heaven and the earth. <b>&amp;</b> \"quoted\" caf\xc3\xa9 \xff\xfe\x00\x04 tail\n" * 2)


def _check_spans(e, y):
    assert e.spans[0][0] == 0 and e.spans[-1][1] == len(y)
    assert all(a[1] == b[0] for a, b in zip(e.spans, e.spans[1:]))
    assert len(e.bits_alone) == len(e.bits_given) == len(e.spans) == len(e)


@pytest.mark.parametrize("name", ["zstd", "zlib", "lzma", "bz2", "ppmd"])
def test_codec_parts_telescope_exactly(name):
    comp = kolmo.get_compressor(name)
    e = kolmo.explain(Y, given=X, compressor=comp, block=24)
    _check_spans(e, Y)
    assert e.unit == "block" and e.block == 24 and all(b - a == 24 for a, b in e.spans[:-1])
    assert sum(e.bits_alone) == e.c_y == comp.bits(Y)
    assert sum(e.bits_given) == e.c_y_given_x == comp.conditional_bits(Y, X)
    assert sum(e.saved) == e.total_saved == comp.bits(Y) - comp.conditional_bits(Y, X)
    assert e.total_saved > 0  # Y repeats a sentence of X
    per_byte = e.saved_per_byte()
    assert per_byte.shape == (len(Y),) and per_byte.sum() == pytest.approx(e.total_saved)
    assert e.compressor == name and e.config == comp.config


def test_codec_default_block_and_errors():
    e = kolmo.explain(Y * 20, given=X, compressor="zstd", level=3)
    assert e.block == max(16, -(-len(Y * 20) // 256)) and len(e) <= 256
    empty = kolmo.explain(b"", given=X)
    assert len(empty) == 0 and empty.c_y == 0 and empty.c_y_given_x == 0 and "<pre" in empty.to_html()
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="block must be a positive int"):
            kolmo.explain(Y, given=X, block=bad)
    with pytest.raises(TypeError, match="expected bytes"):
        kolmo.explain(3.5, given=X)  # (a list for y is a dataset: tests/test_datasets.py)


def test_default_code_parts_cover_the_input_and_telescope(classical):
    parts = classical.code_parts(Y, block=24)
    assert parts.unit == "block" and parts.block == 24 and len(parts.bits) == len(parts.spans) == -(-len(Y) // 24)
    assert parts.spans[0][0] == 0 and parts.spans[-1][1] == len(Y)
    assert all(a[1] == b[0] for a, b in zip(parts.spans, parts.spans[1:]))
    assert sum(parts.bits) == parts.total == classical.bits(Y)
    given = classical.code_parts(Y, given=X, block=24)
    assert given.spans == parts.spans and given.total == classical.conditional_bits(Y, X)
    assert classical.code_parts(Y).block == max(16, -(-len(Y) // 256))
    empty = classical.code_parts(b"", given=X)
    assert empty.spans == () and empty.bits == () and empty.total == 0.0
    with pytest.raises(ValueError, match="block must be a positive int"):
        classical.code_parts(Y, block=0)


def test_code_parts_checks_its_fields():
    parts = CodeParts(spans=[(0, 2), [2, 5]], bits=np.array([1.5, 2.0]), unit="token")
    assert parts.spans == ((0, 2), (2, 5)) and parts.bits == (1.5, 2.0) and parts.total == 3.5
    for bad in (dict(spans=[(0, 2), (3, 5)]), dict(spans=[(1, 5)], bits=[1.0]), dict(bits=[1.0]),
                dict(unit="byte"), dict(block=4)):
        with pytest.raises(ValueError):
            CodeParts(**{"spans": [(0, 2), (2, 5)], "bits": [1.0, 2.0], "unit": "token", **bad})
    with pytest.raises(ValueError, match="block must be None"):
        CodeParts(spans=(), bits=(), unit="block")


class _ByteModel(Compressor):
    """A toy token model: adaptive byte frequencies (add-one), one token per byte, exact parts."""

    name = "byte-model-test"
    bits_kind = "ideal"

    @property
    def config(self):
        return {"codec": "byte-model"}

    def _terms(self, data, context=b""):
        counts = np.ones(256)
        for b in context:
            counts[b] += 1
        out = []
        for b in data:
            out.append(-math.log2(counts[b] / counts.sum()))
            counts[b] += 1
        return out

    def bits(self, data):
        return math.fsum(self._terms(kolmo.as_bytes(data)))

    def code_parts(self, data, *, given=None, block=None):
        if block is not None:
            raise ValueError(f"block applies to the codecs; the {self.name} compressor explains per token")
        data = kolmo.as_bytes(data)
        terms = self._terms(data, b"" if given is None else kolmo.as_bytes(given))
        return CodeParts(spans=[(k, k + 1) for k in range(len(data))], bits=terms, unit="token")

    def compress(self, data):
        raise NotImplementedError("a toy model: code lengths only")

    def decompress(self, blob):
        raise NotImplementedError("a toy model: code lengths only")


def test_explain_uses_the_compressors_code_parts():
    """A compressor's own code_parts (here a toy per-byte model, not the LM) is what explain shows."""
    comp = _ByteModel()
    e = kolmo.explain(Y, given=X, compressor=comp)
    _check_spans(e, Y)
    assert e.unit == "token" and e.block is None and len(e) == len(Y)
    assert e.bits_alone == tuple(comp._terms(Y)) and e.bits_given == tuple(comp._terms(Y, X))
    assert e.c_y == comp.bits(Y) and e.c_y_given_x == pytest.approx(comp.conditional_bits(Y, X), rel=1e-12)
    assert e.bits_kind == "ideal" and f"{len(Y)} tokens" in repr(e)
    with pytest.raises(ValueError, match="per token"):
        kolmo.explain(Y, given=X, compressor=comp, block=8)


def test_explain_refuses_parts_that_do_not_line_up():
    class Shifty(_ByteModel):
        def code_parts(self, data, *, given=None, block=None):
            parts = super().code_parts(data, given=given)
            if given is None:
                return parts
            merged = ((0, 2),) + parts.spans[2:]
            return CodeParts(spans=merged, bits=(parts.bits[0] + parts.bits[1],) + parts.bits[2:], unit="token")

    with pytest.raises(ValueError, match="other parts given X than alone"):
        kolmo.explain(Y, given=X, compressor=Shifty())

    class Short(_ByteModel):
        def code_parts(self, data, *, given=None, block=None):
            return super().code_parts(kolmo.as_bytes(data)[:-1], given=given)

    with pytest.raises(ValueError, match=f"cover {len(Y) - 1} bytes of Y, not its {len(Y)}"):
        kolmo.explain(Y, given=X, compressor=Short())


@pytest.mark.filterwarnings("ignore::kolmo.WindowWarning")  # the tiny model's 64-token window
def test_lm_parts_are_per_token(tiny_lm):
    short = kolmo.explain(b"the earth was without form", given=b"In the beginning the earth", compressor=tiny_lm)
    assert short.c_y == pytest.approx(tiny_lm.bits(b"the earth was without form"), rel=1e-6)
    assert short.c_y_given_x == pytest.approx(
        tiny_lm.conditional_bits(b"the earth was without form", b"In the beginning the earth"), rel=1e-6)
    e = kolmo.explain(Y, given=X, compressor=tiny_lm)  # longer than the window: sliding windows
    _check_spans(e, Y)
    ids = tiny_lm.tokens(Y)
    assert e.unit == "token" and e.block is None and len(e) == len(ids)
    tok = tiny_lm.loaded.tokenizer
    assert [Y[a:b] for a, b in e.spans] == [tok.decode([t]) for t in ids]
    assert np.allclose(e.bits_alone, tiny_lm.token_bits(Y))
    assert sum(e.bits_alone) == pytest.approx(tiny_lm.bits(Y), rel=1e-6)
    assert sum(e.bits_given) == pytest.approx(tiny_lm.conditional_bits(Y, X), rel=1e-6)
    assert e.c_y == pytest.approx(tiny_lm.bits(Y), rel=1e-6)
    assert e.c_y_given_x == pytest.approx(tiny_lm.conditional_bits(Y, X), rel=1e-6)
    assert e.bits_kind == "ideal" and e.conditional_method == "kv-cache"
    with pytest.raises(ValueError, match="per token"):
        kolmo.explain(Y, given=X, compressor=tiny_lm, block=8)
    assert "<pre" in kolmo.explain(Y, given=b"", compressor=tiny_lm).to_html()


class _Checker(HTMLParser):
    """Checks that every tag closes in order and collects the text inside <pre>."""

    VOID = {"meta", "br"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.pre, self.tags = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, (self.stack, tag)
        self.stack.pop()

    def handle_data(self, data):
        if "pre" in self.stack:
            self.pre.append(data)


def test_html_is_escaped_and_well_formed():
    e = kolmo.explain(Y, given=X, compressor="zstd", block=10)
    page = e.to_html(full_page=True)
    assert page.startswith("<!DOCTYPE html>")
    c = _Checker()
    c.feed(page)
    c.close()
    assert c.stack == [] and "span" in c.tags and "pre" in c.tags
    shown = "".join(c.pre)
    text = Y.decode("utf-8", errors="backslashreplace").replace("\x00", "\\x00").replace("\x04", "\\x04")
    assert shown == text  # the exact text, with invalid bytes and control characters as escapes
    assert e._repr_html_() == e.to_html()
    frag = kolmo.explain(Y, given=X, compressor="zstd", block=len(Y)).to_html()  # one part: one span
    assert "&lt;b&gt;&amp;amp;&lt;/b&gt;" in frag and "<b>&amp;" not in frag and "\x00" not in frag
    assert "&quot;quoted&quot;" in frag and "café" in frag and "\\xff" in frag
    assert "bits/byte" in frag and "C(Y|X)" in frag  # legend and totals
    # a character split across parts is shown once, in the part where it starts
    split = kolmo.explain("ééééé".encode(), given=b"e", block=3)
    c = _Checker()
    c.feed(split.to_html())
    assert "".join(c.pre) == "ééééé"


def test_to_dict_and_repr():
    e = kolmo.explain(Y, given=X, compressor="zlib", block=32)
    d = json.loads(e.to_json())
    assert d["c_y"] == e.c_y and d["units"] == "bits" and len(d["parts"]) == len(e)
    assert d["parts"][0]["start"] == 0 and d["parts"][-1]["end"] == len(Y)
    assert sum(p["saved"] for p in d["parts"]) == e.total_saved
    r = repr(e)
    assert "C(Y|X)" in r and "most saved" in r and "\x00" not in r
    with pytest.raises(AttributeError):
        e.c_y = 0.0  # frozen


def test_cli_writes_html(tmp_path, capsys):
    from kolmo.cli import main
    (tmp_path / "x.txt").write_bytes(X)
    (tmp_path / "y.txt").write_bytes(Y)
    out = tmp_path / "map.html"
    assert main(["explain", str(tmp_path / "y.txt"), "--given", str(tmp_path / "x.txt"), "-c", "zstd",
                 "-O", "level=3", "--html", str(out)]) == 0
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>") and "&lt;b&gt;" in out.read_text()
    cap = capsys.readouterr()
    assert "C(Y|X)" in cap.out and "map.html" in cap.err
    assert main(["explain", str(tmp_path / "y.txt"), "-g", str(tmp_path / "x.txt"), "--block", "50", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["block"] == 50 and d["c_y"] == kolmo.get_compressor("zstd").bits(Y) and d["given"].endswith("x.txt")
    assert main(["explain", str(tmp_path / "y.txt"), "--given", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err
