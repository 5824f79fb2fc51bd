"""GPU scoring throughput of the log-likelihood core (issue 9), with its numbers checked.

    python -m benchmarks.gpu_score [--random-weights] [--device cuda] [--mb 2] [--json out.json]
    python -m benchmarks.gpu_score --random-weights --device cpu --mb 0.02     # dry run on a CPU

Scores ~``--mb`` MB worth of ``--doc-tokens``-token documents (default 2 MB in 2000-token documents)
in bf16 and prints, beside versions and device:

* tokens/s of the core (eager, and compiled where ``--compile`` allows), goal >= 1M on one H100;
* the body/head split: the transformer body alone on the same batches, and each head kind alone
  (float32 reference, bf16, cce where installed) on one batch's hidden states;
* peak GPU memory of the timed run; batches and padding of the plan;
* the naive loop (one window at a time, full logits, full log-softmax) as anchor;
* bits against a float32 reference on the same tokens: the same weights in float32 with the
  float32 head (relative difference; goal <= 1e-3), and each head against the float32 head on the
  same bf16 hidden states.

``--random-weights``: SmolLM2-135M's configuration (Llama: hidden 576, intermediate 1536, 30 layers,
9 heads, 3 KV heads, vocabulary 49152, tied embeddings, rope theta 100000) with seeded random
weights, the final norm scaled by 8 so next-token distributions are far from uniform, scoring
seeded random token ids (the default model's GGUF file and tokenizer are not needed; bytes are
counted as 4 per token, about SmolLM2's rate on English). Random tokens cost ~25 bits each under
such a model against ~3.5 for English under the real one, so at equal absolute error the relative
difference is ~7x smaller than on English: the bits-per-token difference is printed too (the goal's
equivalent on English is about 1e-3 x 3.5 = 3.5e-3 bits per token). Without it: the default model (or
``--model``) on English text (the corpus's alice29.txt, repeated to the size asked).
"""

from __future__ import annotations

import argparse
import json
import math
import time

SMOLLM2_135M = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                    num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                    rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True, hidden_act="silu",
                    bos_token_id=0, eos_token_id=0)
BYTES_PER_TOKEN = 4.0  # random-weights mode: bytes a token stands for (SmolLM2 on English: ~4)


class _IdTokenizer:
    """Token ids are model inputs as they are: no virtual byte tokens."""

    n_virtual = 0

    @staticmethod
    def model_input(ids):
        return ids


def random_model(device, dtype, seed: int = 0, layers: int = 30):
    """SmolLM2-135M's architecture with seeded random weights, as a kolmo LoadedModel."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from kolmo.lm.models.loading import LoadedModel
    torch.manual_seed(seed)
    cfg = LlamaConfig(**{**SMOLLM2_135M, "num_hidden_layers": layers})
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        model.model.norm.weight.mul_(8.0)  # logits std ~4 instead of ~0.5: peaked distributions
    model.to(device=device, dtype=dtype).eval().requires_grad_(False)
    return LoadedModel(model=model, tokenizer=_IdTokenizer(), name=f"SmolLM2-135M config, random weights (seed {seed})",
                       digest=f"random-seed-{seed}", device=device, dtype=dtype,
                       max_positions=cfg.max_position_embeddings, vocab_size=cfg.vocab_size, start_id=0)


def float32_copy(loaded):
    """The same weights in float32 (bf16 -> float32 is exact), as another LoadedModel."""
    import copy

    import torch
    fp32 = copy.deepcopy(loaded.model).float()
    return type(loaded)(model=fp32, tokenizer=loaded.tokenizer, name=loaded.name + " (float32)", digest=loaded.digest,
                        device=loaded.device, dtype=torch.float32, max_positions=loaded.max_positions,
                        vocab_size=loaded.vocab_size, start_id=loaded.start_id)


def naive_bits(model, seq, window, stride, device) -> float:
    """One window at a time, full logits for every position, full float32 log-softmax."""
    import numpy as np
    import torch

    from kolmo.lm.scoring.batching import plan_windows
    total = 0.0
    with torch.inference_mode():
        for begin, split, end in plan_windows(len(seq), 1, window, stride):
            ids = torch.from_numpy(np.ascontiguousarray(seq[begin:end]))[None].to(device)
            lp = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)  # (T, V)
            tgt = torch.from_numpy(seq[split:end]).to(device)
            total += float(-lp[split - begin - 1: end - begin - 1].gather(1, tgt[:, None]).sum()) / math.log(2)
    return total


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--random-weights", action="store_true", help="SmolLM2-135M's config, seeded random weights")
    p.add_argument("--model", default=None, help="without --random-weights: a model name or path (default model)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--mb", type=float, default=2.0, help="MB of text (random weights: 4 bytes per token)")
    p.add_argument("--doc-tokens", type=int, default=2000)
    p.add_argument("--window", type=int, default=2048)
    p.add_argument("--stride", type=int, default=1024)
    p.add_argument("--batch-tokens", type=int, default=None, help="default 131072 on CUDA, 8192 on a CPU")
    p.add_argument("--head", default="auto", help="the core's head kind (auto, float32, bf16, cce)")
    p.add_argument("--compile", choices=("auto", "on", "off"), default="auto", help="auto: on for CUDA")
    p.add_argument("--naive-docs", type=int, default=None, help="documents for the naive loop (default 16; CPU 1)")
    p.add_argument("--ref-docs", type=int, default=None, help="documents for the float32 reference (default all)")
    p.add_argument("--head-rows", type=int, default=None, help="rows for the heads alone (default: one batch; CPU 512)")
    p.add_argument("--layers", type=int, default=30, help="random weights: layers (30 is SmolLM2-135M)")
    p.add_argument("--json")
    a = p.parse_args(argv)

    import numpy as np
    import torch

    from kolmo.lm.scoring.head import cce_unavailable, make_head
    from kolmo.lm.scoring.batching import padding_fraction
    from kolmo.lm.scoring.loglik import Scorer
    from kolmo.lm.models.loading import resolve_dtype

    from ._env import default_text, environment
    t_start = time.perf_counter()
    dev = torch.device(a.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print("gpu_score: no CUDA device here; nothing measured (dry-run with --device cpu --mb 0.02)")
        return None
    cuda = dev.type == "cuda"
    dtype = resolve_dtype(a.dtype, dev)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    env = environment(a.device)
    for mod in ("triton", "cut_cross_entropy"):
        try:
            env[mod] = __import__(mod).__version__
        except Exception:
            env[mod] = None

    # -- model and documents ----------------------------------------------------------------------
    rng = np.random.default_rng(0)
    if a.random_weights:
        loaded = random_model(dev, dtype, layers=a.layers)
        n_tokens = int(a.mb * 1e6 / BYTES_PER_TOKEN)
        ids = rng.integers(1, loaded.vocab_size, n_tokens).astype(np.int64)
        n_bytes = n_tokens * BYTES_PER_TOKEN
    else:
        from kolmo.lm.models.loading import load_model
        loaded = load_model(a.model, device=a.device, dtype=a.dtype, progress=True)
        text = default_text(1 << 30)
        text = (text * (1 + int(a.mb * 1e6) // max(1, len(text))))[: int(a.mb * 1e6)]
        ids = loaded.tokenizer.encode(text)
        n_bytes = len(text)
    seqs = [np.concatenate([[loaded.start_id], ids[i:i + a.doc_tokens]]).astype(np.int64)
            for i in range(0, len(ids), a.doc_tokens)]
    froms = [1] * len(seqs)
    n_tok = sum(len(s) - 1 for s in seqs)
    budget = a.batch_tokens or (131072 if cuda else 8192)
    compile_on = a.compile == "on" or (a.compile == "auto" and cuda)
    res = {"benchmark": "gpu_score", "env": env,
           "settings": {"model": loaded.name, "dtype": str(dtype).replace("torch.", ""), "docs": len(seqs),
                        "doc_tokens": a.doc_tokens, "tokens": n_tok, "bytes": n_bytes, "window": a.window,
                        "stride": a.stride, "batch_tokens": budget, "random_weights": a.random_weights}}

    def timed(fn):
        sync()
        t = time.perf_counter()
        out = fn()
        sync()
        return out, time.perf_counter() - t

    def total_bits(scorer, docs=None):
        docs = seqs if docs is None else docs
        return sum(float(b.sum()) for b in scorer.score(docs, [1] * len(docs)))

    # -- the core, eager then compiled --------------------------------------------------------------
    runs, scorers = {}, {}
    for compiled in ([False, True] if compile_on else [False]):
        scorer = Scorer(loaded, window=a.window, stride=a.stride, batch_tokens=budget, progress=False, head=a.head,
                        compile=compiled)
        _, t_first = timed(lambda: total_bits(scorer))  # warm-up: kernels, autotuning, compilation
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        bits, t = timed(lambda: total_bits(scorer))
        name = "compiled" if compiled else "eager"
        scorers[name] = scorer
        runs[name] = {"seconds": t, "first_run_seconds": t_first, "tokens_per_s": n_tok / t, "bits": bits,
                      "bits_per_byte": bits / n_bytes, "head_kind": scorer.head_kind,
                      "peak_mem_GiB": torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else None}
        if compiled and scorer._body is not None and scorer._body.failed:
            runs[name]["compile_failed"] = scorer._body.failed
    res["core"] = runs
    best = max(runs, key=lambda k: runs[k]["tokens_per_s"])
    plan = scorer.plan(seqs, froms)
    span = lambda it: it[3] - it[1]  # noqa: E731
    res["plan"] = {"batches": len(plan), "padding_fraction": padding_fraction(plan, span)}

    # -- body alone on the same batches ---------------------------------------------------------------
    def body_pass(sc):
        for batch in plan:
            width = max(span(it) for it in batch)
            x = np.full((len(batch), width), loaded.start_id, dtype=np.int64)
            for i, (d, b, s, e) in enumerate(batch):
                x[i, : e - b] = seqs[d][b:e]
            sc.forward(loaded.model, sc.inputs(x))
    body = {}
    for name, sc in scorers.items():  # the scorers above: compiled ones are compiled for these shapes
        with torch.inference_mode():
            body_pass(sc)  # warm-up
            _, t = timed(lambda: body_pass(sc))
        body[name] = {"seconds": t, "tokens_per_s": n_tok / t}
    res["body"] = body

    # -- each head alone, on one batch's hidden states; bits against the float32 head ------------------
    first = plan[0]
    width = max(span(it) for it in first)
    x = np.full((len(first), width), loaded.start_id, dtype=np.int64)
    rows, cols, tgts = [], [], []
    for i, (d, b, s, e) in enumerate(first):
        x[i, : e - b] = seqs[d][b:e]
        rows.append(np.full(e - s, i))
        cols.append(np.arange(s - b - 1, e - b - 1))
        tgts.append(seqs[d][s:e])
    kinds = ["float32", "bf16"] + ([] if cce_unavailable(loaded.model, dev, dtype) else ["cce"])
    heads = {}
    with torch.inference_mode():
        from kolmo.lm.scoring.batching import base_forward
        hidden, _ = base_forward(loaded.model, torch.from_numpy(x).to(dev))
        h = hidden[torch.from_numpy(np.concatenate(rows)).to(dev), torch.from_numpy(np.concatenate(cols)).to(dev)]
        t_ids = torch.from_numpy(np.concatenate(tgts)).to(dev)
        n_rows = a.head_rows or (len(t_ids) if cuda else 512)
        h, t_ids = h[:n_rows], t_ids[:n_rows]
        ref_bits = None
        for kind in kinds:
            for comp in ([False, True] if (compile_on and kind == "bf16") else [False]):
                hd = make_head(loaded.model, dev, dtype, kind, compile=comp)
                out = hd.bits_tensor(h, t_ids).cpu().numpy()  # warm-up
                reps, t = 0, 0.0
                sync()
                t0 = time.perf_counter()
                while reps < (3 if cuda else 1) or (t < 1.0 and reps < 200):
                    hd.bits_tensor(h, t_ids)
                    reps += 1
                    sync()
                    t = time.perf_counter() - t0
                if kind == "float32":
                    ref_bits = out
                name = kind + ("+compiled" if comp else "")
                heads[name] = {"tokens_per_s": reps * len(out) / t,
                               "bits_rel_diff_vs_float32_head": abs(out.sum() - ref_bits.sum()) / ref_bits.sum(),
                               "max_abs_diff_bits_per_token": float(np.abs(out - ref_bits).max())}
        del hidden, h
    res["heads"] = heads
    res["head_tokens"] = int(len(t_ids))

    # -- the naive loop -----------------------------------------------------------------------------
    n_naive = min(len(seqs), a.naive_docs or (16 if cuda else 1))
    naive_docs = seqs[:n_naive]
    naive_tok = sum(len(s) - 1 for s in naive_docs)
    naive_bits(loaded.model, naive_docs[0][:64], a.window, a.stride, dev)  # warm-up
    naive, t_naive = timed(lambda: sum(naive_bits(loaded.model, s, a.window, a.stride, dev) for s in naive_docs))
    core_part = total_bits(scorer, naive_docs)
    res["naive"] = {"docs": n_naive, "tokens": naive_tok, "tokens_per_s": naive_tok / t_naive,
                    "bits_rel_diff_vs_core": abs(naive - core_part) / naive}

    # -- float32 reference: the same weights in float32, float32 head -----------------------------------
    n_ref = min(len(seqs), a.ref_docs or len(seqs))
    ref_docs = seqs[:n_ref]
    ref_loaded = float32_copy(loaded) if dtype != torch.float32 else loaded
    ref_scorer = Scorer(ref_loaded, window=a.window, stride=a.stride, batch_tokens=budget, progress=False,
                        head="float32")
    ref, t_ref = timed(lambda: total_bits(ref_scorer, ref_docs))
    fast = {k: total_bits(sc, ref_docs) for k, sc in scorers.items()}
    res["float32_reference"] = {"docs": n_ref, "tokens": sum(len(s) - 1 for s in ref_docs), "bits": ref,
                                "tokens_per_s": sum(len(s) - 1 for s in ref_docs) / t_ref,
                                "rel_diff": {k: (v - ref) / ref for k, v in fast.items()},
                                "diff_bits_per_token": {k: (v - ref) / sum(len(s) - 1 for s in ref_docs)
                                                        for k, v in fast.items()}}
    del ref_loaded, ref_scorer
    res["wall_seconds"] = time.perf_counter() - t_start

    # -- report -------------------------------------------------------------------------------------
    e = res["env"]
    print(f"gpu_score  [{e.get('gpu', a.device)}, torch {e['torch']}, transformers {e['transformers']}, "
          f"triton {e['triton']}, cut-cross-entropy {e['cut_cross_entropy']}, python {e['python']}]")
    st = res["settings"]
    print(f"  {st['model']}, {st['dtype']}: {st['docs']} docs x {a.doc_tokens} tokens = {n_tok:,} tokens "
          f"({n_bytes / 1e6:.2f} MB), W={a.window} S={a.stride}, batch_tokens={budget}; plan: "
          f"{res['plan']['batches']} batches, padding {100 * res['plan']['padding_fraction']:.2f}%")
    for k, r in runs.items():
        mem = f", peak {r['peak_mem_GiB']:.2f} GiB" if r["peak_mem_GiB"] is not None else ""
        fail = f" (compile FAILED, ran eagerly: {r['compile_failed']})" if r.get("compile_failed") else ""
        print(f"  core {k:<8} {r['tokens_per_s']:>12,.0f} tok/s  head {r['head_kind']}, {r['bits_per_byte']:.4f} "
              f"bits/byte, {r['seconds']:.2f} s (first run {r['first_run_seconds']:.1f} s){mem}{fail}")
    for k, r in body.items():
        print(f"  body {k:<8} {r['tokens_per_s']:>12,.0f} tok/s alone")
    for k, r in heads.items():
        print(f"  head {k:<17} {r['tokens_per_s']:>12,.0f} tok/s alone; bits vs float32 head "
              f"{r['bits_rel_diff_vs_float32_head']:.1e} (relative), max {r['max_abs_diff_bits_per_token']:.1e} "
              f"bits/token  [{res['head_tokens']:,} tokens]")
    nv = res["naive"]
    print(f"  naive loop    {nv['tokens_per_s']:>12,.0f} tok/s ({nv['docs']} docs); core {best} is "
          f"{runs[best]['tokens_per_s'] / nv['tokens_per_s']:.1f}x; bits differ by {nv['bits_rel_diff_vs_core']:.1e}")
    fr = res["float32_reference"]
    diffs = ", ".join(f"{k} {v:+.2e} ({fr['diff_bits_per_token'][k]:+.1e} bits/token)"
                      for k, v in fr["rel_diff"].items())
    print(f"  float32 reference ({fr['docs']} docs, {fr['tokens_per_s']:,.0f} tok/s, {ref / fr['tokens']:.2f} "
          f"bits/token): bits relative difference {diffs} (goal |.| <= 1e-3)")
    goal = runs[best]["tokens_per_s"] >= 1e6 and all(abs(v) <= 1e-3 for v in fr["rel_diff"].values())
    print(f"  goal >= 1,000,000 tok/s at <= 1e-3: {'MET' if goal else 'not met'} "
          f"(best: {best}, {runs[best]['tokens_per_s']:,.0f} tok/s); wall {res['wall_seconds']:.0f} s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)
    return res


if __name__ == "__main__":
    main()
