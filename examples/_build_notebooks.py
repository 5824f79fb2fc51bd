"""Writes the example notebooks and executes them in place (with their plots).

    python examples/_build_notebooks.py            # full size (a few minutes each on a CPU)
    KOLMO_EXAMPLES_SMALL=1 ... (what the tests set) runs them on small inputs

The notebooks are the product; this script only keeps them reproducible.
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = '''import os, random
from pathlib import Path
import numpy as np
import matplotlib.pyplot as plt
import kolmo

SMALL = os.environ.get("KOLMO_EXAMPLES_SMALL") == "1"   # the test suite runs every notebook small

def find_corpus():
    """../shared/corpus beside the project, if this machine has it."""
    for p in [Path.cwd(), *Path.cwd().parents]:
        if (p / "shared" / "corpus").is_dir():
            return p / "shared" / "corpus"
    return None

CORPUS = find_corpus()

def genesis(name, n):
    """n bytes of a Genesis translation; without the corpus, a stand-in from Python's own sources."""
    if CORPUS is not None:
        return (CORPUS / "genesis" / f"{name}.txt").read_bytes()[:n]
    import difflib, textwrap, json.decoder, json.encoder, argparse, string
    stand_in = {"english-kjv": json.decoder, "english-web": json.encoder, "french": textwrap,
                "german": difflib, "finnish": argparse, "swedish": string}
    return Path(stand_in.get(name, string).__file__).read_bytes()[:n]

print("corpus:", CORPUS or "not found: using Python's own sources as stand-ins")'''


def nb(cells):
    out = new_notebook(cells=[new_markdown_cell(c[1]) if c[0] == "md" else new_code_cell(c[1]) for c in cells])
    out.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return out


NOTEBOOKS = {
"01_the_most_important_slide.ipynb": [
("md", """# The most important slide: C(X) + C(Y) against C(XY)

Sutskever's argument in one picture: compress two datasets separately and together. If they share
structure, a good compressor codes the pair for less than the parts: C(XY) < C(X) + C(Y), and the
saving, the **gap**, estimates their mutual information. Better compressors find more of it.

Here X is the King James Genesis and Y is (a) the World English Bible's Genesis (same content,
other English), (b) the French Genesis (same content, other language), (c) an unrelated text, and
(d) X itself. Every compressor sees the same bytes. The LM's numbers are ideal code lengths
(sum of -log2 p), the others real compressed sizes; all are bits."""),
("code", SETUP),
("code", '''N = 400 if SMALL else 3000                       # bytes of each text
x = genesis("english-kjv", N)
pairs = {
    "same text (X, X)": x,
    "other English (WEB)": genesis("english-web", N),
    "other language (French)": genesis("french", N),
    "unrelated": (CORPUS / "canterbury-mixed" / "lcet10.txt").read_bytes()[:N] if CORPUS else Path(random.__file__).read_bytes()[:N],
}
compressors = ["zlib", "zstd", "bz2", "lzma", "ppmd", "lm"]
results = {}
for name in compressors:
    comp = kolmo.get_compressor(name, progress=False) if name == "lm" else kolmo.get_compressor(name)
    for label, y in pairs.items():
        results[name, label] = kolmo.joint_gap(x, y, compressor=comp)
    print(f"{name:5s}", "  ".join(f"{label}: {results[name, label].gap:8.0f}" for label in pairs))'''),
("code", '''fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
w = 0.8 / len(pairs)
for k, label in enumerate(pairs):
    gaps = [results[c, label].gap for c in compressors]
    axes[0].bar(np.arange(len(compressors)) + k * w, gaps, w, label=label)
axes[0].set_xticks(np.arange(len(compressors)) + 0.4 - w / 2, compressors)
axes[0].set_ylabel("gap = C(X) + C(Y) - C(XY)  (bits)")
axes[0].axhline(0, color="k", lw=0.5)
axes[0].legend(fontsize=8)
axes[0].set_title(f"shared information found, {N}-byte texts")
for c in compressors:
    sep = [results[c, l].c_x + results[c, l].c_y for l in pairs]
    joint = [results[c, l].c_xy for l in pairs]
    axes[1].scatter(sep, joint, label=c)
lim = max(results[c, l].c_x + results[c, l].c_y for c in compressors for l in pairs)
axes[1].plot([0, lim], [0, lim], "k--", lw=0.8, label="C(XY) = C(X) + C(Y)")
axes[1].set_xlabel("C(X) + C(Y)  (bits)"); axes[1].set_ylabel("C(XY)  (bits)")
axes[1].legend(fontsize=8); axes[1].set_title("below the diagonal = shared structure")
plt.tight_layout(); plt.show()'''),
("code", '''for c in compressors:
    r = results[c, "other English (WEB)"]
    print(f"{c:5s} C(X) = {r.c_x / N:.3f} bits/byte, gap with WEB = {r.gap:7.0f} bits "
          f"= {100 * r.gap / r.c_y:5.1f}% of C(Y), {r.bits_kind}")'''),
("md", """**Reading it.** The better a compressor models the data (lower C(X) per byte), the more of Y it
codes from X. On short texts zlib and zstd only see literal repeats; PPMd's context statistics and
the LM's knowledge of language go further. The gap with an *unrelated* text is near zero (it can
be slightly negative: a model adapted to X codes unrelated Y a little worse), and with X itself it
is nearly C(X): the compressor recognises the copy. Across languages the classical compressors
find almost nothing: they cannot see that French Genesis says the same thing."""),
],

"02_distribution_matching.ipynb": [
("md", """# Distribution matching: when is shared structure visible?

Take English text X and make Y from it in two ways: (1) a **substitution cipher** (every letter
replaced by another, consistently) and (2) the same content in **another language**. In both, Y is
almost fully determined by X plus a short description (the cipher key, or "translate to French"),
so a Kolmogorov compressor would find K(Y|X) small and a large gap. Which real compressors see it?"""),
("code", SETUP),
("code", '''N = 400 if SMALL else 2500
x = genesis("english-kjv", N)
letters = bytes(range(ord("a"), ord("z") + 1))
perm = bytearray(letters); random.Random(7).shuffle(perm)
table = bytes.maketrans(letters + letters.upper(), bytes(perm) + bytes(perm).upper())
variants = {
    "X itself": x,
    "cipher of X": x.translate(table),
    "French translation": genesis("french", N),
    "cipher of an unrelated text": (CORPUS / "canterbury-mixed" / "alice29.txt").read_bytes()[5000:5000 + N].translate(table)
        if CORPUS else Path(random.__file__).read_bytes()[:N].translate(table),
}
print(x[:160].decode("utf-8", "replace")); print(variants["cipher of X"][:160].decode("utf-8", "replace"))'''),
("code", '''names = ["zstd", "lzma", "ppmd", "lm"]
gap = {}
for name in names:
    comp = kolmo.get_compressor(name, progress=False) if name == "lm" else kolmo.get_compressor(name)
    for label, y in variants.items():
        r = kolmo.joint_gap(x, y, compressor=comp)
        gap[name, label] = (r.gap, r.c_y, r.c_y_given_x)
    print(name, {k: round(v[0]) for (n, k), v in gap.items() if n == name})'''),
("code", '''fig, ax = plt.subplots(figsize=(10, 4))
w = 0.8 / len(variants)
for k, label in enumerate(variants):
    ax.bar(np.arange(len(names)) + k * w, [100 * gap[n, label][0] / gap[n, label][1] for n in names], w, label=label)
ax.set_xticks(np.arange(len(names)) + 0.4 - w / 2, names)
ax.set_ylabel("gap as % of C(Y)"); ax.axhline(0, color="k", lw=0.5); ax.legend(fontsize=8)
ax.set_title("how much of Y each compressor codes from X")
plt.tight_layout(); plt.show()'''),
("md", """**Reading it.** Every compressor recognises an exact copy. A cipher preserves all of X's
structure (word boundaries, letter repetition patterns), yet dictionary coders see nothing: they
match byte strings, and none survive the cipher. Context models fare no better without being
told the key. The cipher's key is at most log2(26!) = 88 bits, so K(Y|X) is tiny while C(Y|X) stays
near C(Y): the distance between these compressors and a Kolmogorov compressor is exactly this
kind of structure, "distribution matching" that needs a learner, not a matcher. The LM brings
knowledge of language, not of this particular cipher; the gap it finds for the French translation
is what its prior knowledge plus in-context reading buys."""),
],

"03_conditioning_on_a_dataset.ipynb": [
("md", """# Conditioning on a dataset rather than an example

Sutskever's point: a compressor should condition on a whole **dataset**, not one example. Here Y is
a fixed passage of the World English Bible's Genesis and X grows from nothing to many passages of
the King James Genesis (a parallel text). We plot C(Y|X) against |X| for zstd, whose dictionary can
hold any amount of X, and for the LM, whose context holds at most its window of tokens."""),
("code", SETUP),
("code", '''web = genesis("english-web", 40_000)
kjv = genesis("english-kjv", 40_000)
y = web[6000:6000 + (300 if SMALL else 1200)]           # the passage to code
sizes = [0, 100, 400] if SMALL else [0, 100, 300, 1000, 3000, 6000]
lm = kolmo.get_compressor("lm", progress=False)
zstd = kolmo.get_compressor("zstd")
rows = []
for n in sizes:
    x = kjv[max(0, 6000 - n):6000] if n else b""     # the KJV text just before the same verses
    rows.append((n, zstd.conditional_bits(y, x), lm.conditional_bits(y, x)))
    print(f"|X| = {n:6d} bytes   C(Y|X): zstd {rows[-1][1]:8.0f}  lm {rows[-1][2]:8.0f} bits")'''),
("code", '''ns = np.array([max(r[0], 30) for r in rows])
fig, ax = plt.subplots(figsize=(7, 4))
ax.plot(ns, [r[1] / len(y) for r in rows], "o-", label="zstd, X as a dictionary")
ax.plot(ns, [r[2] / len(y) for r in rows], "s-", label="SmolLM2-135M, X in the context")
ax.set_xscale("log"); ax.set_xlabel("|X| in bytes (0 plotted at 30)")
ax.set_ylabel("C(Y | X)  (bits per byte of Y)")
ax.set_title("coding a WEB passage given more and more KJV Genesis"); ax.legend()
plt.tight_layout(); plt.show()'''),
("code", '''far = kjv[:6000]                      # a different part of Genesis: no parallel verses
print("C(Y | far part of KJV): zstd %.0f, lm %.0f bits" % (zstd.conditional_bits(y, far[-3000:]),
                                                          lm.conditional_bits(y, far[-3000:])))'''),
("md", """**Reading it.** With X empty, the LM already codes English far better than zstd (its weights
are a compressed dataset of their own). As X grows to include the parallel KJV verses, both
improve: zstd finds shared phrases in the dictionary, the LM reads the parallel text in context.
Beyond the LM's window (2048 tokens, about 8 kB of English) more X cannot help it at all, while
zstd's dictionary keeps everything: conditioning on a whole dataset needs a compressor whose
"context" is the dataset, which is the gap between in-context reading and training on X."""),
],

"04_clustering_by_compression.ipynb": [
("md", """# Clustering by compression: a language tree

Cilibrasi and Vitanyi built language trees from NCD alone. Eight versions of Genesis (English
KJV, English WEB, lolcat English, Finnish, French, German, Portuguese, Swedish) go into one NCD
matrix; hierarchical clustering of the distances recovers the language families."""),
("code", SETUP),
("code", '''N = 3000 if SMALL else 40_000
names = ["english-kjv", "english-web", "lolcat", "finnish", "french", "german", "portuguese", "swedish"]
texts = {n: genesis(n, N) for n in names}
m = kolmo.matrix(texts, compressor="ppmd", measure="ncd", cache=False, progress=False)
m.to_pandas().round(3)'''),
("code", '''from kolmo.plot import heatmap
fig, axes = plt.subplots(1, 2, figsize=(13, 5))
heatmap(m, ax=axes[0])
kolmo.cluster(m).dendrogram(ax=axes[1])
axes[1].set_title("average-linkage tree of the NCD")
plt.tight_layout(); plt.show()'''),
("code", '''print(kolmo.cluster(m).clusters(3))
m.save("genesis_ncd.json")               # keep the result; kolmo.load_matrix reads it back
print(kolmo.load_matrix("genesis_ncd.json"))'''),
("md", """**Reading it.** The two English translations sit closest, lolcat joins English, Swedish and
German (Germanic) and French and Portuguese (Romance) pair up, and Finnish, the only non-Indo-European
language, stands apart. Nothing but compressed sizes went in."""),
],
}


def main():
    import os
    from nbclient import NotebookClient
    for name, cells in NOTEBOOKS.items():
        book = nb(cells)
        NotebookClient(book, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
        nbformat.write(book, HERE / name)
        print("wrote", name, "small" if os.environ.get("KOLMO_EXAMPLES_SMALL") == "1" else "full")
    (HERE / "genesis_ncd.json").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
