"""One conformance suite over every classical compressor (the LM one runs it in test_lm.py)."""

import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kolmo
from kolmo.errors import CorruptStreamError, StreamMismatchError, WindowWarning

TEXT = (b"It was the best of times, it was the worst of times, it was the age of wisdom, "
        b"it was the age of foolishness, it was the epoch of belief, it was the epoch of incredulity. ") * 8


@settings(max_examples=25, deadline=None)
@given(data=st.one_of(
    st.binary(max_size=3000),
    st.builds(lambda b, n: b * n, st.binary(min_size=1, max_size=3), st.integers(1, 5000)),
    st.just(b""), st.just(b"\xff\xfe\x80\x00" * 100)))
@pytest.mark.parametrize("name", ["zstd", "lzma", "zlib", "bz2", "ppmd"])
def test_round_trip(name, data):
    comp = kolmo.get_compressor(name)
    blob = comp.compress(data)
    assert comp.decompress(blob) == data
    assert comp.compress(data) == blob  # deterministic


def test_empty_costs_nothing(any_compressor):
    assert any_compressor.bits(b"") == 0.0
    assert any_compressor.decompress(any_compressor.compress(b"")) == b""


def test_one_byte_is_cheap(classical):
    assert classical.bits(b"x") <= 8 * 32  # bzip2 pays ~23 bytes of block tables; the rest pay <= 4


def test_inputs_all_types(any_compressor, tmp_path):
    p = tmp_path / "t.txt"
    p.write_bytes(TEXT)
    want = any_compressor.bits(TEXT)
    for form in (TEXT, bytearray(TEXT), memoryview(TEXT), TEXT.decode(), p):
        assert any_compressor.bits(form) == want


def test_wrong_types_are_rejected(any_compressor):
    for bad in (12, None, 3.5, ["a"], {"a": 1}):
        with pytest.raises(TypeError, match="expected bytes"):
            any_compressor.bits(bad)


def test_round_trip_fixed_cases(any_compressor, rng_bytes):
    cases = [b"", b"a", TEXT, rng_bytes(700, seed=5), b"\x00" * 500, "h\u00e9llo w\u00f6rld \u6771\u4eac".encode() + b"\xff\xc3"]
    for data in cases:
        blob = any_compressor.compress(data)
        assert any_compressor.decompress(blob) == data
        assert any_compressor.compress(data) == blob  # deterministic


def test_bits_matches_stream(classical):
    # bits() is the codec stream minus its constant overhead; the container adds its header
    # (11 bytes and the varint of the input's length) and the stream's CRC-32 (4 bytes)
    from kolmo import framing
    blob = classical.compress(TEXT)
    header = 11 + len(framing.varint(len(TEXT))) + 4
    assert len(blob) - header == classical.bits(TEXT) / 8 + classical._overhead_bytes()


def test_normal_compressor_properties(classical):
    x = TEXT
    y = b"Call me Ishmael. Some years ago, never mind how long precisely, having little money in my purse. " * 6
    cx, cy, cxy, cyx, cxx = classical.bits_many([x, y, x + y, y + x, x + x])
    assert cxx <= cx * 1.10 + 256         # idempotency: C(XX) within 10% + 32 bytes of C(X)
    assert cxy <= cx + cy + 64            # subadditivity, up to a small constant
    assert abs(cxy - cyx) <= 0.10 * cxy + 64  # symmetry, within 10%


def test_ground_truth_identical_and_independent(classical, rng_bytes):
    x = rng_bytes(12000, seed=1)  # X + X fits even zlib's 32 KiB window
    r = kolmo.joint_gap(x, x, compressor=classical)
    # bzip2 is no dictionary coder: its BWT codes the repeated copy at ~1-2 bits per byte.
    assert r.gap == pytest.approx(r.c_x, rel=0.30 if classical.name == "bz2" else 0.05)
    assert r.c_x >= 8 * 12000 * 0.99  # random bytes do not compress
    z = rng_bytes(12000, seed=2)
    r2 = kolmo.joint_gap(x, z, compressor=classical)
    # bzip2 pays its Huffman tables (~450 bytes here) once per stream, so C(X)+C(Z) counts them twice.
    assert abs(r2.gap) <= (0.04 if classical.name == "bz2" else 0.01) * r2.c_x + 256
    assert r2.ncd > 0.95 and r.ncd < (0.3 if classical.name == "bz2" else 0.1)


@pytest.mark.parametrize("name", ["zstd", "lzma"])
def test_window_is_sized_for_large_inputs(name, rng_bytes):
    x = rng_bytes(300_000, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = kolmo.joint_gap(x, x, compressor=name)
    assert r.gap >= 0.95 * r.c_x
    assert r.warnings == ()


def test_zlib_warns_beyond_its_window(rng_bytes):
    x = rng_bytes(300_000, seed=3)
    with pytest.warns(WindowWarning, match="32768-byte window"):
        r = kolmo.joint_gap(x, x, compressor="zlib")
    assert r.warnings and "zlib" in r.warnings[0]
    assert r.gap < 0.05 * r.c_x  # the pitfall itself: the gap collapses


def test_conditional_bits(classical):
    y = TEXT[:900]
    c = classical.conditional_bits(y, TEXT)
    assert 0 <= c < classical.bits(y) * 0.5
    assert classical.conditional_bits_many([y, y], TEXT) == [c, c]


def test_corrupt_and_truncated_streams(any_compressor):
    comp = any_compressor
    blob = comp.compress(TEXT[:300])
    with pytest.raises(CorruptStreamError, match="truncated"):
        comp.decompress(blob[:-7])
    for i in range(11):  # any damage to the container's header is refused
        bad = bytearray(blob)
        bad[i] ^= 0x40
        with pytest.raises((CorruptStreamError, StreamMismatchError)):
            comp.decompress(bytes(bad))
    for i in (len(blob) // 2, len(blob) - 2):  # and so is damage to the payload
        bad = bytearray(blob)
        bad[i] ^= 0x40
        with pytest.raises((CorruptStreamError, StreamMismatchError)):
            comp.decompress(bytes(bad))
    with pytest.raises(CorruptStreamError, match="not a kolmo stream"):
        comp.decompress(b"hello")
    with pytest.raises(TypeError):
        comp.decompress(42)


def test_stream_from_other_compressor_or_config():
    blob = kolmo.get_compressor("zstd").compress(TEXT)
    with pytest.raises(StreamMismatchError, match="written by compressor 'zstd'"):
        kolmo.get_compressor("lzma").decompress(blob)
    with pytest.raises(StreamMismatchError, match="different configuration"):
        kolmo.get_compressor("zstd", level=3).decompress(blob)


def test_payload_corruption_behind_valid_frame_is_caught():
    # Re-frame a damaged payload with a valid container CRC: the CRC of the decoded data still catches it.
    from kolmo import framing
    comp = kolmo.get_compressor("lzma")
    payload = bytearray(comp._encode(TEXT))
    payload[len(payload) // 2] ^= 0x01
    blob = framing.pack(comp.name, comp.config, TEXT, bytes(payload))
    with pytest.raises(CorruptStreamError):
        comp.decompress(blob)


@pytest.mark.parametrize("name", ["zstd", "zlib"])
def test_joint_mode_option(name):
    default = kolmo.get_compressor(name)
    assert default.config["joint"] == "concat" and default.conditional_method == "concatenation"
    two = kolmo.get_compressor(name, joint="two-part")
    assert two.config["joint"] == "two-part" and two.conditional_method == "dictionary"
    from kolmo.cache import config_hash
    assert config_hash(two.config) != config_hash(default.config)  # results are cached apart
    assert "joint" not in two.stream_config and two.stream_config == default.stream_config
    assert two.decompress(default.compress(TEXT)) == TEXT  # streams do not depend on the joint code
    import pickle
    assert pickle.loads(pickle.dumps(two)).config == two.config
    for bad in ("concatenation", "twopart", None, 2):
        with pytest.raises(ValueError, match="joint must be one of 'two-part', 'concat'"):
            kolmo.get_compressor(name, joint=bad)


@pytest.mark.parametrize("name,levels", [("zstd", (1, 3, 19)), ("zlib", (0, 1, 6, 9))])
def test_concat_joint_is_the_compressed_concatenation(name, levels, rng_bytes):
    y = b"Call me Ishmael. Some years ago, never mind how long precisely, having little money in my purse. " * 6
    xs = [b"", b"a", TEXT, rng_bytes(700, seed=5), TEXT * 30]  # TEXT * 30 is 46 kB: past zlib's window
    for level in levels:
        comp = kolmo.get_compressor(name, level=level, joint="concat")
        for x in xs:
            row = [y, b"", x, TEXT[:261], TEXT[:262], rng_bytes(40_000, seed=6)]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", WindowWarning)
                r = kolmo.joint_gap(x, y, compressor=comp)
            want = [comp.bits(x + v) for v in row]
            assert comp.joint_bits([(x, v) for v in row]) == want, (level, len(x))
            assert r.c_xy == comp.bits(x + y) and r.c_yx == comp.bits(y + x)
            assert r.c_y_given_x == comp.conditional_bits(y, x) == comp.bits(x + y) - comp.bits(x)
            assert r.conditional_method == "concatenation"
            assert comp.conditional_bits_many(row, x) == [w - comp.bits(x) for w in want]


@settings(max_examples=25, deadline=None)
@given(x=st.one_of(st.binary(max_size=3000), st.builds(lambda b, n: b * n, st.binary(min_size=1, max_size=5),
                                                        st.integers(1, 8000))),
       ys=st.lists(st.binary(max_size=1500), min_size=2, max_size=4), level=st.integers(1, 9))
def test_zlib_concat_row_equals_fresh_deflate(x, ys, level):
    # deflating x once and copying the state for each y gives the bytes of deflating x + y afresh
    comp = kolmo.get_compressor("zlib", level=level, joint="concat")
    assert comp._concat_row(x, ys) == [comp.bits(x + y) for y in ys]


@pytest.mark.parametrize("name", ["zstd", "zlib"])
def test_two_part_joint_is_x_then_y_primed(name, rng_bytes):
    comp = kolmo.get_compressor(name, joint="two-part")
    x, y = TEXT * 15, TEXT[:900] + rng_bytes(300, seed=7)  # a 23 kB context: zlib copies its primed state
    r = kolmo.joint_gap(x, y, compressor=comp)
    assert r.conditional_method == "dictionary"
    assert r.c_xy == comp.bits(x) + comp.conditional_bits(y, x) == r.c_x + r.c_y_given_x
    many = comp.conditional_bits_many([y, TEXT, b"", y], x)
    assert many == [comp.conditional_bits(v, x) for v in (y, TEXT, b"", y)]
    if name == "zlib":
        assert many[0] == comp._payload_bits(len(comp._deflate(y, x[-32768:])))  # the copy codes as a fresh one
