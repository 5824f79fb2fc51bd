"""The default model's architecture with seeded random weights, for timing and round trips where the
98 MB GGUF cannot travel (a device call carries at most 64 MiB).

Random weights are valid for speed (same shapes, same kernels) and for round trips (any
distribution must decode); bits/byte needs the real weights. The tokenizer is SmolLM2's, read from
``tokenizer_dir``: the folder kolmo converted the default model into (its ``tokenizer.json`` is
3.5 MB), or a copy of its tokenizer files carried beside the script (see ``save_tokenizer``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

# SmolLM2-135M(-Instruct): the shapes that set the speed
SMOLLM2_135M = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                    num_attention_heads=9, num_key_value_heads=3, head_dim=64, max_position_embeddings=8192,
                    rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2,
                    rope_parameters={"rope_theta": 100000.0, "rope_type": "default"})


def converted_default_dir() -> Optional[Path]:
    """The folder of the converted default model in kolmo's cache, if it was converted on this machine."""
    from kolmo.cache import cache_dir
    found = sorted((cache_dir() / "models").glob("*-v2/tokenizer.json"))
    return found[0].parent if found else None


def save_tokenizer(target: Path) -> Path:
    """Copy the default model's tokenizer files (not its weights) into ``target`` (loads it once)."""
    import kolmo
    kolmo.get_compressor("lm", progress=False).loaded  # converts the GGUF once if needed
    src = converted_default_dir()
    target.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (target / name).write_bytes((src / name).read_bytes())
    return target


def random_default_lm(tokenizer_dir: Optional[str] = None, *, device: str = "cuda", dtype: str = "auto",
                      seed: int = 0, **options):
    """An ``lm`` compressor with the default model's architecture and seeded random weights."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    import kolmo
    from kolmo.lm.models.loading import LoadedModel, resolve_device, resolve_dtype
    from kolmo.lm.models.tokens import ByteTokenizer

    folder = Path(tokenizer_dir) if tokenizer_dir else converted_default_dir()
    if folder is None or not (folder / "tokenizer.json").is_file():
        raise SystemExit("random weights need SmolLM2's tokenizer files: pass --tokenizer DIR "
                         "(make one with `python -m benchmarks.gpu_check --save-tokenizer DIR`)")
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**SMOLLM2_135M)).to(dtype=dt, device=dev).eval()
    model.requires_grad_(False)
    tok = AutoTokenizer.from_pretrained(str(folder))
    vocab = model.get_output_embeddings().weight.shape[0]
    loaded = LoadedModel(model=model, tokenizer=ByteTokenizer(tok, vocab), name=f"smollm2-135m-random-{seed}",
                         digest=f"random-seed-{seed}", device=dev, dtype=dt, max_positions=8192,
                         vocab_size=vocab, start_id=int(tok.bos_token_id if tok.bos_token_id is not None else 1))
    comp = kolmo.get_compressor("lm", device=str(dev), dtype=str(dt).replace("torch.", ""), progress=False, **options)
    comp._loaded = loaded  # the compressor would otherwise load the real weights lazily
    return comp
