import json
import subprocess
import sys

import pytest

import kolmo
from kolmo.compressors.base import CodecCompressor


def test_import_is_light():
    code = "import sys, kolmo; kolmo.joint_gap(b'a', b'b'); print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_registry():
    assert {"zstd", "lzma", "zlib", "bz2", "ppmd", "lm"} <= set(kolmo.list_compressors())
    with pytest.raises(ValueError, match="known compressors: .*zstd"):
        kolmo.get_compressor("gzipp")
    with pytest.raises(ValueError, match="already registered"):
        kolmo.register("zstd", lambda: None)
    with pytest.raises(ValueError, match=r"level must be an int in \[1, 22\]"):
        kolmo.get_compressor("zstd", level=99)
    with pytest.raises(TypeError, match="only apply when the compressor is given by name"):
        kolmo.joint_gap(b"a", b"b", compressor=kolmo.get_compressor("zstd"), level=3)
    with pytest.raises(TypeError, match="compressor must be"):
        kolmo.joint_gap(b"a", b"b", compressor=3)


class Identity(CodecCompressor):
    """A codec that stores its input as it is: 8 bits per byte."""

    name = "identity-test"

    @property
    def config(self):
        return {"codec": "identity"}

    def _encode(self, data):
        return data

    def _decode(self, payload, length):
        return payload


def test_register_custom_compressor():
    kolmo.register("identity-test", Identity, overwrite=True)
    r = kolmo.joint_gap(b"abc", b"defg", compressor="identity-test")
    assert (r.c_x, r.c_y, r.c_xy, r.gap) == (24.0, 32.0, 56.0, 0.0)
    assert r.conditional_method == "concatenation" and r.c_y_given_x == 32.0


def test_joint_gap_result():
    x = b"the cat sat on the mat. " * 40
    y = b"the cat sat on the hat. " * 40
    r = kolmo.joint_gap(x, y, compressor="zstd")
    assert r.gap == r.c_x + r.c_y - r.c_xy
    assert r.ncd == pytest.approx((min(r.c_xy, r.c_yx) - min(r.c_x, r.c_y)) / max(r.c_x, r.c_y))
    assert r.c_xy == r.c_x + r.c_y_given_x  # zstd codes XY in two parts: X, then Y primed with X
    assert r.n_x == len(x) and r.compressor == "zstd" and r.config["level"] == 19
    d = r.to_dict()
    assert d["gap"] == r.gap and d["units"] == "bits"
    assert kolmo.JointGapResult.from_dict(json.loads(r.to_json())) == r
    with pytest.raises(ValueError, match="missing c_x"):
        kolmo.JointGapResult.from_dict({"c_y": 1.0})
    assert "C(XY)" in repr(r) and "real compressed sizes" in repr(r)
    with pytest.raises(AttributeError):
        r.c_x = 0  # frozen
    assert kolmo.ncd(x, y) == r.ncd
    assert kolmo.conditional_bits(y, given=x) == r.c_y_given_x
    assert kolmo.joint_gap(b"", b"").ncd == 0.0


def test_cli_gap_default_and_json():
    out = subprocess.run([sys.executable, "-m", "kolmo.cli", "gap", "--json", "-c", "zlib"],
                         capture_output=True, text=True, check=True).stdout
    d = json.loads(out)
    assert d["compressor"] == "zlib" and d["gap"] > 0 and d["x"].endswith("decoder.py")


def test_cli_round_trip_and_errors(tmp_path, capsys):
    from kolmo.cli import main
    src = tmp_path / "in.bin"
    src.write_bytes(bytes(range(256)) * 50 + b"tail")
    for name in ("zstd", "ppmd"):
        assert main(["compress", str(src), "-o", str(tmp_path / "c.klm"), "-c", name, "-O", "order=4" if name == "ppmd" else "level=5"]) == 0
        assert main(["decompress", str(tmp_path / "c.klm"), "-o", str(tmp_path / "out.bin")]) == 0
        assert (tmp_path / "out.bin").read_bytes() == src.read_bytes()
    blob = (tmp_path / "c.klm").read_bytes()
    (tmp_path / "bad.klm").write_bytes(blob[:-10])
    assert main(["decompress", str(tmp_path / "bad.klm"), "-o", str(tmp_path / "never.bin")]) == 2
    assert not (tmp_path / "never.bin").exists()
    assert "truncated" in capsys.readouterr().err
    assert main(["bits", str(src), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["files"][0]["bytes"] == src.stat().st_size
    assert main(["bits", str(src)]) == 0 and "bits/byte" in capsys.readouterr().out
    assert main(["list"]) == 0 and "zstd" in capsys.readouterr().out
    assert main(["gap", str(src), str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err


def test_window_warnings_point_at_the_callers_line():
    """Every measure issues the compressor's window_warnings as WindowWarning at the user's own line."""
    class Narrow(Identity):
        name = "narrow-test"
        window_bytes = 10

    comp, x, y = Narrow(), b"abcdefgh", b"abcdefgz"
    calls = {
        "joint_gap": lambda: kolmo.joint_gap(x, y, comp).warnings,
        "ncd": lambda: kolmo.ncd(x, y, comp),
        "conditional_bits": lambda: kolmo.conditional_bits(y, x, comp),
        "matrix": lambda: kolmo.matrix([x, y], comp, cache=False, progress=False).warnings,
        "gap_test": lambda: kolmo.gap_test(x, y, [b"zzzzzzzz"], comp, cache=False, n_boot=0).warnings,
        "pairing_test": lambda: kolmo.pairing_test([x, y], [y, x], comp, n_perm=5, n_boot=0, cache=False,
                                                   progress=False).warnings,
        "explain": lambda: kolmo.explain(y, given=x, compressor=comp).warnings,
    }
    for name, call in calls.items():
        with pytest.warns(kolmo.WindowWarning, match="16 bytes exceed its 10-byte window") as rec:
            got = call()
        where = (rec[0].filename, rec[0].lineno)
        assert len(rec) == 1 and where == (__file__, call.__code__.co_firstlineno), (name, where)
        if isinstance(got, tuple):
            assert got == (str(rec[0].message),), name
