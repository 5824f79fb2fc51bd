"""LM coding that always decodes: verification, the safe mode, diagnostics, the lean container.

The decoder's floats are perturbed on purpose (the way the out-of-memory path is simulated), since
this CPU computes the same floats on every run.
"""

import struct
import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import kolmo  # noqa: E402
from kolmo import framing  # noqa: E402
from kolmo.errors import CorruptStreamError  # noqa: E402
from kolmo.lm import coding  # noqa: E402

TEXT = (b"The quick brown fox jumps over the lazy dog. It was the best of times, it was the worst of times. "
        b"In the beginning God created the heaven and the earth. ") * 3


def perturbing(forward, rows=None, after=0, scale=0.05):
    """A forward pass whose hidden states (of ``rows``, all if None) move after ``after`` calls."""
    state = {"calls": 0, "on": True}

    def run(lm, ids, **kw):
        hidden, cache = forward(lm, ids, **kw)
        state["calls"] += 1
        if state["on"] and state["calls"] > after:
            noise = scale * torch.randn(hidden.shape, generator=torch.Generator().manual_seed(state["calls"]))
            if rows is not None:
                mask = torch.zeros(hidden.shape[0], 1, 1)
                mask[[r for r in rows if r < hidden.shape[0]]] = 1.0
                noise = noise * mask
            hidden = hidden + noise.to(hidden.dtype)
        return hidden, cache
    run.state = state
    return run


@pytest.fixture
def chunked(tiny_model_dir):
    return kolmo.get_compressor("lm", model=str(tiny_model_dir), window=64, stride=32, chunk_tokens=40,
                                coder_batch=4, progress=False)


def test_verification_moves_a_diverging_chunk_to_the_safe_mode(chunked, monkeypatch):
    scorer = chunked.scorer
    clean = scorer.forward
    calls = {"n": 0}
    real_intervals = coding.intervals

    def intervals(scorer_, toks, *args):  # the second run of each group is the verification
        calls["n"] += 1
        scorer_.forward = perturbing(clean, rows=[1]) if calls["n"] % 2 == 0 else clean
        try:
            return real_intervals(scorer_, toks, *args)
        finally:
            scorer_.forward = clean

    monkeypatch.setattr(coding, "intervals", intervals)
    blob = chunked.compress(TEXT)
    assert [c for c, _ in chunked.safe_chunks] == [1]  # the perturbed row of the first group only
    table, _, safe = framing.unpack_lm_payload(framing.unpack(blob, name="lm", config=chunked.stream_config).payload,
                                               lambda lengths: len(coding.groups(lengths, 4)))
    assert [c.mode for c in table].count(coding.SAFE) == 1 and len(safe) == 1 and table[1].mode == coding.SAFE
    monkeypatch.setattr(coding, "intervals", real_intervals)
    assert chunked.decompress(blob) == TEXT  # the other chunks' rebuilt rANS stream still decodes
    # and it still decodes where the decoder's floats differ for that chunk alone
    scorer.forward = perturbing(clean, rows=[1])
    try:
        assert chunked.decompress(blob) == TEXT
    finally:
        scorer.forward = clean


def test_every_chunk_safe_still_decodes(chunked, monkeypatch):
    scorer = chunked.scorer
    clean = scorer.forward
    real_intervals = coding.intervals
    calls = {"n": 0}

    def intervals(scorer_, toks, *args):
        calls["n"] += 1
        scorer_.forward = perturbing(clean) if calls["n"] % 2 == 0 else clean
        try:
            return real_intervals(scorer_, toks, *args)
        finally:
            scorer_.forward = clean

    monkeypatch.setattr(coding, "intervals", intervals)
    blob = chunked.compress(TEXT)
    n_chunks = len(chunked._coding_chunks(TEXT))
    assert len(chunked.safe_chunks) == n_chunks
    monkeypatch.setattr(coding, "intervals", real_intervals)
    assert chunked.decompress(blob) == TEXT


def test_unverified_stream_decoded_with_other_floats_raises(tiny_model_dir):
    lm = kolmo.get_compressor("lm", model=str(tiny_model_dir), window=64, stride=32, chunk_tokens=40,
                              coder_batch=4, verify=False, progress=False)
    blob = lm.compress(TEXT)
    clean = lm.scorer.forward
    lm.scorer.forward = perturbing(clean, scale=0.5)
    try:
        with pytest.raises(CorruptStreamError, match="chunk|coder|CRC"):
            lm.decompress(blob)
    finally:
        lm.scorer.forward = clean
    assert lm.decompress(blob) == TEXT


def test_diagnose_finds_the_first_diverging_step(tiny_lm):
    data = TEXT[:120]
    report = tiny_lm.diagnose(data)
    assert report.identical and report.chunk is None and report.steps_compared == len(tiny_lm.tokens(data))
    n = len(tiny_lm.tokens(data))
    clean = tiny_lm.scorer.forward
    # the first run makes n forward calls (one window); the second diverges from its 6th call on
    tiny_lm.scorer.forward = perturbing(clean, after=n + 5)
    try:
        report = tiny_lm.diagnose(data)
    finally:
        tiny_lm.scorer.forward = clean
    assert not report.identical and report.chunk == 0 and report.step == 5
    assert report.max_prob_diff > 0 and report.max_freq_diff > 0
    assert "chunk 0, token 5" in str(report)


def test_a_stream_decodes_under_another_thread_count(tiny_lm):
    """CPU floats depend on torch's thread count: the stream records the encoder's, the decoder uses it."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        blob = tiny_lm.compress(TEXT * 4)
        assert framing.lm_payload_threads(framing.unpack(blob, name="lm", config=tiny_lm.stream_config).payload) == 2
        torch.set_num_threads(1)
        assert tiny_lm.decompress(blob) == TEXT * 4
        assert torch.get_num_threads() == 1  # the caller's count is restored
    finally:
        torch.set_num_threads(before)


def test_one_chunk_stream_overhead_is_small(tiny_lm):
    data = TEXT
    blob = tiny_lm.compress(data)
    frame = framing.unpack(blob, name="lm", config=tiny_lm.stream_config)
    table, words, safe = framing.unpack_lm_payload(frame.payload, lambda lengths: 1)
    assert len(table) == 1 and table[0].crc16 is None and not safe
    fixed = len(blob) - 4 * len(words[0])
    assert fixed <= 17  # container, thread count, chunk table and token count
    # the coder's words: the ideal code length plus at most 64 bits of final state (and rounding)
    assert 4 * len(words[0]) <= tiny_lm.bits(data) / 8 + 8 + 0.01 * tiny_lm.bits(data) / 8


def test_compress_chunks_long_inputs_by_default(tiny_model_dir, monkeypatch):
    lm = kolmo.get_compressor("lm", model=str(tiny_model_dir), window=64, stride=32, progress=False)
    monkeypatch.setitem(lm.MIN_CHUNK_TOKENS, "cpu", 30)
    data = TEXT * 2
    n = len(lm.tokens(data))
    size = lm.coding_chunk_tokens(n)
    assert size == max(30, -(-n // lm.coder_batch))
    assert len(lm._coding_chunks(data)) == -(-n // size) > 1
    assert lm.decompress(lm.compress(data)) == data
    assert lm.bits(data) == pytest.approx(float(lm.token_bits(data).sum()))  # bits() stays unchunked
    explicit = kolmo.get_compressor("lm", model=str(tiny_model_dir), window=64, stride=32, chunk_tokens=17,
                                    progress=False)
    assert explicit.coding_chunk_tokens(10_000) == 17


def test_verify_option_is_checked(tiny_model_dir):
    with pytest.raises(ValueError, match="verify"):
        kolmo.get_compressor("lm", model=str(tiny_model_dir), verify="yes")


def test_format_1_streams_still_decode():
    comp = kolmo.get_compressor("zstd")
    raw = b"format one " * 20
    payload = comp._encode(raw)
    name = b"zstd"
    head = b"KLMO" + bytes([1, len(name)]) + name + framing.fingerprint(comp.stream_config)
    body = head + struct.pack("<QIQ", len(raw), zlib.crc32(raw), len(payload)) + payload
    blob = body + struct.pack("<I", zlib.crc32(body))
    assert comp.decompress(blob) == raw
    with pytest.raises(CorruptStreamError, match="truncated"):
        comp.decompress(blob[:-3])


def test_container_is_lean_and_names_the_writer():
    blob = kolmo.get_compressor("zstd").compress(b"")
    assert len(blob) == 11 + 1 + len(kolmo.get_compressor("zstd")._encode(b"")) + 4  # + the stream CRC
    with pytest.raises(kolmo.StreamMismatchError, match="written by compressor 'zstd'"):
        kolmo.get_compressor("bz2").decompress(blob)


def test_rans_tables_decode_what_was_encoded(tiny_lm):
    # the device-side tables and the coder agree with the ideal code length of the same tables
    ids = tiny_lm.tokens(TEXT[:80])
    starts, freqs = coding.intervals(tiny_lm.scorer, np.asarray(ids)[None])
    from kolmo.lm.quantize import code_length_bits
    words = coding.rans_words(starts, freqs, np.array([True]))
    assert 32 * len(words) <= code_length_bits(freqs.ravel(), coding.PRECISION_BITS) + 64 + 1


@pytest.mark.parametrize("kv_cache", ["static", "dynamic"])
def test_both_kv_caches_round_trip_across_windows(tiny_model_dir, kv_cache):
    lm = kolmo.get_compressor("lm", model=str(tiny_model_dir), window=32, stride=8, chunk_tokens=60, coder_batch=3,
                              kv_cache=kv_cache, progress=False)
    data = TEXT + bytes(range(256))
    assert lm.stream_config["kv_cache"] == kv_cache
    blob = lm.compress(data)
    assert lm.decompress(blob) == data and not lm.safe_chunks
    other = kolmo.get_compressor("lm", model=str(tiny_model_dir), window=32, stride=8, chunk_tokens=60,
                                 coder_batch=3, kv_cache={"static": "dynamic", "dynamic": "static"}[kv_cache],
                                 progress=False)
    with pytest.raises(kolmo.StreamMismatchError):
        other.decompress(blob)


def test_static_cache_gives_the_dynamic_schedules_tokens(tiny_lm):
    # both caches run the same schedule: the intervals agree up to float noise in the frequencies
    ids = np.asarray(tiny_lm.tokens(TEXT[:150]))[None]
    s_dyn, f_dyn = coding.intervals(tiny_lm.scorer, ids, kv_cache="dynamic")
    s_sta, f_sta = coding.intervals(tiny_lm.scorer, ids, kv_cache="static")
    rel = np.abs(f_dyn.astype(float) - f_sta.astype(float)) / f_dyn.astype(float)
    assert rel.max() < 1e-3
