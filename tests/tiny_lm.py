"""A tiny randomly initialised Llama-style model with a byte-level BPE tokenizer, built offline."""

from pathlib import Path

CORPUS = [
    "The quick brown fox jumps over the lazy dog. " * 3,
    "It was the best of times, it was the worst of times, it was the age of wisdom.",
    "In the beginning God created the heaven and the earth. And the earth was without form.",
    "def f(x):\n    return x * 2 + 1\n\nprint(f(3))\n",
    "Ölçü, naïve café, Übergröße, 東京, Привет мир!",
]


MISSING_BYTES = (0x04, 0xFE, 0xFF)  # like SmolLM2, the vocabulary lacks a few single-byte tokens


def portable_init(model, seed: int) -> None:
    """Overwrite every weight with numpy's seeded normals (std 0.02; norms stay 1): the same bytes
    on every CPU, so the model's SHA-256 (part of a stream's configuration) is the same everywhere.
    torch's own ``normal_`` draws other floats under other CPU kernels (AVX2 against the default)."""
    import numpy as np
    import torch
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if "norm" in name:
                continue
            p.copy_(torch.from_numpy(rng.standard_normal(tuple(p.shape)) * 0.02))


def build_tiny_model(path: Path, *, vocab_size: int = 400, hidden: int = 32, layers: int = 2,
                     max_positions: int = 128, seed: int = 0) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from kolmo.lm.models.tokens import byte_to_unicode

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=[c for b, c in byte_to_unicode().items() if b not in MISSING_BYTES],
                                  show_progress=False)
    tok.train_from_iterator(CORPUS * 20, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>")
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=max_positions, bos_token_id=0, eos_token_id=0,
                         tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    portable_init(model, seed)
    with torch.no_grad():  # sharpen the random head so probabilities are far from uniform
        model.lm_head.weight.mul_(8.0)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path))
    fast.save_pretrained(str(path))
    return path


def build_tiny_gpt2(path: Path, seed: int = 0) -> Path:
    """A tiny GPT-2 (another architecture: learned positions, biased head-free blocks) by path."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    src = build_tiny_model(path / "tok", seed=seed)
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(src))
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=96, n_embd=32, n_layer=2, n_head=2,
                                       bos_token_id=0, eos_token_id=0))
    out = path / "gpt2"
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out
