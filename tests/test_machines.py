"""Results that hold on any x86-64 machine: streams record what their floats depended on.

torch reads ``ATEN_CPU_CAPABILITY`` once per process, so each CPU kernel level runs in a
subprocess: a stream written under one level is refused under another *before* decoding
(StreamMismatchError naming both), and decodes in a process started with the settings the error
names. The LM test files also run again under every other kernel level this CPU offers.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

import kolmo  # noqa: E402
from kolmo.lm import machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TEXT = b"It was the best of times, it was the worst of times, it was the age of wisdom. " * 4

# runs in a subprocess: compress or decompress one file with the compressor of a JSON spec
SCRIPT = r"""
import json, sys
import kolmo
spec = json.loads(sys.argv[1])
comp = kolmo.get_compressor(spec["name"], progress=False, **spec["options"])
src, dst, action = sys.argv[2], sys.argv[3], sys.argv[4]
data = open(src, "rb").read()
out = comp.compress(data) if action == "compress" else comp.decompress(data)
open(dst, "wb").write(out)
"""


def other_levels():
    """Kernel levels below this process's that torch offers here (each a valid ATEN_CPU_CAPABILITY)."""
    import torch
    here = torch.backends.cpu.get_cpu_capability()
    order = ["DEFAULT", "AVX2", "AVX512"]
    return [lvl.lower() for lvl in order[:order.index(here)]] if here in order else []


def run(spec, src, dst, action, env=None):
    full = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(spec), str(src), str(dst), action],
                          env=full, capture_output=True, text=True, timeout=600)


def specs(tiny_model_dir):
    return [{"name": "lm", "options": {"model": str(tiny_model_dir), "window": 64, "stride": 32, "dtype": "float32"}},
            {"name": "lm-online", "options": {"model": "scratch", "buckets": 4096, "width": 32, "heads": 2}}]


@pytest.mark.parametrize("which", [0, 1], ids=["lm", "lm-online"])
def test_stream_from_another_kernel_level_is_refused_then_decodes_with_its_settings(which, tiny_model_dir, tmp_path):
    levels = other_levels()
    if not levels:
        pytest.skip("torch offers no other CPU kernel level on this machine")
    spec = specs(tiny_model_dir)[which]
    src, blob, back = tmp_path / "in", tmp_path / "blob", tmp_path / "out"
    src.write_bytes(TEXT)
    level = levels[0]
    done = run(spec, src, blob, "compress", {"ATEN_CPU_CAPABILITY": level})
    assert done.returncode == 0, done.stderr
    comp = kolmo.get_compressor(spec["name"], progress=False, **spec["options"])
    with pytest.raises(kolmo.StreamMismatchError, match=f"CPU kernels {level.upper()}") as info:
        comp.decompress(blob.read_bytes())
    assert isinstance(info.value, machine.FloatMismatchError)
    settings = info.value.record.settings()
    assert settings["ATEN_CPU_CAPABILITY"] == level and f"ATEN_CPU_CAPABILITY={level}" in str(info.value)
    done = run(spec, blob, back, "decompress", settings)
    assert done.returncode == 0, done.stderr
    assert back.read_bytes() == TEXT


def test_record_round_trips_and_names_what_differs():
    rec = machine.FloatRecord(threads=3, level="AVX512", blas="mkl", vendor="Intel", isa="AVX512")
    assert machine.FloatRecord.from_bytes(rec.to_bytes(1)) == rec
    assert rec.to_bytes(1)[0] >> 5 == 1
    assert machine.FloatRecord.from_bytes(machine.FloatRecord().to_bytes(1)) == machine.FloatRecord()
    bf16 = machine.FloatRecord(threads=2, level="AVX512", blas="mkl", vendor="AMD", isa="AVX512", bf16_native=True)
    assert machine.FloatRecord.from_bytes(bf16.to_bytes(1)) == bf16 and "bf16 in hardware" in bf16.describe()
    # BLAS, vendor, bf16, instruction set: the bf16 bit is the one above the 3-bit instruction set,
    # 0 in every record without bf16, so records written before it existed read as before
    assert rec.to_bytes(1)[2] == 0x40 | 0x10 | 4 and bf16.to_bytes(1)[2] == 0x40 | 0x20 | 0x08 | 4
    assert machine.FloatRecord.from_bytes(bytes([0x23, 3, 0x54])) == rec
    assert rec.settings() == {"ATEN_CPU_CAPABILITY": "avx512", "MKL_ENABLE_INSTRUCTIONS": "AVX512",
                              "OMP_NUM_THREADS": "3"}
    here = machine.current("cpu")
    assert here.on_cpu and here.threads >= 1
    machine.check(here, "cpu", "this stream")  # its own record passes
    other = machine.FloatRecord(threads=1, level="ZVECTOR", blas="other", vendor="other", isa="other")
    with pytest.raises(kolmo.StreamMismatchError, match="ZVECTOR.*this process computes them with CPU kernels"):
        machine.check(other, "cpu", "this stream")
    assert not machine.current("cuda").on_cpu


@pytest.mark.skipif(os.environ.get("KOLMO_LEVEL_RUN") is not None, reason="already inside a kernel-level run")
def test_lm_tests_pass_under_every_other_kernel_level():
    """The LM and lm-online tests again, under each other kernel level (floats of another order; a
    compiled scorer there may read a compile cache written at this level, as in the suite's order)."""
    levels = other_levels()
    if not levels:
        pytest.skip("torch offers no other CPU kernel level on this machine")
    files = ["tests/test_lm.py", "tests/test_lm_coding.py", "tests/test_lm_online.py", "tests/test_learners.py",
             "tests/test_rans.py", "tests/test_mixer.py", "tests/test_mixture.py"]
    for level in levels:
        env = {**os.environ, "ATEN_CPU_CAPABILITY": level, "KOLMO_LEVEL_RUN": level}
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-m", "not slow", "-p", "no:cacheprovider",
                               *files], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
        assert done.returncode == 0, f"under ATEN_CPU_CAPABILITY={level}:\n{done.stdout[-4000:]}{done.stderr[-2000:]}"


# runs in a subprocess: the compiled scorer's bits against the eager scorer's, on the tiny model
COMPILED = r"""
import json, sys
import numpy as np
import kolmo
from kolmo.lm.scoring.loglik import Scorer
lm = kolmo.get_compressor("lm", model=sys.argv[1], window=64, stride=32, progress=False).loaded
rng = np.random.default_rng(6)
seqs = [np.concatenate([[lm.start_id], rng.integers(1, lm.vocab_size, 60)]) for _ in range(3)]
compiled = Scorer(lm, window=64, stride=32, batch_tokens=10_000, compile=True)
got = compiled.score(seqs, [1] * 3)
want = Scorer(lm, window=64, stride=32, batch_tokens=10_000).score(seqs, [1] * 3)
print(json.dumps({"failed": compiled._body.failed, "finite": all(bool(np.isfinite(g).all()) for g in got),
                  "diff": max(float(np.abs(g - w).max()) for g, w in zip(got, want))}))
"""


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_compiled_scorer_is_right_with_a_compile_cache_from_another_kernel_level(tiny_model_dir, tmp_path):
    """torch 2.13's inductor FX graph cache does not key on ATEN_CPU_CAPABILITY: on an AVX-512 CPU a
    graph cached at the default level returns NaN under avx2. kolmo compares the compiled code with
    the eager code and drops it there (kolmo.lm.scoring.head.CompiledOrEager)."""
    levels = other_levels()
    if not levels:
        pytest.skip("torch offers no other CPU kernel level on this machine")
    cache = {"TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}  # one fresh cache, shared by both runs
    out = []
    for env in (cache, {**cache, "ATEN_CPU_CAPABILITY": levels[-1]}):
        done = subprocess.run([sys.executable, "-c", COMPILED, str(tiny_model_dir)], env={**os.environ, **env},
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        out.append(json.loads(done.stdout.strip().splitlines()[-1]))
    if out[0]["failed"]:
        pytest.skip(f"torch.compile (inductor) cannot build on this machine: {out[0]['failed']}")
    for res in out:
        assert res["finite"] and res["diff"] <= 1e-4, res


def test_cli_decompress_restarts_itself_with_the_streams_settings(tmp_path):
    levels = other_levels()
    if not levels:
        pytest.skip("torch offers no other CPU kernel level on this machine")
    src, blob, back = tmp_path / "in.txt", tmp_path / "in.kolmo", tmp_path / "out.txt"
    src.write_bytes(TEXT)
    opts = ["-O", "model=scratch", "-O", "buckets=4096", "-O", "width=32", "-O", "heads=2"]
    cli = [sys.executable, "-m", "kolmo.cli"]
    env = {**os.environ, "ATEN_CPU_CAPABILITY": levels[0]}
    done = subprocess.run(cli + ["compress", str(src), "-o", str(blob), "--compressor", "lm-online", *opts],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    plain = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "KOLMO_REEXEC")}
    done = subprocess.run(cli + ["decompress", str(blob), "-o", str(back)], env=plain, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "decoding in a new process with ATEN_CPU_CAPABILITY=" + levels[0] in done.stderr
    assert back.read_bytes() == TEXT
