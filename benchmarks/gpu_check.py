"""Every GPU check of LM coding in one prepared command (CI never has a GPU; run it on a CUDA machine).

    python -m benchmarks.gpu_check [--random-weights --tokenizer DIR] [--text FILE] [--mb 8] [--json gpu.json]
    python -m benchmarks.gpu_check --save-tokenizer .gl/tokenizer     # here, before a device call

1. Default settings: compress and decompress ``--mb`` MB of English (goal >= 1 MB/s each on one
   H100/H200 in bf16), stream bits/byte against ``bits()`` in one piece (what chunking costs); then
   the same with ``match=True`` (what the mixture with the match model costs on the device).
2. Stress matrix: sizes from 0 B to ``--mb``, chunk sizes 64 to 4096 tokens, coder batches 1 to
   1024, bf16/fp16/float32, English, random bytes and invalid UTF-8: every case must round-trip;
   a table with throughput, bits/byte against ``bits()`` and chunks in the safe mode. Cases are
   run in order until ``--budget`` seconds are spent; the rest are listed as skipped.
3. GPU against CPU bits of the same text (skipped with random weights on a machine without the model).

``--random-weights``: the default model's shapes with seeded weights (the 98 MB GGUF is over the
64 MiB a device call carries); valid for speed and round trips, not for bits/byte. Its tokenizer
comes from ``--tokenizer DIR``, a folder made here with ``--save-tokenizer``. Scoring throughput
is measured by ``benchmarks.gpu_score``. Without CUDA it says so and exits 0; ``--device cpu
--mb 0.01 --budget 60`` dry-runs the script on a CPU.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def stress_cases(max_bytes: int, quick: bool):
    """(label, size, kind, chunk_tokens, coder_batch, dtype): the stress matrix, most telling first."""
    sizes = [0, 1, 100, 10_000, 1_000_000, 8_000_000]
    sizes = [s for s in sizes if s <= max_bytes] or [0, 1, min(100, max_bytes)]
    cases = []
    for dtype in ("bfloat16", "float16", "float32"):
        for kind in ("english", "random", "invalid-utf8"):
            for size in sizes:
                for chunk, batch in ((64, 1), (256, 1024), (1024, 64), (4096, 1024)):
                    if size > 1_000_000 and (kind != "english" or dtype != "bfloat16" or chunk < 256):
                        continue  # the largest inputs once, at realistic settings
                    if quick and (chunk, batch) not in ((256, 1024),):
                        continue
                    cases.append((f"{dtype}/{kind}/{size}B/c{chunk}/b{batch}", size, kind, chunk, batch, dtype))
    return cases


def make_input(kind: str, size: int, english: bytes) -> bytes:
    import numpy as np
    rng = np.random.default_rng(size)
    if kind == "english":
        reps = -(-size // max(1, len(english)))
        return (english * max(1, reps))[:size]
    if kind == "random":
        return rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    # invalid UTF-8: text with stray continuation bytes, lone lead bytes and 0xFF sprinkled in
    raw = bytearray((english * (size // max(1, len(english)) + 1))[:size])
    for pos in rng.integers(0, max(1, size), size // 50 + (1 if size else 0)):
        if pos < len(raw):
            raw[pos] = int(rng.choice([0x80, 0xBF, 0xC3, 0xE2, 0xFF, 0xFE]))
    return bytes(raw)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--mb", type=float, default=8.0, help="English text for the default-settings run (MB)")
    p.add_argument("--text", help="a file of English text (default: the corpus or Python's docs, repeated)")
    p.add_argument("--random-weights", action="store_true")
    p.add_argument("--tokenizer", help="SmolLM2 tokenizer folder for --random-weights")
    p.add_argument("--save-tokenizer", metavar="DIR", help="write the default tokenizer's files to DIR and exit")
    p.add_argument("--budget", type=float, default=240.0, help="seconds for the stress matrix")
    p.add_argument("--quick", action="store_true", help="one chunk/batch setting per stress case")
    p.add_argument("--json")
    a = p.parse_args(argv)

    if a.save_tokenizer:
        from ._random_model import save_tokenizer
        print(f"tokenizer files written to {save_tokenizer(Path(a.save_tokenizer))}")
        return None

    import torch

    import kolmo

    from ._env import default_text, environment
    from .lm_coding import coding_run
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; nothing measured")
        return None
    sync = torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)
    english = Path(a.text).read_bytes() if a.text else default_text(10 ** 9)
    n_main = int(a.mb * 1e6)
    main_text = make_input("english", n_main, english)

    def compressor(dtype="auto", **opts):
        if a.random_weights:
            from ._random_model import random_default_lm
            return random_default_lm(a.tokenizer, device=a.device, dtype=dtype, **opts)
        return kolmo.get_compressor("lm", device=a.device, dtype=dtype, progress=False, **opts)

    res = {"benchmark": "gpu_check", "env": environment(a.device), "random_weights": a.random_weights}
    head = (f"gpu_check on {res['env'].get('gpu', a.device)} (torch {res['env']['torch']}, transformers "
            f"{res['env']['transformers']}, kolmo {res['env']['kolmo']}; "
            f"{'random weights: speed and round trips only' if a.random_weights else 'real weights'})")
    print(head, flush=True)

    # 1. default settings
    lm = compressor()
    lm.bits(main_text[:2000])  # load and warm up
    run = coding_run(lm, main_text, sync)
    run["ideal_bits_per_byte"] = lm.bits(main_text) / max(1, len(main_text))
    res["default"] = run
    print(f"  default settings, {len(main_text):,} B: encode {run['encode_bytes_per_s'] / 1e6:.3f} MB/s, decode "
          f"{run['decode_bytes_per_s'] / 1e6:.3f} MB/s (goal >= 1 MB/s); {run['chunks']} chunks of "
          f"{run['chunk_tokens']} tokens, batch {run['coder_batch']}; stream {run['stream_bits_per_byte']:.4f} vs "
          f"ideal one-piece {run['ideal_bits_per_byte']:.4f} bits/byte; safe chunks {run['safe_chunks']}; "
          f"{'OK' if run['ok'] else 'FAILED'}", flush=True)
    # the same with the match model (match=True): what the mixture costs on this device
    matched = compressor(match=True)
    run = coding_run(matched, main_text, sync)
    res["match"] = run
    print(f"  with the match model (match=True): encode {run['encode_bytes_per_s'] / 1e6:.3f} MB/s, decode "
          f"{run['decode_bytes_per_s'] / 1e6:.3f} MB/s; stream {run['stream_bits_per_byte']:.4f} bits/byte; "
          f"{'OK' if run['ok'] else 'FAILED'}", flush=True)

    # 2. stress matrix
    rows, failed, t0 = [], 0, time.perf_counter()
    comps = {}
    print(f"  {'case':<44}{'ok':>4}{'enc B/s':>12}{'dec B/s':>12}{'stream b/B':>11}{'bits() b/B':>11}{'safe':>6}")
    for label, size, kind, chunk, batch, dtype in stress_cases(n_main, a.quick):
        if time.perf_counter() - t0 > a.budget:
            rows.append({"case": label, "skipped": "time budget"})
            continue
        key = (dtype, chunk, batch)
        if key not in comps:
            comps[key] = compressor(dtype, chunk_tokens=chunk, coder_batch=batch)
        comp = comps[key]
        data = make_input(kind, size, english)
        try:
            r = coding_run(comp, data, sync)
            r["bits_per_byte"] = comp.bits(data) / max(1, size)
        except Exception as exc:  # a failed round trip is the finding: record it and go on
            r = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        r["case"] = label
        rows.append(r)
        failed += not r["ok"]
        if r["ok"]:
            print(f"  {label:<44}{'ok':>4}{r['encode_bytes_per_s']:12.0f}{r['decode_bytes_per_s']:12.0f}"
                  f"{r['stream_bits_per_byte']:11.3f}{r['bits_per_byte']:11.3f}{r['safe_chunks']:6d}", flush=True)
        else:
            print(f"  {label:<44}  FAILED {r['error'][:200]}", flush=True)
    skipped = sum("skipped" in r for r in rows)
    res["stress"] = rows
    print(f"  stress: {len(rows) - skipped} cases run, {failed} failed round trips, {skipped} skipped (budget)")

    # 3. GPU against CPU bits of the same text
    if not a.random_weights and a.device != "cpu":
        piece = main_text[:4000]
        cmp = {f"{dev}-{dt}": kolmo.get_compressor("lm", device=dev, dtype=dt, progress=False).bits(piece)
               for dev, dt in ((a.device, "bfloat16"), (a.device, "float32"), ("cpu", "float32"))}
        ref = cmp["cpu-float32"]
        res["gpu_vs_cpu"] = {k: {"bits": v, "rel_diff_vs_cpu_fp32": (v - ref) / ref} for k, v in cmp.items()}
        for k, v in res["gpu_vs_cpu"].items():
            print(f"  bits {k:<18} {v['bits']:12.1f}  ({v['rel_diff_vs_cpu_fp32']:+.2e} vs cpu float32)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)
    if failed or not run["ok"]:
        raise SystemExit(1)
    return res


if __name__ == "__main__":
    main()
