"""Benchmark: the mixture (lm-online with mix=...) against its parts, the in-context lm and PPMd.

    python -m benchmarks.mix_bench [--corpus ../shared/corpus] [--parts finnish,english,alice,scratch,learners,coding,autocast]
                                   [--sizes 0,16384] [--alice-bytes N] [--code-bytes N]
                                   [--scratch-bytes N] [--threads N] [--json out.json]

Ideal code lengths in bits (real coding where it says so). One run of the mixture gives every
part's code length too: the parts never see the mixture (the learner trains on the tokens, the
memories count them), so a part's bits in the mixture's run are the bits of ``mix=(part,)``
(tested in tests/test_mixture.py). C(Y | X) = C(XY) - C(X), both from runs that share X's
whole blocks (:func:`kolmo.lm.coding.prequential.shared_runs`'s schedule); "lm (in context)" is ``lm``'s own
``conditional_bits(y, x)``, measured in the same run of this script. "Without each part": the same
columns mixed again without one part (what ``mix=`` the other parts codes, :func:`without_each`):
what each part adds to the mixture. The mixture is lm-online's default unless ``--mix-opts`` says
otherwise, and that default follows the hardware (:mod:`kolmo.compressors.lm_online`): where the CPU
or GPU computes bf16, the models run in bf16 with a second learner, elsewhere float32 without it;
``--mix-opts '{"autocast": null}'`` measures float32's default anywhere.

finnish   Y = the first 2 kB of the Finnish Genesis (Latin-1 in the corpus, coded as UTF-8), X = the
          same book from "käärme" (ch. 3) on, ``--sizes`` bytes of it (default 0, 16 kB, 48 kB).
          Goals (issue): C(Y | X = 150 kB) <= 0.75 x lm's in context, and below PPMd's.
english   Y = the first 2 kB of the World English Bible's Genesis, X = the King James Genesis from
          ch. 3 on, 32 kB. Goal: below the in-context lm's.
alice     alice29.txt bits/byte (ideal), with the time; real coding of its first ``--code-bytes``
          (16 kB): stream bits/byte against the ideal. Goal: <= 0.90 ideal, real within 0.01.
scratch   the four Canterbury English texts (1.19 MB; ``--scratch-bytes``) with model="scratch" and
          the memories, against PPMd order 6. Goal: >= 5% under PPMd.
learners  the curve of bits against time that picks the default learner: ``bits()`` of the first
          ``--curve-bytes`` (12 kB) of lcet10.txt for the learner alone (``mix=None``, float32,
          lm-online's default before the mixture: the baseline) and the default mixture with each learner of
          ``--curve-learners`` (full fine-tuning, ``adapter="last"``, ``"bias"``, ``"lora"``), each
          after a 200-byte warm-up, in one process. Rule: the fewest bits among those no slower
          than 1.5 x the baseline.
coding    what the memories and the mixer cost real coding with model="scratch": compress (with
          verification) and decompress of the first ``--coding-bytes`` (4 kB) of lcet10.txt with the
          learner alone and with the default mixture, alternating, best of ``--coding-rounds`` (3),
          in CPU seconds of this process (steadier than wall time on a shared machine). Goal: the
          mixture <= 1.2 x the learner alone.
autocast  what ``autocast="bfloat16"`` buys the pretrained learner: one block's learning step (a
          forward and backward pass over a 2048-token window of the Finnish Genesis, 1024 tokens
          learned, and the optimizer's step) in float32 and under bf16 autocast, alternating, best of
          ``--coding-rounds``, wall seconds, and the block's bits at theta_0 in both. Prints whether
          the CPU has bf16 in hardware. Goal where it has: >= 1.5 x faster, bits within 0.5%.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

def _corpus(path: str) -> Path:
    root = Path(path)
    if not (root / "genesis" / "finnish.txt").is_file():
        raise SystemExit(f"corpus not found at {root} (expected genesis/ and canterbury-mixed/): pass --corpus")
    return root


def _mixture(a, scratch: bool = False, **kw):
    import kolmo
    # lm-online's default mixture: every part the model has (the runs saved before the neural cache,
    # benchmarks/saved/mix_finnish.json, had four: their config names them)
    opts = dict(mix="auto", **({"model": "scratch"} if scratch else {}))
    opts.update(json.loads(a.mix_opts))
    opts.update(kw)
    return kolmo.get_compressor("lm-online", device=a.device, progress=a.progress, **opts)


def conditional_table(comp, x: bytes, y: bytes):
    """(C(Y|X) of the mixture, {part: C(Y|X)}, seconds, runs): :func:`kolmo.lm.coding.prequential.shared_runs`
    through X and XY, reading each run's per-token columns and mixer contexts as it ends (``runs``:
    "head", "x", "xy", for trying other mixers offline with --save-columns)."""
    from kolmo.lm.coding.prequential import shared_runs
    eng = comp.prequential
    runs, sums = {}, {}

    def grab(key, block_bits):
        if block_bits:
            name = {"head": "head", 0: "x", 1: "xy"}[key]
            runs[name] = (eng.last_columns, eng.last_contexts)
            sums[name] = eng.last_columns.sum(axis=0)

    t = time.perf_counter()
    mx, mxy = shared_runs(eng, [comp._seq(comp.tokens(x)), comp._seq(comp.tokens(x + y))], on_run=grab)
    secs = time.perf_counter() - t
    zero = np.zeros(len(eng.experts))
    parts = sums.get("xy", zero) - sums.get("x", zero)  # the shared head cancels
    return mxy - mx, dict(zip(eng.experts, parts.tolist())), secs, runs


def save_columns(path: str, runs: dict, experts) -> None:
    """``runs`` ({"head" / "x" / "xy": (columns, contexts)}) and the experts' names to ``path``
    (.npz: ``<run>_bits``, ``<run>_ctx``, ``experts``), for ``python -m benchmarks.remix``."""
    np.savez(path, experts=np.array(list(experts)), **{f"{k}_{w}": v for k, (c, ctx) in runs.items()
                                                       for w, v in (("bits", c), ("ctx", ctx)) if v is not None})


def without_each(comp, runs: dict) -> dict:
    """{part: C(Y|X) of the mixture without that part}, from the columns of ``runs`` (as
    :func:`conditional_table` returns them; a single run: ``{"xy": (columns, contexts)}``) mixed again
    by a mixer of the same settings over the other parts' experts (:mod:`benchmarks.remix`). The parts
    never see the mixture, so each figure is what ``mix=(the other parts)`` codes (the same runs, the
    same weight sets)."""
    from .remix import mixed_bits, with_columns
    eng = comp.prequential
    sets = eng.new_mixer().sets
    out = {}
    for part in eng.parts:
        rest, names = with_columns(runs, eng.experts, drop=[part])
        if names:
            out[part] = mixed_bits(rest, share=eng.share, eta=eng.eta, sets=sets)
    return out


def part_genesis(a, root: Path, which: str) -> dict:
    import kolmo
    if which == "finnish":
        text = (root / "genesis" / "finnish.txt").read_bytes().decode("latin-1").encode("utf-8")
        y, x_all = text[:2048], text[text.index("käärme".encode()):]
        sizes = [int(s) for s in a.sizes.split(",")] if a.sizes else [0, 16384, 49152]
    else:
        y = (root / "genesis" / "english-web.txt").read_bytes()[:2048]
        kjv = (root / "genesis" / "english-kjv.txt").read_bytes()
        x_all = kjv[kjv.index(b"Now the serpent was more subtil"):]
        sizes = [int(s) for s in a.sizes.split(",")] if a.sizes else [32768]
    lm = kolmo.get_compressor("lm", device=a.device, progress=a.progress)
    ppmd = kolmo.get_compressor("ppmd", order=6)
    comp = _mixture(a)
    print(f"\n{which}: C(Y|X) bits, Y = {len(y)} bytes, X = up to {len(x_all)} bytes; mixture {comp.config['mix']}")
    print(f"   {'|X|':>7} {'lm ctx':>8} {'ppmd':>8} " + " ".join(f"{p:>8}" for p in comp.prequential.experts)
          + f" {'mixture':>8} {'mix/lm':>7}  seconds (lm, mixture)")
    rows = []
    for n in sizes:
        x = x_all[:n]
        t = time.perf_counter()
        c_lm = lm.conditional_bits(y, x)
        t_lm = time.perf_counter() - t
        c_pp = ppmd.conditional_bits(y, x)
        c_mix, parts, t_mix, runs = conditional_table(comp, x, y)
        if a.save_columns:
            save_columns(f"{a.save_columns}-{which}-{n}.npz", runs, comp.prequential.experts)
        without = without_each(comp, runs)
        rows.append({"x_bytes": n, "lm": c_lm, "ppmd": c_pp, "parts": parts, "mixture": c_mix,
                     "without": without, "lm_seconds": t_lm, "mixture_seconds": t_mix})
        print(f"   {n:>7} {c_lm:>8.0f} {c_pp:>8.0f} " + " ".join(f"{v:>8.0f}" for v in parts.values())
              + f" {c_mix:>8.0f} {c_mix / c_lm:>7.3f}  ({t_lm:.0f}, {t_mix:.0f})", flush=True)
        print("            the mixture without each part: " + ", ".join(f"{p} {v:.0f} ({v - c_mix:+.0f})"
                                                                      for p, v in without.items()), flush=True)
    return {"y_bytes": len(y), "rows": rows, "config": comp.config}


def _timed_bits(comp, data: bytes):
    """``comp.bits(data)`` and the seconds it took."""
    t = time.perf_counter()
    bits = comp.bits(data)
    return bits, time.perf_counter() - t


def _ideal_run(a, comp, data: bytes, which: str):
    """The mixture's ideal bits of ``data``, the seconds they took and each expert's bits/byte from
    the same run; with --save-columns the run's per-expert bits and mixer contexts (as 'xy')."""
    bits, secs = _timed_bits(comp, data)
    eng = comp.prequential
    if a.save_columns:
        save_columns(f"{a.save_columns}-{which}-{len(data)}.npz", {"xy": (eng.last_columns, eng.last_contexts)},
                     eng.experts)
    return bits, secs, dict(zip(eng.experts, (eng.last_columns.sum(axis=0) / len(data)).tolist()))


def part_alice(a, root: Path) -> dict:
    data = (root / "canterbury-mixed" / "alice29.txt").read_bytes()
    data = data[:a.alice_bytes] if a.alice_bytes else data
    comp = _mixture(a)
    bits, secs, parts = _ideal_run(a, comp, data, "alice")
    eng = comp.prequential
    without = {p: v / len(data) for p, v in without_each(comp, {"xy": (eng.last_columns, eng.last_contexts)}).items()}
    print(f"\nalice29.txt, {len(data)} bytes, ideal bits/byte: mixture {bits / len(data):.4f} in {secs:.0f} s; parts "
          + ", ".join(f"{p} {v:.4f}" for p, v in parts.items()) + "; the mixture without each part: "
          + ", ".join(f"{p} {v:.4f}" for p, v in without.items()), flush=True)
    out = {"bytes": len(data), "mixture_bpb": bits / len(data), "seconds": secs, "parts_bpb": parts,
           "without_bpb": without, "config": comp.config}
    if a.code_bytes:
        head = data[:a.code_bytes]
        ideal = comp.bits(head)
        t = time.perf_counter()
        blob = comp.compress(head)
        t_enc = time.perf_counter() - t
        ok = comp.decompress(blob) == head
        real = 8 * len(blob) / len(head)
        print(f"   real coding of the first {len(head)} bytes: {real:.4f} bits/byte (stream with container) against "
              f"{ideal / len(head):.4f} ideal; compress {t_enc:.0f} s; round trip {'OK' if ok else 'FAILED'}")
        out.update(code_bytes=len(head), code_real_bpb=real, code_ideal_bpb=ideal / len(head), round_trip=ok,
                   compress_seconds=t_enc)
    return out


def part_scratch(a, root: Path) -> dict:
    import kolmo
    d = root / "canterbury-mixed"
    data = b"".join((d / f).read_bytes() for f in ("alice29.txt", "asyoulik.txt", "lcet10.txt", "plrabn12.txt"))
    data = data[:a.scratch_bytes] if a.scratch_bytes else data
    c_p = kolmo.get_compressor("ppmd", order=6).bits(data)
    comp = _mixture(a, scratch=True)
    bits, secs, parts = _ideal_run(a, comp, data, "scratch")
    print(f"\nscratch + memories on {len(data)} bytes of English: mixture {bits / len(data):.4f} bits/byte "
          f"({bits / c_p - 1:+.1%} against PPMd order 6's {c_p / len(data):.4f}) in {secs:.0f} s; parts "
          + ", ".join(f"{p} {v:.4f}" for p, v in parts.items()), flush=True)
    return {"bytes": len(data), "ppmd_bpb": c_p / len(data), "mixture_bpb": bits / len(data), "parts_bpb": parts,
            "seconds": secs, "config": comp.config}


def part_learners(a, root: Path) -> dict:
    data = (root / "canterbury-mixed" / "lcet10.txt").read_bytes()[:a.curve_bytes]
    runs = [("learner alone (mix=None)", dict(mix=None, autocast=None))]  # today's lm-online: float32
    runs += [(f"mixture, {name}", dict(adapter=None if name == "full" else name))
             for name in a.curve_learners.split(",")]
    print(f"\nlearners: ideal bits/byte of lcet10.txt[:{len(data)}] against seconds (one process, in turn)")
    rows = []
    for label, opts in runs:
        comp = _mixture(a, **opts)
        comp.bits(data[:200])                     # loads the model, warms the kernels
        bits, secs = _timed_bits(comp, data)
        rows.append({"learner": label, "options": opts, "bpb": bits / len(data), "seconds": secs})
        base = rows[0]["seconds"]
        print(f"   {label:32s} {bits / len(data):.4f} bits/byte  {secs:6.0f} s  ({secs / base:.2f} x the learner alone)",
              flush=True)
    ok = [r for r in rows[1:] if r["seconds"] <= 1.5 * rows[0]["seconds"]]
    best = min(ok, key=lambda r: r["bpb"]) if ok else None
    print(f"   fewest bits within 1.5 x the learner alone's time: {best['learner'] if best else 'none'}")
    return {"bytes": len(data), "rows": rows, "pick": best["learner"] if best else None}


def part_coding(a, root: Path) -> dict:
    """What the memories and the mixer cost real coding with model="scratch" (goal: <= 1.2 x)."""
    data = (root / "canterbury-mixed" / "lcet10.txt").read_bytes()[:a.coding_bytes]
    comps = {"learner alone": _mixture(a, scratch=True, mix=None), "mixture": _mixture(a, scratch=True)}
    best = {name: [float("inf"), float("inf")] for name in comps}
    for comp in comps.values():
        comp.bits(data[:200])                     # makes the model and the optimizer state
    print(f"\ncoding: model='scratch', lcet10.txt[:{len(data)}], CPU seconds (best of {a.coding_rounds}, "
          "alternating), compress with verification / decompress")
    for _ in range(a.coding_rounds):
        for name, comp in comps.items():
            t = time.process_time()
            blob = comp.compress(data)
            t_enc = time.process_time() - t
            back = comp.decompress(blob)
            t_dec = time.process_time() - t - t_enc
            if back != data:
                raise SystemExit(f"coding: the {name}'s stream did not decode to its input")
            best[name] = [min(best[name][0], t_enc), min(best[name][1], t_dec)]
    (e0, d0), (e1, d1) = best["learner alone"], best["mixture"]
    print(f"   learner alone {e0:.1f} / {d0:.1f} s; mixture {e1:.1f} / {d1:.1f} s: compress {e1 / e0:.2f} x, "
          f"decompress {d1 / d0:.2f} x the learner alone (goal <= 1.2 x)", flush=True)
    return {"bytes": len(data), "cpu_seconds": best, "compress_ratio": e1 / e0, "decompress_ratio": d1 / d0}


def part_autocast(a, root: Path) -> dict:
    """One learning step of the pretrained learner in float32 and under bf16 autocast (module docstring)."""
    from kolmo.lm.machine import native_bf16
    text = (root / "genesis" / "finnish.txt").read_bytes().decode("latin-1").encode("utf-8")
    engines, out = {}, {}
    for name, cast in (("float32", None), ("bfloat16", "bfloat16")):
        comp = _mixture(a, mix=None, autocast=cast)
        eng = comp.prequential
        seq = comp._seq(comp.tokens(text[:16384]))
        s, e = eng.blocks(len(seq) - 1)[1]  # the second block: a full window of context
        eng.reset()
        engines[name] = (eng, seq, s, e)
        out[name] = {"bits_theta0": float(eng._train(seq, s, e, score=True).sum()), "seconds": []}
    for _ in range(a.coding_rounds):
        for name, (eng, seq, s, e) in engines.items():
            t = time.perf_counter()
            eng._train(seq, s, e, score=True)
            out[name]["seconds"].append(time.perf_counter() - t)
    f32, b16 = out["float32"], out["bfloat16"]
    res = {"native_bf16": native_bf16(engines["float32"][0].learner.device), "window": engines["float32"][0].window,
           "tokens_learned": engines["float32"][3] - engines["float32"][2], **out,
           "speedup": min(f32["seconds"]) / min(b16["seconds"]),
           "bits_rel_diff": b16["bits_theta0"] / f32["bits_theta0"] - 1}
    print(f"\nautocast: one learning step, best of {a.coding_rounds} (bf16 in hardware: {res['native_bf16']}): "
          f"float32 {min(f32['seconds']):.2f} s, bfloat16 {min(b16['seconds']):.2f} s, speed-up "
          f"{res['speedup']:.2f} x; the block's bits at theta_0 {f32['bits_theta0']:.1f} against "
          f"{b16['bits_theta0']:.1f} ({100 * res['bits_rel_diff']:+.2f}%)", flush=True)
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "corpus"))
    p.add_argument("--parts", default="finnish,english,alice,scratch,learners,coding,autocast")
    p.add_argument("--sizes", help="finnish / english: comma-separated sizes of X in bytes")
    p.add_argument("--alice-bytes", type=int, help="alice: bytes of alice29.txt (default all)")
    p.add_argument("--code-bytes", type=int, default=16384, help="alice: bytes really coded (0: none)")
    p.add_argument("--scratch-bytes", type=int, help="scratch: bytes of English (default 1.19 MB)")
    p.add_argument("--curve-bytes", type=int, default=12000, help="learners: bytes of lcet10.txt")
    p.add_argument("--curve-learners", default="full,last,bias,lora", help="learners: the mixture's learners")
    p.add_argument("--coding-bytes", type=int, default=4096, help="coding: bytes of lcet10.txt")
    p.add_argument("--coding-rounds", type=int, default=3, help="coding, autocast: rounds of each (best of)")
    p.add_argument("--mix-opts", default="{}", help="JSON options for every mixture (e.g. '{\"share\": 1e-3}')")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int)
    p.add_argument("--progress", action="store_true")
    p.add_argument("--save-columns", help="save each run's per-part bits to PREFIX-part-size.npz "
                                          "(mixed again offline by python -m benchmarks.remix)")
    p.add_argument("--json")
    a = p.parse_args(argv)
    import torch

    from ._env import environment
    if a.threads:
        torch.set_num_threads(a.threads)
    root = _corpus(a.corpus)
    env = environment(a.device)
    print(f"mixture benchmark [{env['device']}{', ' + env['gpu'] if 'gpu' in env else ''}, kolmo {env['kolmo']}, "
          f"torch {env['torch']} ({env['torch_threads']} threads), transformers {env['transformers']}, numpy "
          f"{env['numpy']}, {env['platform']}, {env['cpu_count']} CPUs]")
    res = {"benchmark": "mix_bench", "env": env, "argv": argv}
    for key in a.parts.split(","):
        key = key.strip()
        t = time.perf_counter()
        if key in ("finnish", "english"):
            res[key] = part_genesis(a, root, key)
        else:
            res[key] = {"alice": part_alice, "scratch": part_scratch, "learners": part_learners,
                        "coding": part_coding, "autocast": part_autocast}[key](a, root)
        print(f"   ({key}: {time.perf_counter() - t:.0f} s)", flush=True)
        if a.json:
            Path(a.json).write_text(json.dumps(res, indent=2, default=str))
    return res


if __name__ == "__main__":
    main()
