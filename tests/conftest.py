import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import pytest

CLASSICAL = ["zstd", "lzma", "zlib", "bz2", "ppmd"]


@pytest.fixture(params=CLASSICAL)
def classical(request):
    import kolmo
    return kolmo.get_compressor(request.param)


@pytest.fixture(scope="session")
def rng_bytes():
    def make(n, seed=0):
        import numpy as np
        return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()
    return make


def pytest_configure(config):
    # Keep the LM tests' model and results caches out of the user's home directory.
    os.environ.setdefault("KOLMO_CACHE_DIR", str(config.rootpath / ".pytest_cache" / "kolmo"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of tiny-model tests (faster on a shared machine; restored after)."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def compress_failing_one_verification(monkeypatch):
    """``compress(comp, data)``: ``comp.compress(data)`` with the encoder's verification run of block 2
    seeing other frequencies (the sixth call of ``kolmo.lm.coding.coder.intervals``), so that block is
    stored in the safe mode."""
    from kolmo.lm.coding import coder
    def compress(comp, data):
        real, calls = coder.intervals, [0]

        def differing(model, seqs, *args, **kwargs):
            calls[0] += 1
            s, f = real(model, seqs, *args, **kwargs)
            return (s, f + 1) if calls[0] == 6 else (s, f)

        monkeypatch.setattr(coder, "intervals", differing)
        try:
            return comp.compress(data)
        finally:
            monkeypatch.setattr(coder, "intervals", real)
    return compress


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    pytest.importorskip("torch")
    from tiny_lm import build_tiny_model
    return build_tiny_model(tmp_path_factory.mktemp("tiny-lm"))


@pytest.fixture
def tiny_lm(tiny_model_dir):
    """lm as a user gets it: the model alone (``match=False``, the default)."""
    import kolmo
    return kolmo.get_compressor("lm", model=str(tiny_model_dir), window=64, stride=32, dtype="float32",
                                match=False, progress=False)


@pytest.fixture
def tiny_lm_match(tiny_model_dir):
    """lm with the match model (``match=True``): the model mixed with it."""
    import kolmo
    return kolmo.get_compressor("lm", model=str(tiny_model_dir), window=64, stride=32, dtype="float32", match=True,
                                progress=False)


@pytest.fixture(params=CLASSICAL + ["lm-tiny", "lm-tiny-match"])
def any_compressor(request):
    import kolmo
    if request.param == "lm-tiny":
        return request.getfixturevalue("tiny_lm")
    if request.param == "lm-tiny-match":
        return request.getfixturevalue("tiny_lm_match")
    return kolmo.get_compressor(request.param)
