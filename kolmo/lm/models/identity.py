"""A language model's identity: one SHA-256 of what determines its floats and its tokens.

One rule for a folder, a Hugging Face name and a GGUF file alike, applied to the model *as
loaded* (for a GGUF: transformers' de-quantised conversion, which is what computes)::

    model_sha256 = SHA-256(  b"kolmo model identity 1\\n"
                           + canonical JSON of the computation's configuration   (COMPUTE_FIELDS)
                           + the tokenizer: the bytes each id spells, the special ids, the BPE
                             merges, and the ids it gives PROBE
                           + every tensor of the state dict in name order:
                             name, dtype, shape, then its bytes (little-endian) )

The configuration is read from the loaded configuration object (``config.hidden_size``, ...),
never from ``config.json``, and normalised where transformers 4.x and 5.x name the same thing
differently (``rope_theta`` against ``rope_parameters``; ``head_dim`` given or implied). Version
stamps (``transformers_version``), commit hashes, timestamps, key order, file layout (shards,
safetensors against ``.bin``) and the folder's name never enter it: the same weights saved again
by another library release, or copied into a folder of another name, keep their identity; one
changed weight, merge or configuration value changes it. The model's name is a label shown beside
the identity (``config["model"]``), not part of it.

:func:`legacy_digest` is the rule of payload formats 0 and 1 (a hash of the files beside the
weights, version stamps included), kept only to name those formats when their streams are refused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Dict, Optional

#: a fixed text whose token ids pin the tokenizer's behaviour (normaliser, pre-tokeniser, merges)
PROBE = ("The quick brown fox jumps over the lazy dog. It was the best of times!\n"
         "def f(x):\n    return x ** 2  # 12345 67.89 0x1F\n\t\t  spaces   and\r\nlines\n"
         "Ölçü, naïve café, Übergröße, 東京, Привет мир! مرحبا 🙂 «quotes» — dash… end")

#: configuration attributes that change what the model computes (read with getattr; absent or
#: None ones are left out, so a field one release adds with no value changes nothing)
COMPUTE_FIELDS = (
    "model_type", "vocab_size", "hidden_size", "intermediate_size", "n_inner", "num_hidden_layers",
    "num_attention_heads", "num_key_value_heads", "head_dim", "hidden_act", "activation_function",
    "rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon", "max_position_embeddings",
    "tie_word_embeddings", "attention_bias", "mlp_bias", "sliding_window", "use_sliding_window",
    "partial_rotary_factor", "rotary_pct", "final_logit_softcapping", "attn_logit_softcapping",
    "logit_scale", "logits_scaling", "query_pre_attn_scalar", "attention_multiplier",
    "embedding_multiplier", "residual_multiplier", "scale_attn_weights", "scale_attn_by_inverse_layer_idx",
    "reorder_and_upcast_attn", "parallel_residual", "use_parallel_residual",
)
_ROPE_KEYS = ("rope_parameters", "rope_scaling")


def _plain(value: Any) -> Any:
    """JSON-ready, key order free (sorted at dump time), tuples as lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)  # 10000.0 in one release's JSON, 10000 in another's
    return value


def compute_config(model) -> Dict[str, Any]:
    """The configuration fields that change the computation, from the loaded configuration object."""
    cfg = model.config
    out: Dict[str, Any] = {"architecture": type(model).__name__}
    for key in COMPUTE_FIELDS:
        try:
            value = getattr(cfg, key, None)
        except Exception:  # a property that cannot be computed for this configuration
            value = None
        if value is not None and not callable(value):
            out[key] = _plain(value)
    heads = out.get("num_attention_heads")
    if "head_dim" not in out and heads and out.get("hidden_size"):
        out["head_dim"] = out["hidden_size"] // heads  # implied in one release, written in another
    rope: Dict[str, Any] = {}
    for key in _ROPE_KEYS:  # 5.x: rope_parameters holds rope_theta; 4.x: rope_theta + rope_scaling
        part = getattr(cfg, key, None)
        if isinstance(part, dict):
            rope.update(part)
    theta = getattr(cfg, "rope_theta", None)
    if theta is not None:
        rope.setdefault("rope_theta", theta)
    if "type" in rope:  # 4.x's old spelling of rope_type
        rope.setdefault("rope_type", rope.pop("type"))
    if rope:
        rope.setdefault("rope_type", "default")
        out["rope"] = _plain(rope)
    return out


def _tokenizer_part(tokenizer, h) -> None:
    """Feed the tokenizer's canonical form into ``h`` (a :class:`kolmo.lm.models.tokens.ByteTokenizer`)."""
    import numpy as np
    h.update(b"tokenizer\n")
    h.update(np.asarray([len(b) for b in tokenizer.id_bytes], dtype="<u4").tobytes())
    h.update(b"".join(tokenizer.id_bytes))
    special = sorted(int(i) for i in (getattr(tokenizer.hf, "all_special_ids", None) or []))
    h.update(json.dumps(special).encode())
    merges = _merges(tokenizer.hf)
    h.update(json.dumps(merges, ensure_ascii=False).encode())
    h.update(np.asarray(tokenizer.encode(PROBE.encode("utf-8")), dtype="<i8").tobytes())


def _merges(hf) -> Optional[list]:
    """The BPE merges as "left right" strings (tokenizers writes them as strings or as pairs)."""
    backend = getattr(hf, "backend_tokenizer", None)
    if backend is None:
        return None
    try:
        model = json.loads(backend.to_str()).get("model", {})
    except Exception:
        return None
    merges = model.get("merges")
    if not isinstance(merges, list):
        return None
    return [" ".join(m) if isinstance(m, (list, tuple)) else str(m) for m in merges]


def _tensors_part(model, h) -> None:
    """Feed every tensor of the state dict (name order): name, dtype, shape, little-endian bytes."""
    import torch
    h.update(b"tensors\n")
    for name, t in sorted(model.state_dict().items()):
        t = t.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        t = t.contiguous().reshape(-1)
        h.update(f"{name}\0{str(t.dtype).replace('torch.', '')}\0{list(t.shape)}\0".encode())
        h.update(memoryview(t.view(torch.uint8).numpy()))


def model_identity(model, tokenizer) -> str:
    """``model_sha256`` of a loaded model and its :class:`~kolmo.lm.models.tokens.ByteTokenizer` (module docstring)."""
    h = hashlib.sha256(b"kolmo model identity 1\n")
    h.update(json.dumps(compute_config(model), sort_keys=True, separators=(",", ":")).encode())
    _tokenizer_part(tokenizer, h)
    _tensors_part(model, h)
    return h.hexdigest()


def legacy_digest(kind: str, where: str, file_sha256, commit: Optional[str] = None) -> str:
    """The identity payload formats 0 and 1 recorded (kept only to recognise their streams):
    a GGUF file's SHA-256; for a folder, a SHA-256 of each weight, JSON and ``.model`` file's name and
    SHA-256 (version stamps included); for a hub name, the commit it resolved to."""
    if kind == "gguf":
        return file_sha256(Path(where))
    if kind == "folder":
        h = hashlib.sha256()
        for f in sorted(Path(where).iterdir()):
            if f.suffix in (".safetensors", ".bin", ".gguf", ".json", ".model") and f.is_file():
                h.update(f.name.encode())
                h.update(file_sha256(f).encode())
        return h.hexdigest()
    return commit or "unknown-revision"
