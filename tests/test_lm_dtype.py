"""lm's precision follows the hardware: bf16 where it is computed in hardware, float32 elsewhere."""

import json

import pytest

pytest.importorskip("torch")

import kolmo  # noqa: E402
from kolmo.lm import machine  # noqa: E402

DATA = b"The precision follows the hardware, and the stream says which. " * 2


@pytest.fixture
def tiny(tiny_model_dir, one_torch_thread):
    def make(**opts):
        return kolmo.get_compressor("lm", model=str(tiny_model_dir), **{"window": 64, "stride": 32, **opts},
                                    progress=False)
    return make


def test_the_default_dtype_follows_the_hardware(tiny, monkeypatch):
    monkeypatch.setattr(machine, "native_bf16", lambda device: True)
    assert tiny().dtype == "bfloat16" and tiny().config["dtype"] == "bfloat16"
    assert tiny(dtype="float32").config["dtype"] == "float32"
    monkeypatch.setattr(machine, "native_bf16", lambda device: False)
    assert tiny().dtype == "float32" and tiny().config["dtype"] == "float32"
    assert tiny(dtype="bf16").dtype == "bf16" and tiny(dtype="bf16").config["dtype"] == "bfloat16"
    with pytest.raises(ValueError, match="dtype must be one of"):
        tiny(dtype="float8")


def test_scoring_and_coding_in_bf16_agree_with_float32(tiny):
    """bf16 weights code exactly and cost about what float32 costs (a random tiny model: loose)."""
    b16, b32 = tiny(dtype="bfloat16"), tiny(dtype="float32")
    assert b16.loaded.digest == b32.loaded.digest  # one model, two dtypes
    assert b16.bits(DATA) == pytest.approx(b32.bits(DATA), rel=0.02)
    assert b16.decompress(b16.compress(DATA)) == DATA


def test_a_default_stream_from_other_hardware_names_the_option(tiny, monkeypatch):
    monkeypatch.setattr(machine, "native_bf16", lambda device: True)
    blob16 = tiny().compress(DATA)
    monkeypatch.setattr(machine, "native_bf16", lambda device: False)
    with pytest.raises(kolmo.StreamMismatchError, match="dtype='bfloat16'"):
        tiny().decompress(blob16)
    assert tiny(dtype="bfloat16").decompress(blob16) == DATA
    blob32 = tiny().compress(DATA)
    monkeypatch.setattr(machine, "native_bf16", lambda device: True)
    with pytest.raises(kolmo.StreamMismatchError, match="dtype='float32'"):
        tiny().decompress(blob32)
    assert tiny(dtype="float32").decompress(blob32) == DATA
    with pytest.raises(kolmo.StreamMismatchError, match="different configuration"):
        tiny(dtype="float32", stride=16).decompress(blob16)  # not the default: no hint


def test_a_bf16_stream_records_how_bf16_ran(tiny, monkeypatch):
    """The float record's bf16 bit is set for bf16 weights; a CPU that computes bf16 the other way
    refuses the stream before decoding."""
    from kolmo import framing
    comp = tiny(dtype="bfloat16")
    blob = comp.compress(DATA)
    record = machine.FloatRecord.from_bytes(framing.unpack(blob, name="lm", config=comp.stream_config).payload[:3])
    assert record.bf16_native == machine.native_bf16_cpu()
    monkeypatch.setattr(machine, "native_bf16_cpu", lambda: not record.bf16_native)
    with pytest.raises(machine.FloatMismatchError, match="bf16"):
        comp.decompress(blob)


def test_kolmo_compress_writes_the_resolved_dtype(tiny_model_dir, monkeypatch, tmp_path):
    from kolmo.cli import main
    src, blob, back = tmp_path / "in.txt", tmp_path / "in.kolmo", tmp_path / "out.txt"
    src.write_bytes(DATA)
    opts = ["-O", f"model={tiny_model_dir}", "-O", "window=64"]
    monkeypatch.setattr(machine, "native_bf16", lambda device: True)
    assert main(["compress", str(src), "-o", str(blob), "-c", "lm", *opts]) == 0
    data = blob.read_bytes()
    meta = json.loads(data[12:12 + int.from_bytes(data[8:12], "little")])
    assert meta["options"]["dtype"] == "bfloat16"
    monkeypatch.setattr(machine, "native_bf16", lambda device: False)
    assert main(["decompress", str(blob), "-o", str(back)]) == 0
    assert back.read_bytes() == DATA
