"""Every GPU check of the LM compressor in one script (CI never has a GPU; run it on a CUDA machine).

    python -m benchmarks.gpu_check [--bytes 200000] [--json gpu.json]

1. Round trip on CUDA: compress/decompress English text in independent chunks, byte-identical.
2. GPU against CPU: bits of the same text on CUDA (bf16 and float32) and on the CPU (float32).
3. Scoring throughput of the default model in bf16 on CUDA (goal: >= 500k tokens/s), against the
   naive loop (one window at a time, full log-softmax) in the same run.
4. Arithmetic coding throughput on CUDA (goal: >= 1 MB/s of English text).

On a machine without CUDA it says so and exits 0 (use ``--device cpu --bytes 3000`` to dry-run the
script itself on a CPU).
"""

from __future__ import annotations

import argparse
import json
import math
import time


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bytes", type=int, default=200_000)
    p.add_argument("--device", default="cuda")
    p.add_argument("--chunk-tokens", type=int, default=256)
    p.add_argument("--coder-batch", type=int, default=1024)
    p.add_argument("--cpu-bytes", type=int, default=4000, help="text slice compared against the CPU")
    p.add_argument("--json")
    a = p.parse_args(argv)

    import torch

    import kolmo

    from ._env import default_text, environment
    from .lm_core import naive_bits
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; nothing measured")
        return None
    sync = torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)
    text = default_text(a.bytes)
    res = {"benchmark": "gpu_check", "env": environment(a.device), "bytes": len(text)}

    # 1. round trip in chunks, and coding throughput
    lm = kolmo.get_compressor("lm", device=a.device, chunk_tokens=a.chunk_tokens, coder_batch=a.coder_batch,
                              batch_tokens=1 << 17 if a.device.startswith("cuda") else None, progress=False)
    lm.bits(text[:1000])  # load and warm up
    sync()
    t = time.perf_counter()
    blob = lm.compress(text)
    sync()
    t_enc = time.perf_counter() - t
    t = time.perf_counter()
    back = lm.decompress(blob)
    sync()
    t_dec = time.perf_counter() - t
    bits = lm.bits(text)
    res["round_trip"] = {"ok": back == text, "compressed_bytes": len(blob), "ideal_bytes": bits / 8,
                         "overhead": len(blob) / (bits / 8) - 1, "bits_per_byte": 8 * len(blob) / len(text),
                         "encode_MB_per_s": len(text) / t_enc / 1e6, "decode_MB_per_s": len(text) / t_dec / 1e6,
                         "chunk_tokens": a.chunk_tokens, "coder_batch": a.coder_batch}

    # 2. GPU against CPU bits on a slice
    piece = text[: a.cpu_bytes]
    cmp = {}
    for dev, dtype in ((a.device, "bfloat16"), (a.device, "float32"), ("cpu", "float32")):
        c = kolmo.get_compressor("lm", device=dev, dtype=dtype, progress=False)
        cmp[f"{dev}-{dtype}"] = c.bits(piece)
    ref = cmp["cpu-float32"]
    res["gpu_vs_cpu"] = {k: {"bits": v, "rel_diff_vs_cpu_fp32": (v - ref) / ref} for k, v in cmp.items()}

    # 3. scoring throughput, bf16, against the naive loop on a slice
    scorer_lm = kolmo.get_compressor("lm", device=a.device, dtype="bfloat16" if a.device != "cpu" else "float32",
                                     batch_tokens=1 << 17 if a.device.startswith("cuda") else None, progress=False)
    scorer = scorer_lm.scorer
    ids = scorer_lm.tokens(text)
    docs = [scorer_lm._seq(ids[i:i + 2000]) for i in range(0, len(ids), 2000)]
    scorer.score(docs[:2], [1, 1])
    sync()
    t = time.perf_counter()
    total = sum(float(b.sum()) for b in scorer.score(docs, [1] * len(docs)))
    sync()
    t_core = time.perf_counter() - t
    n_naive = max(1, len(docs) // 8)
    t = time.perf_counter()
    naive = sum(naive_bits(scorer.lm, s, scorer.window, scorer.stride, scorer.start,
                           scorer.tokenizer.model_input) for s in docs[:n_naive])
    sync()
    t_naive = time.perf_counter() - t
    n_tok = sum(len(d) - 1 for d in docs)
    naive_tok = sum(len(d) - 1 for d in docs[:n_naive])
    core_part = sum(float(b.sum()) for b in scorer.score(docs[:n_naive], [1] * n_naive))
    res["scoring"] = {"tokens": n_tok, "core_tokens_per_s": n_tok / t_core, "naive_tokens_per_s": naive_tok / t_naive,
                      "speedup": (n_tok / t_core) / (naive_tok / t_naive), "bits_per_byte": total / len(text),
                      "naive_rel_diff": abs(core_part - naive) / max(naive, 1e-9)}

    print(f"gpu_check on {res['env'].get('gpu', a.device)} (torch {res['env']['torch']}, "
          f"transformers {res['env']['transformers']})")
    rt = res["round_trip"]
    print(f"  round trip: {'OK' if rt['ok'] else 'FAILED'}; {rt['bits_per_byte']:.3f} bits/byte, stream "
          f"{100 * rt['overhead']:+.2f}% vs ideal; encode {rt['encode_MB_per_s']:.4f} MB/s "
          f"({1e6 * rt['encode_MB_per_s']:.0f} B/s), decode {rt['decode_MB_per_s']:.4f} MB/s "
          f"({1e6 * rt['decode_MB_per_s']:.0f} B/s) (goal >= 1 MB/s on a GPU)")
    for k, v in res["gpu_vs_cpu"].items():
        print(f"  bits {k:<18} {v['bits']:12.1f}  ({v['rel_diff_vs_cpu_fp32']:+.2e} vs cpu float32)")
    sc = res["scoring"]
    print(f"  scoring: core {sc['core_tokens_per_s']:,.0f} tok/s (goal >= 500,000 in bf16), naive "
          f"{sc['naive_tokens_per_s']:,.0f} tok/s, speed-up {sc['speedup']:.1f}x, "
          f"{sc['bits_per_byte']:.4f} bits/byte, core vs naive {sc['naive_rel_diff']:.1e}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)
    if not rt["ok"] or math.isnan(total):
        raise SystemExit(1)
    return res


if __name__ == "__main__":
    main()
