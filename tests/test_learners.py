"""What learns in a pretrained model (kolmo.lm.models.learners): full fine-tuning, LoRA, the last layers,
an output bias. Each learns, round-trips, and leaves the shared loaded model untouched."""

import pytest

torch = pytest.importorskip("torch")

import kolmo  # noqa: E402
from kolmo.cache import config_hash  # noqa: E402

TEXT = b"the cat sat on the mat. " * 12


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def tiny(tiny_model_dir):
    def make(**kw):
        opts = dict(model=str(tiny_model_dir), window=48, block_tokens=16, progress=False, mix=None)
        return kolmo.get_compressor("lm-online", **{**opts, **kw})
    return make


@pytest.mark.parametrize("adapter, lr", [("last", 1e-2), ("bias", 1e-1)])
def test_each_adapter_learns_and_round_trips(tiny, adapter, lr):
    comp = tiny(adapter=adapter, lr=lr)
    frozen = tiny(adapter=adapter, lr=lr, steps=0)
    loaded = comp.prequential.learner.loaded.model
    before = {n: p.detach().clone() for n, p in loaded.named_parameters()}
    assert comp.bits(TEXT) < 0.9 * frozen.bits(TEXT)
    assert all(torch.equal(p, before[n]) for n, p in loaded.named_parameters())  # the shared model untouched
    blob = comp.compress(TEXT)
    assert comp.decompress(blob) == TEXT


def test_what_learns(tiny):
    names = [n for n, _ in tiny(adapter="last", last_layers=1).prequential.learner.named_trainable()]
    layers = {n.split(".layers.")[1].split(".")[0] for n in names if ".layers." in n}
    assert len(layers) == 1 and any(n.endswith("norm.weight") and ".layers." not in n for n in names)
    assert [n for n, _ in tiny(adapter="bias").prequential.learner.named_trainable()] == ["out_bias"]


def test_config_and_errors(tiny):
    a, b = tiny(adapter="last", last_layers=1), tiny(adapter="last", last_layers=2)
    assert a.config["last_layers"] == 1 and config_hash(a.config) != config_hash(b.config)
    assert tiny(adapter="bias").config["lr"] == 1e-2 and "last_layers" not in tiny(adapter="bias").config
    with pytest.raises(ValueError, match="last_layers"):
        tiny(adapter="last", last_layers=99).prequential
    with pytest.raises(ValueError, match="adapter must be one of"):
        tiny(adapter="prefix")
