"""A model's identity is what it computes (kolmo.lm.models.identity): never version stamps, names or layout."""

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")

import kolmo  # noqa: E402
from kolmo.lm.models import loading as models  # noqa: E402
from kolmo.lm.models.identity import compute_config  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"


def _identity(path: Path) -> str:
    return models.load_model(str(path), device="cpu", dtype="float32", progress=False).digest


def _restamp(path: Path, version: str) -> None:
    """Rewrite the version stamps transformers writes into a model folder's JSON files."""
    for f in path.glob("*.json"):
        cfg = json.loads(f.read_text())
        if "transformers_version" in cfg:
            cfg["transformers_version"] = version
            f.write_text(json.dumps(cfg, indent=1, sort_keys=True))  # another key order and layout too


def test_version_stamps_and_the_folder_name_are_not_the_identity(tiny_model_dir, tmp_path):
    before = _identity(tiny_model_dir)
    assert len(before) == 64
    lm = kolmo.get_compressor("lm", model=str(tiny_model_dir), window=64, stride=32, dtype="float32",
                              progress=False)
    data = b"the same weights, saved by another release " * 3
    blob = lm.compress(data)
    other = tmp_path / "another-name"
    shutil.copytree(tiny_model_dir, other)
    _restamp(other, "4.99.0")
    assert (other / "config.json").read_bytes() != (tiny_model_dir / "config.json").read_bytes()
    assert _identity(other) == before
    again = kolmo.get_compressor("lm", model=str(other), window=64, stride=32, dtype="float32", progress=False)
    assert again.stream_config == lm.stream_config
    assert again.config["model"] == "another-name"  # a label beside the identity
    assert again.decompress(blob) == data


def test_the_committed_fixture_folder_and_a_fresh_build_are_one_model(tiny_model_dir):
    """tests/fixtures/tiny-lm0 was saved under transformers 5.24 stamps; today's build has others."""
    assert _identity(FIXTURES / "tiny-lm0") == _identity(tiny_model_dir)


def test_one_changed_weight_changes_the_identity(tiny_model_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    before = _identity(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight[3, 5] += 1e-3
    out = tmp_path / "changed"
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(tiny_model_dir)).save_pretrained(str(out))
    assert _identity(out) != before


def test_a_changed_computation_setting_changes_the_identity(tiny_model_dir, tmp_path):
    before = _identity(tiny_model_dir)
    out = tmp_path / "eps"
    shutil.copytree(tiny_model_dir, out)
    cfg = json.loads((out / "config.json").read_text())
    cfg["rms_norm_eps"] = cfg.get("rms_norm_eps", 1e-6) * 10
    (out / "config.json").write_text(json.dumps(cfg))
    assert _identity(out) != before


def test_sharded_weights_are_the_same_model(tiny_model_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    out = tmp_path / "sharded"
    model.save_pretrained(str(out), max_shard_size="60KB")
    AutoTokenizer.from_pretrained(str(tiny_model_dir)).save_pretrained(str(out))
    assert len(list(out.glob("*.safetensors"))) > 1
    assert _identity(out) == _identity(tiny_model_dir)


def test_the_identity_does_not_depend_on_the_dtype_used(tiny_model_dir):
    a = models.load_model(str(tiny_model_dir), device="cpu", dtype="float32", progress=False)
    b = models.load_model(str(tiny_model_dir), device="cpu", dtype="bfloat16", progress=False)
    assert a.digest == b.digest and a.fingerprint["dtype"] != b.fingerprint["dtype"]
    assert next(b.model.parameters()).dtype == torch_dtype("bfloat16")


def torch_dtype(name):
    import torch
    return getattr(torch, name)


def test_compute_config_reads_both_rope_spellings():
    """transformers 4.x writes rope_theta beside rope_scaling, 5.x rope_parameters: one identity."""
    class Model:
        def __init__(self, config):
            self.config = config

    class Old:
        model_type, hidden_size, num_attention_heads = "llama", 64, 4
        rope_theta, rope_scaling = 10000.0, None

    class New:
        model_type, hidden_size, num_attention_heads, head_dim = "llama", 64, 4, 16
        rope_parameters = {"rope_type": "default", "rope_theta": 10000}

    assert compute_config(Model(Old())) == compute_config(Model(New()))
    New.rope_parameters = {"rope_type": "default", "rope_theta": 500000}
    assert compute_config(Model(Old())) != compute_config(Model(New()))
