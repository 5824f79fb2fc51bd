"""LM coding that always decodes: verification, the safe mode, diagnostics, the lean container,
the language models' payload (kolmo.framing) and the step schedule (kolmo.lm.coding.schedule).

The decoder's floats are perturbed on purpose (the way the out-of-memory path is simulated), since
this CPU computes the same floats on every run.
"""

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import kolmo  # noqa: E402
from kolmo import framing  # noqa: E402
from kolmo.errors import CorruptStreamError  # noqa: E402
from kolmo.lm import machine  # noqa: E402
from kolmo.lm.coding import coder as engine, schedule  # noqa: E402
from kolmo.lm.scoring.batching import plan_windows  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"

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


def verification_perturbed(monkeypatch, scorer, rows=None):
    """Make the engine's second run of every group (its verification) see perturbed floats."""
    clean = scorer.forward
    real_intervals = engine.intervals
    calls = {"n": 0}

    def intervals(model, seqs, *args, **kwargs):  # Coder._code: the first call codes, the second verifies
        calls["n"] += 1
        model.forward = perturbing(clean, rows=rows) if calls["n"] % 2 == 0 else clean
        try:
            return real_intervals(model, seqs, *args, **kwargs)
        finally:
            model.forward = clean

    monkeypatch.setattr(engine, "intervals", intervals)
    return real_intervals


def lm_payload(comp, blob) -> framing.LMPayload:
    frame = framing.unpack(blob, name="lm", config=comp.stream_config)
    return framing.unpack_lm_payload(frame.payload, frame.length,
                                     lambda lengths, prime: len(engine.plan_groups(lengths, comp.coder_batch, prime)))


def test_verification_moves_a_diverging_chunk_to_the_safe_mode(chunked, monkeypatch):
    scorer = chunked.scorer
    clean = scorer.forward
    real_intervals = verification_perturbed(monkeypatch, scorer, rows=[1])
    blob = chunked.compress(TEXT)
    # the perturbed row of the first group only (the last group has one row); it differs from its first step
    assert chunked.safe_chunks == [(1, 0)]
    p = lm_payload(chunked, blob)
    assert p.safe == (1,) and len(p.safe_data) == 1 and len(p.lengths) > 2
    assert framing.safe_decode(p.safe_data[0], "test") == chunked.scorer.decode(chunked._coding_chunks(TEXT)[1])
    assert p.crc16 is not None and len(p.crc16) == len(p.lengths)  # several chunks: one CRC each
    monkeypatch.setattr(engine, "intervals", real_intervals)
    assert chunked.decompress(blob) == TEXT  # the other chunks' rebuilt rANS stream still decodes
    # and it still decodes where the decoder's floats differ for that chunk alone
    scorer.forward = perturbing(clean, rows=[1])
    try:
        assert chunked.decompress(blob) == TEXT
    finally:
        scorer.forward = clean


def test_every_chunk_safe_still_decodes(chunked, monkeypatch):
    real_intervals = verification_perturbed(monkeypatch, chunked.scorer)
    blob = chunked.compress(TEXT)
    n_chunks = len(chunked._coding_chunks(TEXT))
    assert [c for c, _ in chunked.safe_chunks] == list(range(n_chunks))
    p = lm_payload(chunked, blob)
    assert p.safe == tuple(range(n_chunks)) and all(len(w) == 0 for w in p.words)  # nothing left to code
    monkeypatch.setattr(engine, "intervals", real_intervals)
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


def test_diagnose_names_the_diverging_chunk_of_a_group(chunked):
    chunks = chunked._coding_chunks(TEXT)
    assert [len(c) for c in chunks] == [40, 40, 40, 10]  # chunks 0..2 run in one group of 3 rows
    clean = chunked.scorer.forward
    # the first group's first run makes 40 forward calls (one window); then only row 1 moves
    chunked.scorer.forward = perturbing(clean, rows=[1], after=40)
    try:
        report = chunked.diagnose(TEXT)
    finally:
        chunked.scorer.forward = clean
    assert not report.identical and (report.chunk, report.step) == (1, 0)
    assert report.steps_compared == len(chunked.tokens(TEXT)) and "chunk 1, token 0" in str(report)


def test_a_stream_decodes_under_another_thread_count(tiny_lm):
    """CPU floats depend on torch's thread count: the stream records the encoder's, the decoder uses it."""
    before = torch.get_num_threads()
    clean = tiny_lm.scorer.forward
    seen = []

    def counting(lm, ids, **kw):
        seen.append(torch.get_num_threads())
        return clean(lm, ids, **kw)

    torch.set_num_threads(2)
    try:
        blob = tiny_lm.compress(TEXT * 4)
        p = lm_payload(tiny_lm, blob)
        record = machine.FloatRecord.from_bytes(p.machine)
        assert record.threads == 2 and record == machine.current(tiny_lm.scorer.device)
        torch.set_num_threads(1)
        tiny_lm.scorer.forward = counting
        assert tiny_lm.decompress(blob) == TEXT * 4
        assert seen and set(seen) == {2}  # every decoding step ran with the recorded count
        assert torch.get_num_threads() == 1  # the caller's count is restored
    finally:
        tiny_lm.scorer.forward = clean
        torch.set_num_threads(before)


def test_one_chunk_stream_overhead_is_small(tiny_lm):
    data = TEXT
    blob = tiny_lm.compress(data)
    p = lm_payload(tiny_lm, blob)
    assert p.lengths == [p.n_tokens] and p.segment == 0 and p.crc16 is None and not p.safe and len(p.words) == 1
    fixed = len(blob) - 4 * len(p.words[0])
    # container (11 + varint of the data's length), float record (3), varint of the token count, flags (1)
    assert fixed == 11 + len(framing.varint(len(data))) + 3 + len(framing.varint(p.n_tokens)) + 1
    assert fixed <= 19  # for inputs under 16 kB of up to 16383 tokens (17 before the float record and version)
    # the coder's words: the ideal code length plus at most 64 bits of final state (and rounding)
    assert 4 * len(p.words[0]) <= tiny_lm.bits(data) / 8 + 8 + 0.01 * tiny_lm.bits(data) / 8


def test_compress_chunks_long_inputs_by_default(tiny_model_dir, monkeypatch):
    lm = kolmo.get_compressor("lm", model=str(tiny_model_dir), window=64, stride=32, progress=False)
    monkeypatch.setitem(lm.MIN_CHUNK_TOKENS, "cpu", 30)
    monkeypatch.setitem(lm.PRIME_TOKENS, "cpu", 0)
    data = TEXT * 2
    n = len(lm.tokens(data))
    size = lm.coding_plan(n)[1]
    k = min(lm.coder_batch, n // 30)
    assert k > 1 and size == -(-n // k) >= 30  # k equally long chunks of at least 30 tokens
    assert len(lm._coding_chunks(data)) == -(-n // size) == k
    assert lm.coding_plan(29) == (0, 29)  # shorter than one chunk: one piece
    blob = lm.compress(data)
    assert lm_payload(lm, blob).lengths == [len(c) for c in lm._coding_chunks(data)]
    assert lm.decompress(blob) == data
    # bits() stays unchunked; token_bits() comes from another call of the core and another sum: equal
    # up to float rounding (rel 1e-6, far above float64 summation noise over a few hundred tokens)
    assert lm.bits(data) == pytest.approx(float(lm.token_bits(data).sum()), rel=1e-6)
    explicit = kolmo.get_compressor("lm", model=str(tiny_model_dir), window=64, stride=32, chunk_tokens=17,
                                    progress=False)
    assert explicit.coding_plan(10_000) == (0, 17)


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


def test_payload_format_0_streams_are_refused():
    """A stream of the previous kolmo (no payload version byte) is refused by name, not misread.
    The model folder it was written with is committed (its files' bytes were its identity then)."""
    meta = json.loads((FIXTURES / "lm_format0.json").read_text())
    lm = kolmo.get_compressor("lm", model=str(FIXTURES / "tiny-lm0"), dtype="float32", progress=False,
                              **meta["options"])
    # the fixture's configuration is what format 0 wrote for these settings
    assert lm.format0_config() == meta["stream_config"]
    blob = (FIXTURES / "lm_format0.kolmo").read_bytes()
    with pytest.raises(kolmo.StreamMismatchError, match="payload format 0"):
        lm.decompress(blob)
    # what the fixture holds still codes with this compressor
    data = (FIXTURES / "lm_format0.input").read_bytes()
    assert lm.decompress(lm.compress(data)) == data


def test_payload_format_1_streams_are_refused(tiny_lm):
    """A stream of payload format 1 (models identified by their files) is refused by name."""
    data = b"format one " * 5
    blob = tiny_lm.compress(data)
    frame = framing.unpack(blob, name="lm", config=tiny_lm.stream_config)
    old_payload = bytes([(1 << 5) | (frame.payload[0] & 31)]) + frame.payload[1:]
    old_config = {**tiny_lm.stream_config, **tiny_lm.loaded.legacy_fingerprint(), "payload": 1}
    old = framing.pack("lm", old_config, data, old_payload, checked=False)
    with pytest.raises(kolmo.StreamMismatchError, match="payload format 1"):
        tiny_lm.decompress(old)


# -- the language models' payload (kolmo.framing) ---------------------------------------------------
def _record(threads=3) -> bytes:
    return machine.FloatRecord(threads=threads, level="AVX2", blas="mkl", vendor="Intel",
                               isa="AVX2").to_bytes(framing.PAYLOAD_VERSION)


def _n_groups(coder_batch):
    return lambda lengths, prime: len(engine.plan_groups(lengths, coder_batch, prime))


def _words(rng, *sizes):
    return tuple(rng.integers(0, 2 ** 32, n, dtype=np.uint64).astype(np.uint32) for n in sizes)


def _same(a: framing.LMPayload, b: framing.LMPayload) -> bool:
    return ((a.machine, a.n_tokens, a.segment, a.safe, a.safe_data, a.crc16)
            == (b.machine, b.n_tokens, b.segment, b.safe, b.safe_data, b.crc16)
            and len(a.words) == len(b.words) and all(np.array_equal(x, y) for x, y in zip(a.words, b.words))
            and all(w.dtype == np.uint32 for w in b.words))


def _payloads():
    """(payload, data length, n_groups) cases: safe segments and CRCs, each part alone, one segment, none."""
    rng = np.random.default_rng(0)
    safe = (0, 3, 6)
    # 250 tokens in 40s: 6 x 40 + 10; coder batch 4 groups them [0..3], [4, 5], [6]
    full = framing.LMPayload(_record(), 250, 40, safe, tuple(zlib.compress(bytes([i]) * (30 + i)) for i in safe),
                             tuple(int(c) for c in rng.integers(0, 2 ** 16, 7)), _words(rng, 9, 5, 4))
    yield full, 1000, _n_groups(4)
    yield framing.LMPayload(_record(), 250, 40, (), (), full.crc16, _words(rng, 9, 5, 4)), 1000, _n_groups(4)
    yield framing.LMPayload(_record(1), 250, 40, (5,), (b"xyz",), None, _words(rng, 7, 0, 3)), 250, _n_groups(4)
    # a safe segment far from the first (a gap varint of two bytes), many segments, one group each
    yield (framing.LMPayload(_record(), 300, 2, (0, 149), (b"a", b"b"), None, _words(rng, *[2] * 149, 3)),
           300, _n_groups(1))
    yield framing.LMPayload(_record(), 200, 0, (), (), None, _words(rng, 60)), 200, _n_groups(64)
    yield framing.LMPayload(_record(), 200, 0, (0,), (b"deflated",), None, _words(rng, 0)), 200, _n_groups(64)
    yield framing.LMPayload(bytes([framing.PAYLOAD_VERSION << 5, 0, 0]), 0, 0, (), (), None, ()), 0, _n_groups(64)


@pytest.mark.parametrize("case", range(7))
def test_lm_payload_round_trips(case):
    p, length, n_groups = list(_payloads())[case]
    blob = framing.pack_lm_payload(p)
    got = framing.unpack_lm_payload(blob, length, n_groups)
    assert _same(p, got)
    assert sum(got.lengths) == p.n_tokens and len(got.lengths) == (-(-p.n_tokens // (p.segment or p.n_tokens))
                                                                  if p.n_tokens else 0)
    assert framing.pack_lm_payload(got) == blob
    assert machine.FloatRecord.from_bytes(got.machine).threads == machine.FloatRecord.from_bytes(p.machine).threads


def test_lm_payload_layout():
    p = next(_payloads())[0]
    blob = framing.pack_lm_payload(p)
    assert blob[:3] == p.machine and blob[3:5] == framing.varint(250)
    assert blob[5:7] == framing.varint(8 * 40 + 2 + 1)  # segment, safe segments follow, CRCs follow
    assert blob[7:11] == bytes([3, 0, 2, 2])  # K, then the first index and the gaps minus one
    assert struct.unpack_from("<7H", blob, 11) == p.crc16
    assert blob.endswith(b"".join(w.astype("<u4").tobytes() for w in p.words))
    one = framing.LMPayload(_record(), 200, 0, (), (), None, _words(np.random.default_rng(1), 60))
    assert len(framing.pack_lm_payload(one)) == 3 + 2 + 1 + 4 * 60  # what a one-segment stream costs
    assert framing.LMPayload(b"", 250, 40, (), (), None, ()).lengths == [40] * 6 + [10]
    assert framing.LMPayload(b"", 7, 0, (), (), None, ()).lengths == [7]
    with pytest.raises(ValueError, match="float record"):
        framing.pack_lm_payload(framing.LMPayload(b"\x00\x01\x02", 0, 0, (), (), None, ()))  # payload version 0


def test_lm_payload_with_a_shared_prefix():
    rng = np.random.default_rng(3)
    # 300 tokens: a prefix of 20, then 280 in chunks of 100: [20, 100, 100, 80]; groups [0], [1, 2], [3]
    p = framing.LMPayload(_record(), 300, 100, (2,), (b"zz",), (1, 2, 3, 4), _words(rng, 5, 7, 9), 20)
    assert p.lengths == [20, 100, 100, 80]
    blob = framing.pack_lm_payload(p)
    assert blob[5:7] == framing.varint(8 * 100 + 4 + 2 + 1) and blob[7] == 20  # flags, then the prefix
    calls = []

    def n_groups(lengths, prime):
        calls.append(prime)
        return len(engine.plan_groups(lengths, 64, prime))

    got = framing.unpack_lm_payload(blob, 1000, n_groups)
    assert _same(p, got) and got.prime == 20 and calls == [20]
    assert engine.plan_groups(got.lengths, 64, 20) == [[0], [1, 2], [3]]
    for bad_prime in (300, 301):  # the prefix must leave tokens for the chunks
        with pytest.raises(CorruptStreamError):
            framing.unpack_lm_payload(framing.pack_lm_payload(
                framing.LMPayload(_record(), 300, 0, (), (), None, (), bad_prime)), 1000, n_groups)


@pytest.mark.parametrize("case", range(7))
def test_truncated_lm_payload_raises(case):
    p, length, n_groups = list(_payloads())[case]
    blob = framing.pack_lm_payload(p)
    last_words = len(blob) - 4 * len(p.words[-1]) if p.words else len(blob)
    for cut in range(len(blob)):
        if cut >= last_words and (cut - last_words) % 4 == 0:
            # whole words cut off the last group's stream leave a valid table: the coder's end check
            # (or the data CRC) refuses the stream (test_truncated_lm_stream_raises)
            got = framing.unpack_lm_payload(blob[:cut], length, n_groups)
            assert len(got.words[-1]) == (cut - last_words) // 4
            continue
        with pytest.raises(CorruptStreamError):
            framing.unpack_lm_payload(blob[:cut], length, n_groups)


def test_corrupted_lm_payload_tables_raise():
    p, length, n_groups = next(_payloads())
    blob = framing.pack_lm_payload(p)
    with pytest.raises(CorruptStreamError, match="payload format 0"):
        framing.unpack_lm_payload(bytes([blob[0] & 31]) + blob[1:], length, n_groups)  # no version bits
    with pytest.raises(CorruptStreamError, match="250 tokens"):
        framing.unpack_lm_payload(blob, 249, n_groups)  # more tokens than bytes
    with pytest.raises(CorruptStreamError, match="safe segments"):
        framing.unpack_lm_payload(blob[:7] + bytes([3, 0, 2, 9]) + blob[11:], length, n_groups)  # index 12 of 7
    with pytest.raises(CorruptStreamError):
        framing.unpack_lm_payload(blob + b"\x00\x00", length, n_groups)  # half a word too many


def test_truncated_lm_stream_raises(chunked):
    blob = chunked.compress(TEXT)
    for cut in (len(blob) - 1, len(blob) - 4, len(blob) - 8, len(blob) // 2, 20, 12):
        with pytest.raises(CorruptStreamError):
            chunked.decompress(blob[:cut])


# -- the step schedule (kolmo.lm.coding.schedule) ----------------------------------------------------------
def _seqs(comp, data) -> np.ndarray:
    """One row: [start id, tokens...] (position p holds token p - 1)."""
    return np.concatenate([[comp.scorer.start], comp.tokens(data)]).astype(np.int64)[None]


def test_rans_tables_decode_what_was_encoded(tiny_lm):
    # the device-side tables and the coder agree with the ideal code length of the same tables
    seqs = _seqs(tiny_lm, TEXT[:80])
    windows = plan_windows(seqs.shape[1], 1, tiny_lm.scorer.window, tiny_lm.scorer.stride)
    starts, freqs = schedule.intervals(tiny_lm.scorer, seqs, windows)
    assert starts.shape == freqs.shape == (seqs.shape[1] - 1, 1) and starts.dtype == freqs.dtype == np.uint64
    from bounds import code_length_bits
    words = schedule.rans_words([(starts, freqs)], 1)
    assert 32 * len(words) <= code_length_bits(freqs.ravel(), schedule.PRECISION_BITS) + 64 + 1
    # and the decoder's schedule finds every token again from those words
    from kolmo.lm.coding.rans import BatchDecoder
    out = seqs.copy()
    out[:, 1:] = 0
    dec = BatchDecoder(words, 1, schedule.PRECISION_BITS)
    schedule.decode(tiny_lm.scorer, out, windows, dec, np.array([True]))
    dec.check_end()
    np.testing.assert_array_equal(out, seqs)


def test_schedule_decodes_active_rows_across_windows(tiny_lm):
    # two rows in lock-step over several windows; row 0 known (as a safe chunk is), row 1 decoded
    toks = [tiny_lm.tokens(TEXT[:300]), tiny_lm.tokens(TEXT[150:])]
    m = min(map(len, toks))
    seqs = np.stack([np.concatenate([[tiny_lm.scorer.start], t[:m]]) for t in toks]).astype(np.int64)
    windows = plan_windows(seqs.shape[1], 1, 32, 8)
    assert len(windows) > 2
    positions = []

    def step(p, tables):
        positions.append(p)
        return seqs[:, p]

    schedule.run_windows(tiny_lm.scorer, seqs.copy(), windows, step)
    assert positions == [p for _, split, end in windows for p in range(split, end)]  # sequence positions
    assert positions == list(range(1, seqs.shape[1]))
    starts, freqs = schedule.intervals(tiny_lm.scorer, seqs, windows)
    words = schedule.rans_words([(starts[:, 1:], freqs[:, 1:])], 1)
    from kolmo.lm.coding.rans import BatchDecoder
    out = seqs.copy()
    out[1, 1:] = 0
    dec = BatchDecoder(words, 1, schedule.PRECISION_BITS)
    schedule.decode(tiny_lm.scorer, out, windows, dec, np.array([False, True]))
    dec.check_end()
    np.testing.assert_array_equal(out, seqs)


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
    # both caches run the same schedule, over several windows here. Not bit for bit: the static cache
    # attends over a preallocated, masked cache, so its sums run in another order; the intervals agree
    # up to that float noise (measured: starts within 4 of 2**24, frequencies within 6e-5 relative)
    seqs = _seqs(tiny_lm, TEXT)
    windows = plan_windows(seqs.shape[1], 1, tiny_lm.scorer.window, tiny_lm.scorer.stride)
    assert len(windows) > 2
    s_dyn, f_dyn = schedule.intervals(tiny_lm.scorer, seqs, windows, kv_cache="dynamic")
    s_sta, f_sta = schedule.intervals(tiny_lm.scorer, seqs, windows, kv_cache="static")
    rel = np.abs(f_dyn.astype(float) - f_sta.astype(float)) / f_dyn.astype(float)
    assert rel.max() < 1e-3
    assert np.abs(s_dyn.astype(float) - s_sta.astype(float)).max() < 1e-4 * 2 ** schedule.PRECISION_BITS
    # each cache on its own is deterministic: what verification relies on
    s_again, f_again = schedule.intervals(tiny_lm.scorer, seqs, windows, kv_cache="static")
    np.testing.assert_array_equal(s_again, s_sta)
    np.testing.assert_array_equal(f_again, f_sta)


def test_chunks_can_share_a_coded_prefix(tiny_model_dir, monkeypatch):
    """The default CPU plan: the first tokens coded alone, then every chunk reads them as context."""
    lm = kolmo.get_compressor("lm", model=str(tiny_model_dir), window=64, stride=32, progress=False)
    monkeypatch.setitem(lm.MIN_CHUNK_TOKENS, "cpu", 30)
    monkeypatch.setitem(lm.PRIME_TOKENS, "cpu", 12)
    data = TEXT * 2
    ids = lm.tokens(data)
    prime, size = lm.coding_plan(len(ids))
    assert prime == 12 and size == -(-(len(ids) - 12) // min(lm.coder_batch, len(ids) // 30))
    blob = lm.compress(data)
    p = lm_payload(lm, blob)
    assert p.prime == 12 and p.lengths == [len(c) for c in lm._coding_chunks(data)] and p.lengths[0] == 12
    assert len(p.words) == 1 + len(engine.groups(p.lengths[1:], lm.coder_batch)) and p.crc16 is not None
    assert lm.decompress(blob) == data
    # (that the prefix saves bits is a property of real models: README, measured with SmolLM2)
    bad = bytearray(blob)
    bad[-3] ^= 0x40
    with pytest.raises(CorruptStreamError):
        lm.decompress(bytes(bad))
