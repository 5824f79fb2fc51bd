"""Benchmark: the batched log-likelihood core against the naive loop, in one run.

    python -m benchmarks.lm_core [--bytes 6000] [--model NAME] [--device cpu|cuda] [--json out.json]

Naive loop: one window at a time, full logits for every position, full log-softmax, on the same
windows. Both score the same tokens; the script checks that their totals agree, then reports
tokens per second, bits per byte and the speed-up (goal on a CPU: >= 1.5x at equal bits).
Prints versions and device beside the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import time


def naive_bits(model, seq, window, stride, start, model_input) -> float:
    import torch

    from kolmo.lm.scoring.batching import plan_windows
    total = 0.0
    with torch.inference_mode():
        for begin, split, end in plan_windows(len(seq), 1, window, stride):
            ids = torch.from_numpy(model_input(seq[begin:end]))[None]
            logits = model(input_ids=ids).logits[0].float()  # (T, V): the full head
            lp = torch.log_softmax(logits, dim=-1)
            tgt = torch.from_numpy(seq[split:end])
            total += float(-lp[split - begin - 1: end - begin - 1].gather(1, tgt[:, None]).sum()) / math.log(2)
    return total


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bytes", type=int, default=6000)
    p.add_argument("--docs", type=int, default=40, help="split the text into this many documents")
    p.add_argument("--model", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--window", type=int, default=1024)
    p.add_argument("--stride", type=int, default=512)
    p.add_argument("--json")
    a = p.parse_args(argv)

    import kolmo

    from ._env import default_text, environment
    text = default_text(a.bytes)
    lm = kolmo.get_compressor("lm", model=a.model, device=a.device, window=a.window, stride=a.stride, progress=False)
    step = math.ceil(len(text) / a.docs)
    docs = [text[i:i + step] for i in range(0, len(text), step)]
    loaded, scorer = lm.loaded, lm.scorer
    seqs = [lm._seq(lm.tokens(d)) for d in docs]
    n_tok = sum(len(s) - 1 for s in seqs)
    sync = (lambda: __import__("torch").cuda.synchronize()) if a.device.startswith("cuda") else (lambda: None)

    scorer.score(seqs[:1], [1])  # warm-up
    t = time.perf_counter()
    core = sum(float(b.sum()) for b in scorer.score(seqs, [1] * len(seqs)))
    sync()
    t_core = time.perf_counter() - t
    t = time.perf_counter()
    naive = sum(naive_bits(loaded.model, s, scorer.window, scorer.stride, scorer.start, loaded.tokenizer.model_input)
                for s in seqs)
    sync()
    t_naive = time.perf_counter() - t

    res = {
        "benchmark": "lm_core", "env": environment(a.device),
        "settings": {"model": loaded.name, "window": scorer.window, "stride": scorer.stride,
                     "batch_tokens": scorer.batch_tokens, "bytes": len(text), "docs": len(docs), "tokens": n_tok},
        "core": {"seconds": t_core, "tokens_per_s": n_tok / t_core, "bits_per_byte": core / len(text)},
        "naive": {"seconds": t_naive, "tokens_per_s": n_tok / t_naive, "bits_per_byte": naive / len(text)},
        "speedup": t_naive / t_core,
        "bits_rel_diff": abs(core - naive) / naive,
    }
    print(f"lm core vs naive loop  [{res['env']['device']}, torch {res['env']['torch']}, "
          f"transformers {res['env']['transformers']}, {loaded.name}, W={scorer.window} S={scorer.stride}]")
    for k in ("core", "naive"):
        r = res[k]
        print(f"  {k:<6} {r['tokens_per_s']:9.1f} tok/s  {r['bits_per_byte']:.4f} bits/byte  {r['seconds']:.1f} s")
    print(f"  speed-up {res['speedup']:.2f}x (goal >= 1.5x on CPU), bits differ by {res['bits_rel_diff']:.2e} (relative)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)
    return res


if __name__ == "__main__":
    main()
