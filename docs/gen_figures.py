"""The figures page, generated from the benchmarks' JSON so that no figure is typed twice.

Reads ``benchmarks/baseline.json`` (the regression baseline that CI compares against) and every
``benchmarks/saved/*.json`` (saved runs of the benchmark scripts) and writes one Markdown page:
for each file its description, the command that produced it (where the JSON records one), the
machine and versions it ran on, and every figure with its unit.

mkdocs runs this module as a hook (``hooks:`` in ``mkdocs.yml``): ``on_files`` adds the page
``figures.md`` to the site, so the page is never a file in ``docs/`` and cannot go stale. Run
alone, ``python docs/gen_figures.py [OUT.md]`` prints the page (or writes it to OUT.md).

Units are read from the keys (``UNIT_RULES``); every other number is a code length in bits, the
unit of every kolmo measure.
"""

import html
import json
import re
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / "benchmarks" / "baseline.json"
SAVED = ROOT / "benchmarks" / "saved"
PAGE = "figures.md"

# Text fields that describe a file or a part of it, shown as prose above its figures.
PROSE_KEYS = ("what", "method", "note", "config_note", "seconds_note", "verdict", "source")
# Settings, not figures: shown as one line of JSON.
SETTINGS_KEYS = ("config", "options", "opts", "settings")
# What ran where: the benchmarks' environment (benchmarks/_env.py), in this order.
ENV_KEYS = ("device", "gpu", "cpu_count", "cpu_kernels", "native_bf16", "torch_threads", "platform",
            "python", "kolmo", "numpy", "zstandard", "torch", "transformers", "numba", "constriction")
# (pattern on the key, unit); the first pattern that matches the key wins, then the same rules
# on the enclosing keys (``float32 > seconds > [0]`` is in seconds); otherwise bits.
UNIT_RULES: Sequence[Tuple[str, str]] = (
    (r"^cpu_seconds$", "CPU s"),
    (r"tok_s$", "tokens/s"),
    (r"mb_per_s$", "MB/s"),
    (r"(^|_)seconds$|_s$|^seconds", "s"),
    (r"bpb|bits_per_byte|gap_per_byte", "bits/byte"),
    (r"(^|_)bytes$|^slice$", "bytes"),
    (r"(^|_)tokens(_learned)?$|^window$", "tokens"),
    (r"ratio|_over_|speedup|_rel_", "ratio"),
    (r"^(rounds|cpu_count|torch_threads)$", "count"),
    (r"(^|_)lr$|theta$|^eta$|^share$", "setting"),
)
# Units the keys cannot tell, stated in the file's own prose: (file, path) -> unit.
UNIT_OVERRIDES: Dict[Tuple[str, ...], str] = {
    ("learner_150k.json", "autocast_step", "without_bf16_in_hardware"): "s",  # its "what": seconds
}
META_KEYS = ("env", "command", "commands", "argv", "benchmark") + PROSE_KEYS


def unit(keys: Sequence[str], value: Any) -> str:
    """The unit of the figure at ``keys`` (its path in the JSON): bits unless a rule says otherwise."""
    if isinstance(value, bool):
        return "yes/no"
    if isinstance(value, str) or (isinstance(value, list) and any(isinstance(v, str) for v in value)):
        return ""
    for n in range(len(keys), 0, -1):
        if tuple(keys[:n]) in UNIT_OVERRIDES:
            return UNIT_OVERRIDES[tuple(keys[:n])]
    for key in reversed(keys[1:]):
        for pattern, name in UNIT_RULES:
            if re.search(pattern, str(key).lower()):
                return name
    return "bits"


def fmt(v: Any) -> str:
    """A figure as the JSON holds it, to five significant digits."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 1e15:
            return str(int(v))
        if abs(v) >= 1e5:
            return f"{v:.0f}"
        return f"{v:.5g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(fmt(x) for x in v)
    return esc(str(v))


def esc(text: str) -> str:
    return html.escape(text, quote=False).replace("|", "\\|").replace("*", "\\*").replace("_", "\\_")


def code(text: str) -> str:
    text = text.replace("|", "\\|")
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str)) or (
        isinstance(v, list) and all(x is None or isinstance(x, (bool, int, float, str)) for x in v))


def flat(d: Dict[str, Any], prefix: Tuple[str, ...] = ()) -> Dict[Tuple[str, ...], Any]:
    """A dict of dicts as one level: ``{("parts", "learner"): 3979.6, ...}``."""
    out: Dict[Tuple[str, ...], Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and k not in SETTINGS_KEYS:
            out.update(flat(v, prefix + (k,)))
        else:
            out[prefix + (k,)] = v
    return out


def cell(keys: Tuple[str, ...], v: Any, unit_name: str = "") -> str:
    if keys[-1] in SETTINGS_KEYS or isinstance(v, dict):
        return code(json.dumps(v))
    return fmt(v) + (f" {unit_name}" if unit_name and v is not None else "")


def table(head: List[str], rows: List[List[str]]) -> List[str]:
    return (["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            + ["| " + " | ".join(r) + " |" for r in rows] + [""])


def records_table(rows: List[Dict[str, Any]], path: Tuple[str, ...], row_key: Optional[str] = None) -> List[str]:
    """One row per record, one column per (flattened) key. A column's unit goes in its header when
    every row agrees on it, else beside each figure (``row_key`` names the rows: its value is part
    of each row's path, as in ``alice29_bpb > without_cache``)."""
    flats = [flat(r) for r in rows]
    cols: List[Tuple[str, ...]] = []
    for f in flats:
        cols += [c for c in f if c not in cols]

    def cell_unit(f: Dict[Tuple[str, ...], Any], c: Tuple[str, ...]) -> str:
        where = path + ((str(f[(row_key,)]),) if row_key is not None else ()) + c
        return "" if c[-1] in SETTINGS_KEYS else unit(where, f.get(c))

    head, body_units = [], {}
    for c in cols:
        units = {cell_unit(f, c) for f in flats if f.get(c) is not None}
        name = esc(".".join(c)) if c != (row_key,) else ""
        if len(units) == 1 and next(iter(units)) and name:
            head.append(f"{name} ({units.pop()})")
        else:
            head.append(name)
            body_units[c] = True
    return table(head, [[cell(c, f[c], cell_unit(f, c) if c in body_units and c != (row_key,) else "")
                         if c in f else "" for c in cols] for f in flats])


def columns_table(cols: Dict[str, list], path: Tuple[str, ...]) -> List[str]:
    """Lists of the same length side by side (``x_bytes: [...], without_cache: [...]``)."""
    n = len(next(iter(cols.values())))
    return records_table([{k: v[i] for k, v in cols.items()} for i in range(n)], path)


def command_lines(node: Dict[str, Any]) -> List[str]:
    cmd = node.get("command", node.get("commands"))
    if isinstance(cmd, str):
        return [cmd]
    if isinstance(cmd, list):
        return [str(c) for c in cmd]
    if node.get("argv") is not None and node.get("benchmark"):
        return ["python -m benchmarks." + node["benchmark"] + "".join(" " + a for a in node["argv"])]
    return []


def env_line(env: Dict[str, Any]) -> str:
    keys = [k for k in ENV_KEYS if k in env] + [k for k in env if k not in ENV_KEYS]
    return "; ".join(f"{k} {fmt(env[k])}" for k in keys)


def meta(node: Dict[str, Any], top: bool) -> List[str]:
    """A node's description, command and environment, as prose."""
    out: List[str] = []
    if top and node.get("benchmark"):
        out += [f"A run of `python -m benchmarks.{node['benchmark']}`.", ""]
    for k in PROSE_KEYS:
        if isinstance(node.get(k), str):
            out += [f"*{k.replace('_', ' ')}*: {esc(node[k])}", ""]
    cmds = command_lines(node)
    if cmds:
        out += ["Produced by:", "", "```"] + cmds + ["```", ""]
    elif top:
        out += ["Command: not recorded in the JSON" + (" (the note above names it)." if "note" in node else "."), ""]
    if isinstance(node.get("env"), dict):
        out += [f"Recorded on: {env_line(node['env'])}.", ""]
    return out


def render_node(node: Any, path: Tuple[str, ...], depth: int) -> List[str]:
    """Markdown for one JSON node below a file: tables for its figures, sections for its parts."""
    if isinstance(node, list) and node and all(isinstance(r, dict) for r in node):
        return records_table(node, path)
    if not isinstance(node, dict):
        return table(["value", "unit"], [[fmt(node), unit(path, node)]])
    out = meta(node, top=False) if depth > 0 else []
    body = {k: v for k, v in node.items() if k not in META_KEYS}
    settings = {k: v for k, v in body.items() if k in SETTINGS_KEYS}
    for k, v in settings.items():
        out += [f"*{k}*: {code(json.dumps(v))}", ""]
    scalars = {k: v for k, v in body.items() if k not in settings and scalar(v)}
    # lists of one length along an axis of sizes (x_bytes: [...], bits: [...]): a table
    lists = {k: v for k, v in scalars.items() if isinstance(v, list) and len(v) > 1}
    axis = [k for k, v in lists.items() if unit(path + (k,), v) in ("bytes", "tokens")]
    if axis and len(lists) >= 2 and len({len(v) for v in lists.values()}) == 1:
        scalars = {k: v for k, v in scalars.items() if k not in lists}
    else:
        lists = {}
    if scalars:
        out += table(["figure", "value", "unit"],
                     [[esc(k), fmt(v), unit(path + (k,), v)] for k, v in scalars.items()])
    if lists:
        out += columns_table(lists, path)
    nested = {k: v for k, v in body.items() if k not in settings and not scalar(v)}
    # flat dicts of figures side by side (a part's bits, and the mixture without it): one table
    flats = {k: v for k, v in nested.items() if isinstance(v, dict) and v and
             all(scalar(x) for x in v.values()) and not set(v) & set(META_KEYS)}
    if len(flats) >= 2:
        out += records_table([{"": k, **v} for k, v in flats.items()], path, row_key="")
        nested = {k: v for k, v in nested.items() if k not in flats}
    for k, v in nested.items():
        title = esc(str(k))
        out += [("#" * (depth + 3)) + " " + title if depth < 3 else f"**{title}**", ""]
        out += render_node(v, path + (k,), depth + 1)
    return out


def baseline_section(data: Dict[str, Any]) -> List[str]:
    """The regression baseline: its figures side by side, one column per compressor."""
    comps = data["compressors"]
    names = list(comps)
    settings = data.get("settings", {})
    out = ["## The regression baseline: `benchmarks/baseline.json` {#baseline}", "",
           "CI runs the benchmark suite (`benchmarks/suite.py`) and fails on a quality regression of "
           "more than 2% against this file:", "",
           "```", "python -m benchmarks --corpus ../shared/corpus --out benchmarks/out-ci.json "
           "--compare benchmarks/baseline.json", "```", "",
           f"Recorded on: {env_line(data['env'])}.", "",
           f"*settings*: {code(json.dumps(settings))}", ""]

    def pivot(title: str, part: str, metric: str, unit_name: str, extra: Sequence[str] = ()) -> List[str]:
        """One row per input, one column per compressor; ``extra``: columns of the input's own
        (the same for every compressor, else a table of their own)."""
        rows: List[str] = []
        for n in names:
            rows += [r for r in comps[n].get(part, {}) if r not in rows]
        entries = {r: {n: comps[n][part][r] for n in names if r in comps[n].get(part, {})} for r in rows}
        rows = [r for r in rows if any(isinstance(v, dict) and metric in v for v in entries[r].values())]
        shared = [e for e in extra if all(len({json.dumps(v.get(e)) for v in entries[r].values()}) == 1
                                          for r in rows)]
        body = []
        for r in rows:
            first = next(iter(entries[r].values()))
            vals = []
            for n in names:
                v = entries[r].get(n)
                text = fmt(v.get(metric)) if v is not None and metric in v else ""
                if text and "bytes" in v and v["bytes"] != first.get("bytes"):
                    text += f" (first {v['bytes']} bytes)"
                vals.append(text)
            body.append([esc(r)] + vals + [fmt(first.get(e)) for e in shared])
        head = (["input"] + [code(n) for n in names]
                + [f"{esc(e)} ({unit(('baseline.json', e), 1.0)})" for e in shared])
        out = [f"### {title} ({unit_name})", ""] + table(head, body) if rows else []
        for e in extra:
            if e not in shared:
                out += pivot(f"{title}: {e}", part, e, unit(("baseline.json", e), 1.0))
        return out

    out += pivot("Bits per byte of each input", "bits_per_byte", "bits_per_byte", "bits/byte",
                 ("bytes", "entropy_bpb"))
    out += [f"The `lm` column: the first `lm_bytes` = {settings.get('lm_bytes')} bytes of three texts "
            "(`--lm-bytes`).", ""] if "lm" in comps else []
    out += pivot("Code length of each input", "bits_per_byte", "bits", "bits")
    out += pivot("Gap on synthetic pairs of known mutual information", "calibration", "gap", "bits",
                 ("true_mi",))
    out += pivot("Gap over the true mutual information", "calibration", "ratio", "ratio")
    out += pivot("Gap per byte of independent inputs", "calibration", "gap_per_byte", "bits/byte")
    for kind in ("related", "shuffled_lines"):
        out += pivot(f"Gaps between Genesis versions, {kind.replace('_', ' ')}", "genesis", kind, "bits")
    speed = [dict(compressor=n, **comps[n]["speed"], seconds=comps[n].get("seconds")) for n in names
             if isinstance(comps[n].get("speed"), dict)]
    out += ["### Speed, against zlib level 6 timed in the same run", ""]
    out += records_table(speed, ("baseline.json", "speed"))
    out += ["*seconds*: the whole suite's time for that compressor.", "", "### Configurations", ""]
    out += table(["compressor", "config"], [[code(n), code(json.dumps(comps[n].get("config")))] for n in names])
    return out


def saved_files() -> List[Path]:
    return sorted(SAVED.glob("*.json"))


def render() -> str:
    """The whole figures page."""
    out = ["# Figures", "",
           "<!-- Generated by docs/gen_figures.py from benchmarks/baseline.json and benchmarks/saved/*.json: "
           "edit those, not this page. -->", "",
           "Every figure the benchmarks have saved, generated from their JSON files when the site is "
           "built (`docs/gen_figures.py`), so no figure is typed twice. Each file says what it "
           "measures, the command that produced it where the file records one, and the machine and "
           "versions it ran on. Units are in the column headers or beside each figure: **bits** "
           "(code lengths: the unit of every kolmo measure), **bits/byte**, **s** (wall-clock "
           "seconds; *CPU s*: CPU seconds), **tokens/s**, **MB/s**, **bytes**, **tokens**, a **ratio** "
           "(x), or a **setting** (an option's value). The unit of a figure is read from its key "
           "(`UNIT_RULES` in the script); figures are shown to five significant digits.", "",
           "What each benchmark script measures and how to run it: "
           "[Choosing a compressor](choosing.md#benchmarks).", "",
           "## Files", "",
           "- [`benchmarks/baseline.json`](#baseline): the regression baseline, every compressor"]
    files = saved_files()
    datas = {f: json.loads(f.read_text()) for f in files}
    for f, data in datas.items():
        out.append(f"- [`benchmarks/saved/{f.name}`](#{anchor(f)}): {esc(summary(data))}")
    out.append("")
    out += baseline_section(json.loads(BASELINE.read_text()))
    for f, data in datas.items():
        out += [f"## `benchmarks/saved/{f.name}` {{#{anchor(f)}}}", ""]
        out += meta(data, top=True)
        out += render_node(data, (f.name,), 0)
    return "\n".join(out).rstrip() + "\n"


def anchor(f: Path) -> str:
    return "saved-" + re.sub(r"[^a-z0-9]+", "-", f.stem.lower()).strip("-")


def summary(data: Dict[str, Any]) -> str:
    """One line for the list of files: the start of its description."""
    if data.get("what"):
        text = re.split(r": |; ", data["what"])[0].strip()
    else:
        text = data.get("note") or f"a run of benchmarks.{data.get('benchmark', '?')}"
    return text if len(text) <= 140 else text[:140].rsplit(" ", 1)[0] + " ..."


# -- mkdocs hook ------------------------------------------------------------------------------

def on_files(files, config):  # noqa: ANN001, ANN201 (mkdocs' hook signature)
    """Add the generated figures page to the site (it exists only in the build)."""
    from mkdocs.structure.files import File
    files.append(File.generated(config, PAGE, content=render()))
    return files


if __name__ == "__main__":
    page = render()
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(page)
    else:
        sys.stdout.write(page)
