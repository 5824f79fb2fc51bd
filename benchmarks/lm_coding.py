"""Real LM coding throughput and cost: compress and decompress at the default settings.

    python -m benchmarks.lm_coding [--kb 100] [--device cpu] [--no-verify] [--json out.json]

Goal on this project's 2-core CPU, float32, default settings, 100 kB of English: compress >= 1 kB/s
and decompress >= 1 kB/s. Prints, beside versions and device:

* compress and decompress bytes/s (compress includes the verification pass unless --no-verify);
* the stream's bits/byte against ``bits()``'s ideal bits/byte of the same text in one piece: the
  difference is what chunking (each chunk restarts its context), 24-bit tables, the coder's final
  states and the container cost together;
* how many chunks went to the safe mode (0 wherever the floats are reproducible).

``--curve 512,1024,default,2048,0`` codes the same text with each chunk size (tokens; 0: one piece;
``default``: the default plan, a shared prefix then equal chunks)
and prints the cost of chunking against speed: bits/byte over the ideal in one piece, compress and
decompress bytes/s; the default chunking (``LMCompressor.coding_plan``) is chosen from it.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any, Dict


def coding_run(comp, text: bytes, sync=lambda: None) -> Dict[str, Any]:
    """Compress and decompress ``text`` once with ``comp``; throughput and cost figures."""
    sync()
    t = time.perf_counter()
    blob = comp.compress(text)
    sync()
    t_enc = time.perf_counter() - t
    t = time.perf_counter()
    back = comp.decompress(blob)
    sync()
    t_dec = time.perf_counter() - t
    n_tok = len(comp.tokens(text))
    prime, chunk = comp.coding_plan(n_tok) if n_tok else (0, 0)
    chunk = min(chunk, n_tok - prime)
    return {"bytes": len(text), "tokens": n_tok, "ok": back == text, "stream_bytes": len(blob),
            "stream_bits_per_byte": 8 * len(blob) / max(1, len(text)), "prefix_tokens": prime,
            "chunk_tokens": chunk, "chunks": -(-(n_tok - prime) // chunk) if chunk else 0,
            "coder_batch": comp.coder_batch,
            "safe_chunks": len(getattr(comp, "safe_chunks", [])), "verify": comp.verify,
            "encode_bytes_per_s": len(text) / t_enc, "decode_bytes_per_s": len(text) / t_dec,
            "encode_s": t_enc, "decode_s": t_dec}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kb", type=float, default=100.0, help="kB of English text (default 100)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--no-verify", action="store_true", help="skip the verification pass (faster, unchecked)")
    p.add_argument("--curve", help="comma-separated chunk sizes in tokens (0: one piece) to compare")
    p.add_argument("--json")
    a = p.parse_args(argv)
    if a.curve:
        return curve(a)

    import kolmo

    from ._env import default_text, environment
    text = default_text(int(a.kb * 1000))
    comp = kolmo.get_compressor("lm", device=a.device, dtype=a.dtype, verify=not a.no_verify, progress=False)
    comp.bits(text[:200])  # load the model before timing
    ideal = comp.bits(text)
    res = {"benchmark": "lm_coding", "env": environment(a.device), **coding_run(comp, text),
           "ideal_bits_per_byte": ideal / len(text)}
    res["stream_vs_ideal"] = res["stream_bits_per_byte"] / res["ideal_bits_per_byte"] - 1
    env = res["env"]
    print(f"lm_coding: {len(text)} bytes of English, {comp.loaded.name} on {a.device} ({comp.loaded.dtype}), "
          f"kolmo {env['kolmo']}, torch {env['torch']} ({env.get('torch_threads')} threads), "
          f"transformers {env['transformers']}")
    print(f"  compress   {res['encode_bytes_per_s']:8.0f} B/s  ({res['encode_s']:.1f} s; verify={res['verify']}; goal >= 1000 B/s)")
    print(f"  decompress {res['decode_bytes_per_s']:8.0f} B/s  ({res['decode_s']:.1f} s; goal >= 1000 B/s)")
    print(f"  {res['chunks']} chunks of {res['chunk_tokens']} tokens after a prefix of {res['prefix_tokens']}, "
          f"coder batch {res['coder_batch']}, "
          f"{res['safe_chunks']} in the safe mode; round trip {'OK' if res['ok'] else 'FAILED'}")
    print(f"  stream {res['stream_bits_per_byte']:.4f} bits/byte vs ideal in one piece "
          f"{res['ideal_bits_per_byte']:.4f}: {100 * res['stream_vs_ideal']:+.2f}% (chunking, tables, states, container)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)
    if not res["ok"]:
        raise SystemExit(1)
    return res


def curve(a) -> Dict[str, Any]:
    """Chunk size against the stream's cost over one piece and against speed (see the docstring)."""
    import kolmo

    from ._env import default_text, environment
    text = default_text(int(a.kb * 1000))
    sizes = [c.strip() if c.strip() == "default" else int(c) for c in a.curve.split(",")]
    base = kolmo.get_compressor("lm", device=a.device, dtype=a.dtype, progress=False)
    ideal = base.bits(text)
    n_tok = len(base.tokens(text))
    env = environment(a.device)
    print(f"lm_coding curve: {len(text)} bytes ({n_tok} tokens) of English, {base.loaded.name} on {a.device}, "
          f"kolmo {env['kolmo']}, torch {env['torch']} ({env.get('torch_threads')} threads); "
          f"ideal in one piece {ideal / len(text):.4f} bits/byte")
    print(f"  {'chunk':>8} {'chunks':>6} {'bits/byte':>9} {'over':>7} {'compress B/s':>12} {'decompress B/s':>14}")
    rows = []
    for size in sizes:
        chunking = {} if size == "default" else {"chunk_tokens": size or max(n_tok, 1)}
        comp = kolmo.get_compressor("lm", device=a.device, dtype=a.dtype, verify=not a.no_verify, progress=False,
                                    **chunking)
        r = coding_run(comp, text)
        r["over_one_piece"] = r["stream_bits_per_byte"] / (ideal / len(text)) - 1
        rows.append(r)
        label = f"{comp.coding_plan(n_tok)[0]}+{r['chunk_tokens']}" if size == "default" else size or n_tok
        print(f"  {label:>8} {r['chunks']:>6} {r['stream_bits_per_byte']:>9.4f} {100 * r['over_one_piece']:>+6.2f}% "
              f"{r['encode_bytes_per_s']:>12.0f} {r['decode_bytes_per_s']:>14.0f}", flush=True)
    res = {"benchmark": "lm_coding_curve", "env": env, "ideal_bits_per_byte": ideal / len(text), "rows": rows}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)
    return res


if __name__ == "__main__":
    main()
