"""Every example notebook runs, on small inputs (KOLMO_EXAMPLES_SMALL=1), so none can rot; the committed
ones carry their plots and no progress-bar noise."""

import json
import os
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.ipynb"))


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    # A kernel spec for *this* interpreter, ahead of any user-installed one on JUPYTER_PATH.
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / "kolmo-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "kolmo test", "language": "python"}))
    old = {k: os.environ.get(k) for k in ("JUPYTER_PATH", "KOLMO_EXAMPLES_SMALL")}
    os.environ["JUPYTER_PATH"] = str(root)
    os.environ["KOLMO_EXAMPLES_SMALL"] = "1"
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_there_are_seven_notebooks_with_plots():
    import nbformat
    assert [p.name[:2] for p in EXAMPLES] == ["01", "02", "03", "04", "05", "06", "07"]
    for path in EXAMPLES:
        book = nbformat.read(path, as_version=4)
        images = [o for c in book.cells if c.cell_type == "code" for o in c.get("outputs", [])
                  if "image/png" in o.get("data", {})]
        assert images, f"{path.name} was committed without its plots"


# what progress bars and loaders leave in a notebook's stderr (kolmo silences them with progress=False)
NOISE = ("Loading weights", "Writing model shards", "it/s]", "IProgress not found", "TqdmWarning", "GGUF", "%|")


def _noise(book):
    return [o["text"][:120] for c in book.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if o.get("output_type") == "stream" and o.get("name") == "stderr" and any(n in o["text"] for n in NOISE)]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_committed_outputs_have_no_progress_noise(path):
    import nbformat
    noise = _noise(nbformat.read(path, as_version=4))
    assert not noise, f"{path.name}: rebuild it with python examples/_build_notebooks.py; stderr holds {noise}"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_notebook_runs(path, kernel_env, tmp_path):
    import nbformat
    from nbclient import NotebookClient
    book = nbformat.read(path, as_version=4)
    NotebookClient(book, timeout=900, kernel_name="kolmo-test", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in book.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    assert not _noise(book), f"{path.name} wrote progress bars or loader noise to stderr: {_noise(book)}"
