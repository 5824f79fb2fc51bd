import os

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
