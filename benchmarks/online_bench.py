"""Benchmark: the learning compressor lm-online against the in-context lm and PPMd.

    python -m benchmarks.online_bench [--corpus ../shared/corpus] [--quick] [--parts 1,2,3,4]
                                      [--device cpu|cuda] [--threads N] [--json out.json]

1. Dataset conditioning. Y = the first 4 kB of the World English Bible's Genesis; X = the King
   James Genesis from chapter 3 on (the verses parallel to Y removed), its first 0, 2k, 8k, 32k
   and ~190k bytes. C(Y | X) in bits for "lm" (in-context: X reaches Y only through the window)
   and "lm-online" (C(XY) - C(X), learning through X). Goal: lm-online's C(Y | X at ~190 kB)
   <= 0.9 x its C(Y | X at 8 kB), while lm's flattens once X passes its window.
   ``--learner scratch`` runs part 1 with the byte transformer that starts from nothing.
2. Compression: alice29.txt bits/byte (ideal), "lm" (window 2048, stride 1024) against
   "lm-online" with the default model. Goal: lm-online <= 1.00.
3. From scratch: ``model="scratch"`` on the four English Canterbury texts (1.19 MB) against PPMd
   order 6 on the same bytes, with CPU times. Goal: fewer bits/byte than PPMd.
4. Speed: tokens/s of learning + ideal coding (``bits``) and of real coding (``compress`` with
   and without ``verify``) on this device.

The learner runs in float32 on every machine (``--autocast null``, these figures); ``--autocast
'"auto"'`` runs lm-online's default, bf16 where the hardware has it.
``--quick`` runs small versions (X up to 32 kB, 8 kB of alice, 64 kB for scratch). The default
model runs at ~50-300 tokens/s forward on a 2-core CPU and learning costs about three forward
passes, so the full parts take hours there; each part prints its settings and times.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def _corpus(path: str) -> Path:
    root = Path(path)
    if not (root / "genesis" / "english-kjv.txt").is_file():
        raise SystemExit(f"corpus not found at {root} (expected genesis/ and canterbury-mixed/): pass --corpus")
    return root


def _timed(fn, *args):
    t, c = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - t, time.process_time() - c


def part_conditioning(a, root: Path) -> dict:
    import kolmo
    y = (root / "genesis" / "english-web.txt").read_bytes()[:4096]
    kjv = (root / "genesis" / "english-kjv.txt").read_bytes()
    x_all = kjv[kjv.index(b"Now the serpent was more subtil"):]  # chapter 3 on: Y covers 1:1-2:3
    sizes = [int(s) for s in a.sizes.split(",")] if a.sizes else ([0, 2048, 8192, 32768] if a.quick else
                                                                  [0, 2048, 8192, 32768, len(x_all)])
    lm = kolmo.get_compressor("lm", device=a.device, progress=False)
    online = _part1_learner(a)
    rows = []
    print(f"\n1. C(Y|X), Y = WEB Genesis first {len(y)} bytes, X = KJV Genesis ch. 3 on ({len(x_all)} bytes)")
    print(f"   {'|X| bytes':>10} {'lm':>10} {'lm-online':>10}   (bits; seconds)")
    for n in sizes:
        x = x_all[:n]
        c_lm, t_lm, _ = _timed(lm.conditional_bits, y, x)
        c_on, t_on, _ = _timed(online.conditional_bits, y, x)
        rows.append({"x_bytes": len(x), "lm": c_lm, "lm_online": c_on, "lm_seconds": t_lm, "online_seconds": t_on})
        print(f"   {len(x):>10} {c_lm:>10.1f} {c_on:>10.1f}   ({t_lm:.0f} s; {t_on:.0f} s)", flush=True)
    by = {r["x_bytes"]: r["lm_online"] for r in rows}
    if 8192 in by and max(by) > 8192:
        ratio = by[max(by)] / by[8192]
        print(f"   lm-online C(Y|X={max(by)}) / C(Y|X=8192) = {ratio:.3f} (goal <= 0.9 at ~190 kB)")
    return {"y_bytes": len(y), "rows": rows, "online_config": online.config}


def _part1_learner(a):
    """Part 1's learner: the default model with the command line's options, or ``--learner scratch``."""
    import kolmo
    if a.learner == "scratch":
        return kolmo.get_compressor("lm-online", model="scratch", mix=_mix(a), device=a.device, progress=a.progress,
                                    **json.loads(a.scratch_opts))
    return kolmo.get_compressor("lm-online", device=a.device, progress=a.progress, **_lm_opts(a))


def _mix(a):
    """--mix: the learner alone by default (this benchmark's figures); benchmarks/mix_bench.py measures mixtures."""
    return json.loads(a.mix)


def _lm_opts(a) -> dict:
    opts = {"block_tokens": a.block_tokens, "window": a.window, "lr": a.lr, "steps": a.steps,
            "adapter": a.adapter, "train_on": a.train_on}
    return {"mix": _mix(a), "autocast": json.loads(a.autocast), **{k: v for k, v in opts.items() if v is not None}}


def part_alice(a, root: Path) -> dict:
    import kolmo
    data = (root / "canterbury-mixed" / "alice29.txt").read_bytes()
    data = data[:a.alice_bytes] if a.alice_bytes else (data[:8000] if a.quick else data)
    lm = kolmo.get_compressor("lm", device=a.device, window=2048, stride=1024, progress=a.progress)
    online = kolmo.get_compressor("lm-online", device=a.device, progress=a.progress, **_lm_opts(a))
    print(f"\n2. alice29.txt, first {len(data)} bytes, ideal bits/byte")
    c_lm, t_lm, _ = _timed(lm.bits, data)
    print(f"   lm (window 2048, stride 1024)   {c_lm / len(data):.4f}   {t_lm:.0f} s", flush=True)
    blocks, t_on, _ = _timed(online.block_bits, data)
    c_on = float(blocks.sum())
    print(f"   lm-online {_describe(online)}   {c_on / len(data):.4f}   {t_on:.0f} s (goal <= 1.00)")
    return {"bytes": len(data), "lm_bpb": c_lm / len(data), "online_bpb": c_on / len(data), "lm_seconds": t_lm,
            "online_seconds": t_on, "online_block_bits": blocks.tolist(), "online_config": online.config}


def _describe(comp) -> str:
    e = comp.prequential
    ngram = f", ngram_lr {comp.ngram_lr:g}" if getattr(comp, "ngram_lr", None) else ""
    return (f"(block {e.block_tokens}, window {e.window}, lr {comp.lr:g}{ngram}, steps {comp.steps}, "
            f"adapter {comp.adapter}, train_on {comp.train_on})")


def part_scratch(a, root: Path) -> dict:
    import kolmo
    d = root / "canterbury-mixed"
    data = b"".join((d / f).read_bytes() for f in ("alice29.txt", "asyoulik.txt", "lcet10.txt", "plrabn12.txt"))
    data = data[:a.scratch_bytes] if a.scratch_bytes else (data[:65536] if a.quick else data)
    ppmd = kolmo.get_compressor("ppmd", order=6)
    scratch = kolmo.get_compressor("lm-online", model="scratch", mix=_mix(a), device=a.device, progress=a.progress,
                                   **json.loads(a.scratch_opts))
    print(f"\n3. From scratch: {len(data)} bytes of English (Canterbury texts)")
    c_p, t_p, cpu_p = _timed(ppmd.bits, data)
    print(f"   PPMd order 6          {c_p / len(data):.4f} bits/byte   {cpu_p:.1f} s CPU", flush=True)
    blocks, t_s, cpu_s = _timed(scratch.block_bits, data)
    c_s = float(blocks.sum())
    print(f"   lm-online scratch     {c_s / len(data):.4f} bits/byte   {cpu_s:.0f} s CPU, {t_s:.0f} s wall  "
          f"{_describe(scratch)} size {scratch.size}")
    q = max(1, len(blocks) // 4)
    tail = blocks[-q:].sum() / (q * scratch.prequential.block_tokens)
    print(f"   scratch, last quarter of the blocks: {tail:.3f} bits/byte")
    return {"bytes": len(data), "ppmd_bpb": c_p / len(data), "ppmd_cpu_seconds": cpu_p,
            "scratch_bpb": c_s / len(data), "scratch_cpu_seconds": cpu_s, "scratch_wall_seconds": t_s,
            "scratch_config": scratch.config}


def bare_steps_seconds(comp, data: bytes) -> float:
    """CPU seconds of the model's prefill and one-token steps alone over ``data``'s coding schedule
    (every block's windows; no tables, no coder, no learning): what real coding cannot avoid."""
    import numpy as np

    from kolmo.lm.coding.schedule import run_windows
    eng = comp.prequential
    ids = comp.tokens(data)
    seq = np.concatenate([[eng.learner.start], ids]).astype(np.int64)[None]
    t = time.process_time()
    for s, e in eng.blocks(len(ids)):
        run_windows(eng.learner, seq, eng.windows(s, e), lambda p, t: seq[:, p], tables=lambda m, h: None)
    return time.process_time() - t


def part_speed(a, root: Path) -> dict:
    """Real coding against ideal coding and against the bare steps it has to run (issue goals:
    scratch compress with verification and decompress each <= 2 x ideal; SmolLM2 decompress <=
    1.2 x (ideal + one step per token), compress with verification <= 1.2 x (ideal + two)).
    CPU seconds of this process, best of ``--speed-rounds`` rounds that alternate ideal, compress
    and decompress (each round codes the text with its last byte changed: the results cache
    does not answer), after a warm-up that makes the model, its optimizer state and the
    compiled steps (one-time costs of a process)."""
    import kolmo
    text = (root / "canterbury-mixed" / "lcet10.txt").read_bytes()
    out = {}
    print(f"\n4. Speed on {a.device}: real coding against ideal coding and the bare steps (CPU seconds, best of "
          f"{a.speed_rounds})")
    cases = [("scratch", dict(model="scratch", mix=_mix(a), **json.loads(a.scratch_opts)), 2048 if a.quick else 8192),
             ("default", _lm_opts(a), 512 if a.quick else 2048)]
    cases = [c for c in cases if c[0] in a.speed_models.split(",")]
    for name, opts, n in cases:
        comp = kolmo.get_compressor("lm-online", device=a.device, progress=False, **opts)
        data = text[:n]
        tokens = len(comp.tokens(data))
        comp.decompress(comp.compress(data[:64]))  # warm-up: model, optimizer state, compiled steps
        best = {"ideal": float("inf"), "compress": float("inf"), "decompress": float("inf")}
        for r in range(a.speed_rounds):
            d = data[:-1] + bytes([(data[-1] + r) % 256])
            bits, _, best_i = _timed(comp.bits, d)
            blob, _, c_enc = _timed(comp.compress, d)
            back, _, c_dec = _timed(comp.decompress, blob)
            if back != d:
                raise SystemExit(f"speed: the {name} stream did not decode to its input")
            best = {"ideal": min(best["ideal"], best_i), "compress": min(best["compress"], c_enc),
                    "decompress": min(best["decompress"], c_dec)}
        t_bits, t_enc, t_dec = best["ideal"], best["compress"], best["decompress"]
        t_step = bare_steps_seconds(comp, data)
        r = {"bytes": n, "tokens": tokens, "rounds": a.speed_rounds, "ideal_s": t_bits, "compress_verify_s": t_enc,
             "decompress_s": t_dec, "bare_steps_s": t_step, "round_trip": True, "stream_bytes": len(blob),
             "ideal_bytes": bits / 8, "compress_over_ideal": t_enc / t_bits, "decompress_over_ideal": t_dec / t_bits,
             "decompress_over_ideal_plus_steps": t_dec / (t_bits + t_step),
             "compress_over_ideal_plus_two_steps": t_enc / (t_bits + 2 * t_step),
             "learn_and_score_tok_s": tokens / t_bits, "decode_tok_s": tokens / t_dec}
        out[name] = r
        print(f"   {name:<8} {tokens} tokens: ideal {t_bits:.1f} s ({r['learn_and_score_tok_s']:.0f} tok/s), compress "
              f"with verification {t_enc:.1f} s ({r['compress_over_ideal']:.2f} x ideal, "
              f"{r['compress_over_ideal_plus_two_steps']:.2f} x (ideal + 2 steps/token)), decompress {t_dec:.1f} s "
              f"({r['decompress_over_ideal']:.2f} x ideal, {r['decompress_over_ideal_plus_steps']:.2f} x (ideal + "
              f"1 step/token)); bare steps {t_step:.1f} s; stream {len(blob)} B vs ideal {bits / 8:.0f} B; "
              f"round trips OK", flush=True)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "corpus"))
    p.add_argument("--quick", action="store_true", help="small versions of every part")
    p.add_argument("--speed-models", default="scratch,default", help="part 4: which models to time")
    p.add_argument("--speed-rounds", type=int, default=3, help="part 4: rounds of each timing (best of)")
    p.add_argument("--parts", default="1,2,3,4")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's own)")
    p.add_argument("--sizes", help="part 1: comma-separated sizes of X in bytes")
    p.add_argument("--alice-bytes", type=int, help="part 2: bytes of alice29.txt (default all; --quick 8000)")
    p.add_argument("--scratch-bytes", type=int, help="part 3: bytes of English (default 1.19 MB; --quick 65536)")
    p.add_argument("--scratch-opts", default="{}", help="parts 1 (with --learner scratch), 3, 4: JSON options of "
                   "the scratch model (default: lm-online's scratch defaults)")
    p.add_argument("--learner", choices=["default", "scratch"], default="default",
                   help="part 1: lm-online with the default model (its options below) or model='scratch'")
    p.add_argument("--block-tokens", type=int, help="lm-online with the default model: tokens per block")
    p.add_argument("--window", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--steps", type=int)
    p.add_argument("--adapter", choices=["lora"])
    p.add_argument("--train-on", choices=["block", "window"])
    p.add_argument("--progress", action="store_true", help="show progress bars")
    p.add_argument("--mix", default="null", help='JSON: lm-online\'s mix option (default null: the learner alone; '
                   '"auto": the mixture)')
    p.add_argument("--autocast", default="null", help='JSON: the pretrained learner\'s autocast option (default '
                   'null: float32 on every machine, this benchmark\'s figures; "auto": lm-online\'s default)')
    p.add_argument("--json")
    a = p.parse_args(argv)
    a.progress = True if a.progress else False
    import torch

    from ._env import environment
    if a.threads:
        torch.set_num_threads(a.threads)
    root = _corpus(a.corpus)
    env = environment(a.device)
    from importlib.metadata import version
    env["constriction"] = version("constriction")
    print(f"lm-online benchmark [{env['device']}{', ' + env['gpu'] if 'gpu' in env else ''}, torch {env['torch']} "
          f"({env['torch_threads']} threads), transformers {env['transformers']}, constriction {env['constriction']}, numba {env['numba']}, "
          f"{env['platform']}, {env['cpu_count']} CPUs]")
    res = {"benchmark": "online_bench", "env": env, "quick": a.quick, "argv": argv}
    parts = {"1": ("conditioning", part_conditioning), "2": ("alice", part_alice), "3": ("scratch", part_scratch),
             "4": ("speed", part_speed)}
    for key in a.parts.split(","):
        name, fn = parts[key.strip()]
        res[name], seconds, _ = _timed(fn, a, root)
        print(f"   (part {key}: {seconds:.0f} s)")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2, default=str))
    return res



if __name__ == "__main__":
    main()
