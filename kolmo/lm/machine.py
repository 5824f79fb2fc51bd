"""What a CPU's floats depend on, recorded in every language-model stream (3 bytes).

A language-model stream decodes only where the decoder computes the model's probabilities with
the same floats as the encoder. On the same model, dtype and library versions (the stream's
configuration pins those), a CPU's floats still depend on:

* torch's intra-op **thread count**: kernels split their sums by thread (a stream written with 2
  threads failed to decode with 1);
* ATen's **CPU kernel level** (``torch.backends.cpu.get_cpu_capability()``: DEFAULT, AVX2, AVX512,
  ...; the environment variable ``ATEN_CPU_CAPABILITY`` lowers it, read once per process):
  vectorised kernels of other widths sum in other orders (a stream written under AVX2 failed its
  check under AVX-512 on the same Intel machine);
* the **BLAS** that computes matrix products (MKL in torch's x86 builds) and the code path it picks
  from the CPU's vendor and instruction set (``MKL_ENABLE_INSTRUCTIONS`` caps it, ``MKL_CBWR``
  pins it);
* for a model whose products run in **bf16** (``lm-online``'s ``autocast``), whether the CPU
  computes bf16 in hardware (:func:`native_bf16`; oneDNN emulates it elsewhere, with other
  roundings: a stream made with avx512_bf16 failed its check where bf16 was emulated).

:func:`current` reads these as a :class:`FloatRecord`; streams store it (``to_bytes``, not in the
configuration, so the results cache does not split per machine). The decoder runs with the
recorded thread count (:func:`using_threads`) and refuses a stream whose kernel level or BLAS path
differs from its own *before* decoding, with :class:`~kolmo.errors.StreamMismatchError` naming
both and the process settings that reproduce the encoder's (:meth:`FloatRecord.settings`): a
process started with them decodes the stream (``kolmo decompress`` restarts itself so where the
CPU allows it). On a GPU the record is all zeros: the device type and dtype are in the
configuration, and verification proves a stream decodes where it was made.
"""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass
from typing import Dict

from ..errors import StreamMismatchError

from ..framing.float_record import ISAS, pack_float_record, unpack_float_record

_MKL_ISA = {"SSE4_2": "SSE4.2", "AVX": "AVX", "AVX2": "AVX2", "AVX512": "AVX512", "AVX512_E1": "AVX512",
            "AVX512_E4": "AVX512", "AVX512_E5": "AVX512"}


@functools.lru_cache(maxsize=None)
def _cpuinfo() -> tuple:
    """(vendor, the flags of the first processor) from /proc/cpuinfo (('other', empty) elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read(65536)
    except OSError:
        return "other", frozenset()
    vendor = "Intel" if "GenuineIntel" in info else "AMD" if "AuthenticAMD" in info else "other"
    for line in info.splitlines():
        if line.startswith("flags"):
            return vendor, frozenset(line.split(":", 1)[1].split())
    return vendor, frozenset()


def _cpu_flags() -> tuple:
    """(vendor, widest vector instruction set) from /proc/cpuinfo ('other', 'other' elsewhere)."""
    vendor, flags = _cpuinfo()
    if not flags:
        return vendor, "other"
    isa = ("AVX512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "AVX" if "avx" in flags
           else "SSE4.2" if "sse4_2" in flags else "other")
    return vendor, isa


def native_bf16(device) -> bool:
    """Whether ``device`` (a torch.device) computes bf16 matrix products in hardware: a CUDA device
    that supports bf16, or a CPU with avx512_bf16 or AMX (bf16 is emulated elsewhere: measured on
    SmolLM2-135M's training step, 2.2 x faster than float32 with avx512_bf16, as fast with AVX-512
    alone, 8.6 x slower with AVX2 alone)."""
    import torch
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    return native_bf16_cpu()


def native_bf16_cpu() -> bool:
    """Whether this CPU has bf16 instructions (avx512_bf16, or AMX's amx_bf16)."""
    return bool({"avx512_bf16", "amx_bf16"} & _cpuinfo()[1])


def _blas_isa(cpu_isa: str) -> str:
    """MKL's instruction set: the CPU's widest, capped by MKL_ENABLE_INSTRUCTIONS, or MKL_CBWR's."""
    pinned = os.environ.get("MKL_CBWR", "").split(",")[0].strip().upper()
    if pinned:
        return _MKL_ISA.get(pinned, "other")
    cap = _MKL_ISA.get(os.environ.get("MKL_ENABLE_INSTRUCTIONS", "").strip().upper())
    if cap and cpu_isa in ISAS and ISAS.index(cap) < ISAS.index(cpu_isa):
        return cap
    return cpu_isa


@dataclass(frozen=True)
class FloatRecord:
    """What the encoder's floats depended on (module docstring). All empty / 0 off the CPU."""

    threads: int = 0
    level: str = ""
    blas: str = ""
    vendor: str = ""
    isa: str = ""
    #: a model computing in bf16 on a CPU with bf16 in hardware (False: no bf16 products, or emulated
    #: ones; the stream's configuration says whether there are bf16 products)
    bf16_native: bool = False

    def to_bytes(self, version: int) -> bytes:
        """The payload's first 3 bytes, with payload ``version`` (:mod:`kolmo.framing.float_record`)."""
        return pack_float_record(version, threads=self.threads, level=self.level, blas=self.blas,
                                 vendor=self.vendor, isa=self.isa, bf16_native=self.bf16_native)

    @classmethod
    def from_bytes(cls, head: bytes) -> "FloatRecord":
        return cls(**unpack_float_record(head))

    @property
    def on_cpu(self) -> bool:
        return bool(self.level)

    def describe(self, bf16: bool = False) -> str:
        """In words; ``bf16``: the model computes in bf16 (then say whether in hardware or emulated)."""
        if not self.on_cpu:
            return "not on a CPU"
        kind = ", bf16 in hardware" if self.bf16_native else ", bf16 emulated" if bf16 else ""
        return (f"CPU kernels {self.level}, {self.threads} thread(s), BLAS {self.blas or 'none'} with "
                f"{self.isa} on {self.vendor}{kind}")

    def settings(self) -> Dict[str, str]:
        """Environment variables that make a new process on this machine compute with these floats."""
        out = {"ATEN_CPU_CAPABILITY": self.level.lower()} if self.level not in ("", "other") else {}
        if self.blas == "mkl" and self.isa in _MKL_ISA.values():
            out["MKL_ENABLE_INSTRUCTIONS"] = {"SSE4.2": "SSE4_2"}.get(self.isa, self.isa)
        out["OMP_NUM_THREADS"] = str(self.threads)
        return out

    def reproducible_here(self, bf16: bool = False) -> bool:
        """Whether this CPU can run these settings: same vendor, and instruction sets it has (and,
        for a model computing in bf16, bf16 in hardware where the encoder had it, and only there)."""
        vendor, isa = _cpu_flags()
        widths = {"DEFAULT": "", "AVX2": "AVX2", "AVX512": "AVX512"}
        if not self.on_cpu or self.vendor != vendor or self.level not in widths or isa not in ISAS:
            return False
        if bf16 and self.bf16_native != native_bf16_cpu():
            return False  # no process setting turns bf16 hardware on (or oneDNN's use of it off)
        have = ISAS.index(isa)
        return self.isa in ISAS and ISAS.index(self.isa) <= have and ISAS.index(widths[self.level]) <= have


def current(device, bf16: bool = False) -> FloatRecord:
    """This process's record for a model on ``device`` (all empty off the CPU); ``bf16``: the
    model's products run in bf16 (then the record says whether this CPU computes bf16 in hardware)."""
    if getattr(device, "type", str(device)) != "cpu":
        return FloatRecord()
    import torch
    vendor, isa = _cpu_flags()
    mkl = torch.backends.mkl.is_available()
    return FloatRecord(threads=min(torch.get_num_threads(), 255), level=torch.backends.cpu.get_cpu_capability(),
                       blas="mkl" if mkl else "other", vendor=vendor, isa=_blas_isa(isa) if mkl else isa,
                       bf16_native=bool(bf16) and native_bf16_cpu())


class FloatMismatchError(StreamMismatchError):
    """A stream made where the floats differ from this process's (see :mod:`kolmo.lm.machine`)."""

    def __init__(self, message: str, record: FloatRecord, reproducible: bool = False):
        super().__init__(message)
        self.record = record
        #: whether a process on this machine started with ``record.settings()`` computes its floats
        self.reproducible = reproducible


def check(record: FloatRecord, device, what: str, bf16: bool = False) -> None:
    """Raise :class:`FloatMismatchError` unless this process computes ``record``'s floats (threads
    aside: :func:`using_threads` sets those); ``bf16``: the stream's model computes in bf16."""
    here = current(device, bf16)
    if record.on_cpu != here.on_cpu or (record.level, record.blas, record.vendor, record.isa, record.bf16_native) != (
            here.level, here.blas, here.vendor, here.isa, here.bf16_native):
        env = " ".join(f"{k}={v}" for k, v in record.settings().items())
        reproducible = record.reproducible_here(bf16)
        hint = f"start a new process with {env} to decode it here" if reproducible else \
            "decode it on a machine like the encoder's"
        raise FloatMismatchError(
            f"{what} was written where the model's floats come from {record.describe(bf16)}; this process "
            f"computes them with {here.describe(bf16)}, so decoding would fail: {hint}", record, reproducible)


def float64_device(t):
    """``t`` where float64 math runs: Apple's MPS has no float64, so a tensor there moves to the CPU."""
    return t.cpu() if t.device.type == "mps" else t


@contextlib.contextmanager
def using_threads(n: int, device):
    """Run with torch's CPU thread count set to ``n`` (a stream's record; 0: leave it) when the
    model runs on the CPU, restoring the caller's count afterwards."""
    import torch
    before = torch.get_num_threads()
    if n and n != before and getattr(device, "type", str(device)) == "cpu":
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
