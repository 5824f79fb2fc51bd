"""Benchmark: the language models at corpus scale, every figure a ratio against a baseline in the same run.

    python -m benchmarks.corpus_bench [--items 16] [--bytes 1024] [--parts ceiling,matrix,column,efficiency]
                                      [--online-model scratch] [--json out.json]

Parts:

``ceiling``     the machine's own limit: a matrix product of the default model's shapes (4096 x 576 by
                576 x 1536) in one process, then in two processes at once (one thread each), in
                float32 and bf16: the speed-up two processes get (GFLOP/s = 2 m k n / s).
``matrix``      an NCD matrix over ``--items`` items of ``--bytes`` bytes from ../shared/corpus (the
                Canterbury texts and the Genesis translations), with ``lm`` and ``lm-online``, for
                1 worker x 1 thread, 2 workers x 1 thread and 1 worker x 2 threads, in float32 and in
                the hardware's default precision (the same where bf16 is not in hardware): total time,
                tokens coded (each single and each joint concatenation's tokens) per second, and the
                scaling of 2 workers against 1 as a fraction of the two-process product speed-up
                (goal >= 0.85), in steady state: the workers are started and hold their model before
                the clock starts (a pool's start, a model load per worker, is paid once per matrix). Every worker loads its own copy of the weights (float32 from the
                safetensors file: the page cache shares the file, not the floats).
``column``      ``lm-online``: one column of 8 items given one x (four items joined) against (learning
                x once + 8 x coding one item from the learned state) (goal <= 1.3).
``efficiency``  ``lm``'s default scoring of 16 kB of English in tokens/s, as a fraction of the product's
                rate at 2 x parameters FLOPs per scored token, beside the fraction executed (every
                position of every window, attention and the windows' overlap included).

The real default model is used (converted once); versions and device are printed beside the figures.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

SHAPE = (4096, 576, 1536)  # (m, k, n): 4096 positions through SmolLM2-135M's MLP up-projection
CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
SOURCES = ("canterbury-mixed/alice29.txt", "canterbury-mixed/asyoulik.txt", "canterbury-mixed/lcet10.txt",
           "canterbury-mixed/plrabn12.txt", "genesis/english-kjv.txt", "genesis/english-web.txt",
           "genesis/finnish.txt", "genesis/french.txt", "genesis/german.txt", "genesis/portuguese.txt",
           "genesis/swedish.txt", "genesis/lolcat.txt")


def corpus_items(n: int, size: int) -> Dict[str, bytes]:
    """``n`` items of ``size`` bytes: slices taken in turn from the corpus files (4 kB apart)."""
    texts = [(s, (CORPUS / s).read_bytes()) for s in SOURCES if (CORPUS / s).is_file()]
    if not texts:
        raise SystemExit(f"no corpus at {CORPUS}: this benchmark reads ../shared/corpus")
    items = {}
    for i in range(n):
        name, text = texts[i % len(texts)]
        at = 4096 * (1 + i // len(texts))
        items[f"{Path(name).stem}@{at}"] = text[at:at + size]
    return items


def _product_rate(dtype_name: str, seconds: float, queue=None) -> float:
    """GFLOP/s of the (m, k) x (k, n) product in ``dtype_name``, one thread, for about ``seconds``."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    m, k, n = SHAPE
    dt = getattr(torch, dtype_name)
    a, b = torch.randn(m, k).to(dt), torch.randn(k, n).to(dt)
    torch.mm(a, b)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        torch.mm(a, b)
        reps += 1
    rate = 2 * m * k * n * reps / (time.perf_counter() - t0) / 1e9
    torch.set_num_threads(before)
    if queue is not None:
        queue.put(rate)
    return rate


def ceiling(seconds: float = 3.0) -> Dict[str, Any]:
    out = {}
    ctx = multiprocessing.get_context("spawn")
    for dt in ("float32", "bfloat16"):
        one = _product_rate(dt, seconds)
        q = ctx.Queue()
        procs = [ctx.Process(target=_product_rate, args=(dt, seconds, q)) for _ in range(2)]
        for p in procs:
            p.start()
        both = sum(q.get() for _ in procs)
        for p in procs:
            p.join()
        out[dt] = {"one_process_gflop_s": one, "two_processes_gflop_s": both, "two_process_speedup": both / one}
    return out


def _tokens_of_matrix(comp, items: List[bytes]) -> int:
    """Tokens an NCD matrix codes: each item alone and each ordered pair's concatenation."""
    singles = [len(comp.tokens(x)) for x in items]
    return sum(singles) + sum(len(comp.tokens(x + y)) for x in items for y in items)


def _warm(comp) -> None:
    """In a worker: build the compressor this process keeps and load its model (kolmo.matrices)."""
    import kolmo.matrices as km
    km._worker_compressor(comp).bits(b"warm up")
    time.sleep(1.0)  # hold this worker so that the other one takes the next warm-up


def _warm_pool(comp, workers: int):
    """A pool of ``workers`` spawned processes, each with the model loaded (the matrix's executor)."""
    from concurrent.futures import ProcessPoolExecutor
    ex = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    list(ex.map(_warm, [comp] * (2 * workers)))
    return ex


def matrix_part(items: Dict[str, bytes], online_model: str, speedup: Dict[str, float]) -> Dict[str, Any]:
    import kolmo
    from kolmo.lm import machine
    from kolmo.lm.models.loading import resolve_device
    native = machine.native_bf16(resolve_device("cpu"))
    out: Dict[str, Any] = {}
    for name in ("lm", "lm-online"):
        precisions = {"float32": {"dtype": "float32"} if name == "lm" else {"autocast": None}}
        if native:
            precisions["hardware default"] = {}
        for label, opts in precisions.items():
            model = {} if name == "lm" else {"model": online_model}
            comp = kolmo.get_compressor(name, progress=False, **model, **opts)
            tokens = _tokens_of_matrix(comp, list(items.values()))
            comp.bits(b"warm up: load the model, compile the kernels")
            runs = {}
            for workers, threads in ((1, 1), (2, 1), (1, 2)):
                # a fresh copy each run (lm-online remembers totals by content); the two workers are
                # started and have loaded the model before the clock starts: steady state
                run = kolmo.get_compressor(name, progress=False, **model, **opts)
                ex = _warm_pool(run, workers) if workers > 1 else None
                run.bits(b"warm up: load the model, compile the kernels")
                t0 = time.perf_counter()
                kolmo.matrix(items, compressor=run, measure="ncd", cache=False, progress=False, executor=ex,
                             threads=threads)
                secs = time.perf_counter() - t0
                if ex is not None:
                    ex.shutdown()
                runs[f"{workers}w_x_{threads}t"] = {"seconds": secs, "tok_s": tokens / secs}
                print(f"  {name:9s} {label:16s} {workers} worker(s) x {threads} thread(s): {secs:7.1f} s, "
                      f"{tokens / secs:8.1f} tokens/s", flush=True)
            scaling = runs["1w_x_1t"]["seconds"] / runs["2w_x_1t"]["seconds"]
            ref = speedup["bfloat16" if comp.config.get("dtype") == "bfloat16" or comp.config.get("autocast") else "float32"]
            out[f"{name} {label}"] = {"config": {k: v for k, v in comp.config.items() if "version" not in k},
                                      "tokens": tokens, "runs": runs, "workers_speedup": scaling,
                                      "scaling_over_ceiling": scaling / ref}
            print(f"  {name} {label}: 2 workers {scaling:.2f} x 1 worker = {scaling / ref:.2f} of the "
                  f"two-process product's {ref:.2f} x (goal >= 0.85)", flush=True)
    return out


def column_part(items: Dict[str, bytes], online_model: str) -> Dict[str, Any]:
    import kolmo
    comp = kolmo.get_compressor("lm-online", model=online_model, progress=False)
    size = len(next(iter(items.values())))
    docs = list(corpus_items(12, size).values())  # x: four items joined; eight others, each coded given x
    x, ys = b"".join(docs[:4]), docs[4:12]
    comp.bits(b"warm up: build the model, compile the kernels")

    def timed(fn):
        comp._memo.clear()  # lm-online remembers totals by content: time the work, not the memo
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    learn = timed(lambda: comp.bits(x))
    one = timed(lambda: comp.conditional_bits_many(ys[:1], x)) - learn
    column = timed(lambda: comp.conditional_bits_many(ys, x))
    ratio = column / (learn + len(ys) * one)
    print(f"  lm-online ({online_model}): learn x {learn:.2f} s, one item {one:.2f} s, a column of {len(ys)}: "
          f"{column:.2f} s = {ratio:.2f} x (learn + {len(ys)} x one) (goal <= 1.3)", flush=True)
    return {"x_bytes": len(x), "items": len(ys), "learn_x_seconds": learn, "one_item_seconds": one,
            "column_seconds": column, "column_over_learn_plus_items": ratio}


def efficiency_part(rates: Dict[str, Dict[str, float]]) -> Dict[str, Any]:
    import torch

    import kolmo
    from benchmarks._env import default_text
    from kolmo.lm.scoring.batching import plan_windows
    text = default_text(16384)
    lm = kolmo.get_compressor("lm", progress=False)
    lm.bits(text[:256])  # load and warm up
    t0 = time.perf_counter()
    lm.bits(text)
    secs = time.perf_counter() - t0
    n_tok = len(lm.tokens(text))
    params = sum(p.numel() for p in lm.loaded.model.parameters())
    s = lm.scorer
    positions = sum(e - b for b, _, e in plan_windows(n_tok + 1, 1, s.window, s.stride))
    dt = lm.config["dtype"]
    rate = rates["bfloat16" if dt == "bfloat16" else "float32"]["one_process_gflop_s"] * torch.get_num_threads()
    scored = 2 * params * n_tok / secs / 1e9
    executed = 2 * params * positions / secs / 1e9
    print(f"  lm default ({dt}, {torch.get_num_threads()} threads): {n_tok / secs:.0f} tokens/s on 16 kB; "
          f"{scored:.1f} GFLOP/s scored = {scored / rate:.1%} of the product's {rate:.0f}, executed "
          f"{executed / rate:.1%} ({positions} positions for {n_tok} tokens)", flush=True)
    return {"dtype": dt, "tokens": n_tok, "positions": positions, "seconds": secs, "tok_s": n_tok / secs,
            "params": params, "scored_fraction": scored / rate, "executed_fraction": executed / rate,
            "product_gflop_s": rate}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=16)
    p.add_argument("--bytes", type=int, default=1024)
    p.add_argument("--parts", default="ceiling,matrix,column,efficiency")
    p.add_argument("--online-model", default="scratch",
                   help="lm-online's model in the matrix and column parts (the pretrained default takes "
                        "hours per matrix on a CPU)")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    from benchmarks._env import environment
    parts = a.parts.split(",")
    out: Dict[str, Any] = {"env": environment("cpu"), "command": "python -m benchmarks.corpus_bench "
                           + " ".join(argv if argv is not None else sys.argv[1:])}
    print(json.dumps(out["env"]))
    items = corpus_items(a.items, a.bytes)
    if "ceiling" in parts or "matrix" in parts or "efficiency" in parts:
        out["ceiling"] = ceiling()
        for dt, r in out["ceiling"].items():
            print(f"  product {SHAPE} {dt}: {r['one_process_gflop_s']:.0f} GFLOP/s in one process, "
                  f"{r['two_process_speedup']:.2f} x in two", flush=True)
    if "matrix" in parts:
        speed = {dt: r["two_process_speedup"] for dt, r in out["ceiling"].items()}
        out["matrix"] = matrix_part(items, a.online_model, speed)
    if "column" in parts:
        out["column"] = column_part(items, a.online_model)
    if "efficiency" in parts:
        out["efficiency"] = efficiency_part(out["ceiling"])
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
