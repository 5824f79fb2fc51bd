"""Input types: numpy arrays as their C-order bytes, their shapes kept in results; collections of inputs."""

import json
import subprocess
import sys

import numpy as np
import pytest

import kolmo
from kolmo.inputs import as_bytes, as_collection, shape_of


def _image():
    yy, xx = np.mgrid[0:48, 0:64]
    return ((xx * 3 + yy * 5) % 256).astype(np.uint8)  # a smooth, compressible 48 x 64 "image"


@pytest.mark.parametrize("name", ["zstd", "zlib", "lzma", "bz2", "ppmd"])
def test_arrays_round_trip_as_their_bytes(name):
    comp = kolmo.get_compressor(name)
    img = _image()
    blob = comp.compress(img)
    assert comp.decompress(blob) == img.tobytes()
    assert np.array_equal(np.frombuffer(comp.decompress(blob), dtype=np.uint8).reshape(img.shape), img)
    assert comp.bits(img) == comp.bits(img.tobytes())


def test_non_contiguous_arrays_give_c_order_bytes():
    img = _image()
    view = img.T  # a transposed view: Fortran-ordered memory
    assert not view.flags["C_CONTIGUOUS"]
    assert as_bytes(view) == np.ascontiguousarray(view).tobytes() != img.tobytes()
    strided = img[::2, 1::3]
    assert as_bytes(strided) == np.ascontiguousarray(strided).tobytes()
    comp = kolmo.get_compressor("zstd")
    assert comp.decompress(comp.compress(view)) == np.ascontiguousarray(view).tobytes()
    assert kolmo.joint_gap(view, img).c_x == comp.bits(np.ascontiguousarray(view).tobytes())


def test_one_byte_dtypes_and_empty_arrays():
    assert as_bytes(np.array([-1, 0, 127, -128], dtype=np.int8)) == b"\xff\x00\x7f\x80"  # two's complement
    assert as_bytes(np.array([True, False, True])) == b"\x01\x00\x01"  # one byte each, not bit-packed
    assert as_bytes(np.zeros((0, 5), dtype=np.uint8)) == b""
    assert as_bytes(np.array(7, dtype=np.uint8)) == as_bytes(np.uint8(7)) == b"\x07"  # 0-d array, numpy scalar
    assert shape_of(np.uint8(7)) == ()
    with pytest.raises(TypeError, match="got a float64 array of shape"):
        as_bytes(np.float64(1.5))
    assert kolmo.get_compressor("zstd").bits(np.zeros(0, dtype=np.uint8)) == 0.0


@pytest.mark.parametrize("arr", [np.zeros(4, dtype=np.float64), np.arange(4, dtype=np.int16),
                                 np.arange(4, dtype=">u4"), np.array(["ab", "c"]), np.zeros(2, dtype=complex),
                                 np.array([b"x"], dtype=object)])
def test_other_dtypes_raise_a_type_error_that_says_what_to_do(arr):
    with pytest.raises(TypeError, match=r"x: expected a numpy array of dtype uint8.*got a .* array of shape") as e:
        kolmo.joint_gap(arr, b"abc")
    if arr.dtype.kind in "iuf":
        assert "astype(np.uint8)" in str(e.value) and ".tobytes()" in str(e.value)
    with pytest.raises(TypeError, match="expected a numpy array"):
        kolmo.get_compressor("zlib").bits(arr)


def test_masked_arrays_are_refused():
    with pytest.raises(TypeError, match=r"filled\(0\)"):
        as_bytes(np.ma.masked_array(_image(), mask=_image() > 100))


def test_shapes_appear_in_the_result_and_survive_saving():
    img = _image()
    r = kolmo.joint_gap(img, img.T, compressor="zlib")
    assert (r.shape_x, r.shape_y) == ((48, 64), (64, 48)) and r.n_x == r.n_y == 48 * 64
    assert "array of shape (48, 64)" in repr(r) and "array of shape (64, 48)" in repr(r)
    d = r.to_dict()
    assert d["shape_x"] == (48, 64)
    back = kolmo.JointGapResult.from_dict(json.loads(r.to_json()))
    assert back == r and back.shape_y == (64, 48)
    plain = kolmo.joint_gap(b"abc" * 10, "abc" * 10)
    assert plain.shape_x is None and plain.shape_y is None and "array" not in repr(plain)
    mixed = kolmo.joint_gap(img, img.tobytes())
    assert mixed.shape_x == (48, 64) and mixed.shape_y is None and mixed.gap == kolmo.joint_gap(img.tobytes(), img.tobytes()).gap
    assert shape_of(img[0]) == (64,) and shape_of(b"x") is None and shape_of([1, 2]) is None


def test_results_saved_before_shapes_existed_still_load():
    r = kolmo.joint_gap(b"the cat " * 20, b"the hat " * 20)
    old = {k: v for k, v in json.loads(r.to_json()).items() if k not in ("shape_x", "shape_y")}
    back = kolmo.JointGapResult.from_dict(old)
    assert back == r and back.shape_x is None


def test_arrays_in_matrices_and_other_measures():
    img = _image()
    items = {"img": img, "flipped": img[::-1], "noise": np.random.default_rng(0).integers(0, 256, img.shape, dtype=np.uint8)}
    m = kolmo.matrix(items, compressor="zstd", cache=False, progress=False)
    assert m["img", "flipped"] < m["img", "noise"]
    assert m["img", "flipped"] == kolmo.ncd(img, img[::-1])
    assert kolmo.conditional_bits(img[::-1], given=img) == kolmo.joint_gap(img, img[::-1]).c_y_given_x


def test_inputs_module_never_imports_numpy():
    # as_bytes never imports numpy itself (an object can only be an array once numpy is loaded);
    # kolmo as a whole does, through its matrices. The module alone, in a fresh interpreter:
    code = ("import importlib.util, sys; spec = importlib.util.spec_from_file_location('inputs', sys.argv[1]); "
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
            "print(m.as_bytes(b'a'), 'numpy' in sys.modules); "
            "import numpy as np; print(m.as_bytes(np.arange(3, dtype=np.uint8)))")
    out = subprocess.run([sys.executable, "-c", code, kolmo.inputs.__file__], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["b'a'", "False", "b'\\x00\\x01\\x02'"]


def test_collections_of_inputs(tmp_path):
    assert as_collection({"a": b"x", 2: "y"}) == (["a", "2"], [b"x", b"y"])
    (tmp_path / "b.txt").write_bytes(b"bee")
    (tmp_path / "a.txt").write_bytes(b"ay")
    (tmp_path / ".hidden").write_bytes(b"no")
    (tmp_path / "sub").mkdir()
    assert as_collection(tmp_path) == as_collection(str(tmp_path)) == (["a.txt", "b.txt"], [b"ay", b"bee"])
    assert as_collection([tmp_path / "b.txt", b"z"]) == (["b.txt", "1"], [b"bee", b"z"])
    assert as_collection((tmp_path / "a.txt", tmp_path / "sub" / ".." / "a.txt"))[0] == ["0", "1"]  # same names
    with pytest.raises(ValueError, match="null: folder .* holds no files"):
        as_collection(tmp_path / "sub", name="null")
    for single in (b"bytes", "text, not a folder", tmp_path / "a.txt", np.zeros(3, dtype=np.uint8)):
        with pytest.raises(TypeError, match=f"xs must be a sequence of items .*not a single {type(single).__name__}"):
            as_collection(single, name="xs")
    with pytest.raises(TypeError, match="items must be a list of items, a dict label -> item, or a folder; got int"):
        as_collection(42)
    with pytest.raises(TypeError, match=r"null\[1\]: expected bytes"):
        kolmo.gap_test(b"x", b"y", [b"z", 3])
    with pytest.raises(TypeError, match=r"items\['b'\]: expected bytes"):
        kolmo.matrix({"a": b"x", "b": None}, cache=False)
    with pytest.raises(TypeError, match=r"X\[0\]: expected bytes"):
        kolmo.NCDClassifier().fit([1.5], ["one"])
