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
import warnings
warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets: no bars, no noise
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


def digits_cells():
    """05: scikit-learn's 8x8 digits classified by argmin_c C(y | X_c)."""
    cells = [
("md", """# Digits as sequences: classifying images by conditional compression

iGPT's idea (Chen et al. 2020) is that an image is just a sequence of pixels, and a model that
predicts the next pixel well has learned what the images look like. Here that idea meets
compression-based classification: to classify a test digit y, code it *given* the training images of
each class and pick the class under which it is cheapest,

    predict(y) = argmin_c  C(y | X_c),      X_c = the training images of class c, concatenated,

with C(y | X_c) = C(X_c y) - C(X_c) (`conditional_bits_many`: one context, many ys). No features,
no training loop: the compressor's adaptive model, fitted to X_c while it reads it, *is* the class
model. scikit-learn's bundled 8x8 digits (1797 images, pixels 0..16, no download) are small enough
to try many variants on a CPU; a logistic regression on the raw pixels is the baseline."""),
("code", SETUP),
("code", '''from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

digits = load_digits()
images, labels = digits.images.astype(np.uint8), digits.target        # (1797, 8, 8) pixels 0..16
order = np.random.default_rng(0).permutation(len(labels))
N_TEST = 60 if SMALL else 300          # test digits
N_TRAIN = 15 if SMALL else 100         # training images per class (the context X_c)
N_VAL, N_SWEEP = (40, 10) if SMALL else (200, 30)   # the variant sweep: a validation split, fewer images per class
test = order[:N_TEST]
rest = order[N_TEST:]
train = {c: rest[labels[rest] == c][:N_TRAIN] for c in range(10)}
val = np.setdiff1d(rest, np.concatenate(list(train.values())))[:N_VAL]   # used only to choose a variant
print(f"{N_TEST} test digits, {N_TRAIN} training images per class, validation {N_VAL}")

def logreg_accuracy(train_idx, test_idx):
    clf = LogisticRegression(max_iter=5000).fit(images[train_idx].reshape(len(train_idx), -1), labels[train_idx])
    return (clf.predict(images[test_idx].reshape(len(test_idx), -1)) == labels[test_idx]).mean()

all_train = np.concatenate(list(train.values()))
baseline = logreg_accuracy(all_train, test)
print(f"logistic regression on raw pixels: {baseline:.3f}")'''),
("md", """## Turning an image into bytes

kolmo takes numpy `uint8` arrays as inputs (their bytes in C order), so an image is coded as its
64 pixels, one byte each. How those bytes are laid out matters to a compressor that has no idea
they form a grid:

* **as is**: the pixel values 0..16, row after row (row-major);
* **scaled**: 0..16 mapped to 0..255 (`p * 255 // 16`), so the values spread over the byte range;
* **column-major**: the transposed image, column after column;
* **separator**: a byte 255 after each image, marking where one ends;
* **positional**: each pixel quantised to 4 levels (`(p * 3 + 8) // 16`) and tagged with its
  position: byte = 4 * position + level (64 positions x 4 levels = 256 byte values). A byte
  compressor has no notion of *where* in an image a pixel is (iGPT adds position embeddings for
  the same reason); with the tag, its order-1 context "the previous pixel and where it was" is a
  position-specific model of each pixel given its neighbour."""),
("code", '''def serialize(img, layout="row", values="as is", sep=False):
    """One 8x8 image (pixels 0..16) as a uint8 array of 64 (or 65) bytes."""
    a = img.T if layout == "col" else img
    a = a.reshape(-1).astype(np.int32)
    if values == "scaled":
        a = a * 255 // 16
    elif values == "positional":
        a = 4 * np.arange(64) + (a * 3 + 8) // 16
    a = a.astype(np.uint8)
    return np.append(a, np.uint8(255)) if sep else a

def conditional_matrix(comp, train_sets, test_idx, shuffles=1, **fmt):
    """K[c, j] = C(test digit j | training images of class c), in bits; averaged over `shuffles`
    orders of the training images (a real compressor rounds to whole bytes and weighs recent
    images more: averaging a few orders smooths both)."""
    ys = [serialize(images[i], **fmt) for i in test_idx]
    K = np.zeros((10, len(ys)))
    for s in range(shuffles):
        for c in range(10):
            idx = train_sets[c] if s == 0 else np.random.default_rng(s).permutation(train_sets[c])
            context = np.concatenate([serialize(images[i], **fmt) for i in idx])   # X_c: one uint8 array
            K[c] += comp.conditional_bits_many(ys, context)
    return K / shuffles

def accuracy(K, test_idx):
    return float((K.argmin(axis=0) == labels[test_idx]).mean())

x0 = serialize(images[order[0]], values="positional")
print("digit", labels[order[0]], "positional bytes:", x0[:16], "...")'''),
("code", '''import time
sweep_train = {c: train[c][:N_SWEEP] for c in range(10)}
variants = [("as is, row-major", dict()), ("scaled 0..255", dict(values="scaled")),
            ("column-major", dict(layout="col")), ("separator", dict(sep=True)),
            ("scaled, column-major, separator", dict(values="scaled", layout="col", sep=True)),
            ("positional, row-major", dict(values="positional")),
            ("positional, column-major", dict(values="positional", layout="col"))]
sweep_comps = {"ppmd order 2": ("ppmd", dict(order=2)), "ppmd order 4": ("ppmd", dict(order=4)),
               "ppmd order 8": ("ppmd", dict(order=8)), "lzma": ("lzma", {}), "zstd": ("zstd", {})}
t0 = time.time()
sweep = {}
for cname, (name, opts) in sweep_comps.items():
    comp = kolmo.get_compressor(name, **opts)
    for vname, fmt in variants:
        sweep[cname, vname] = accuracy(conditional_matrix(comp, sweep_train, val, **fmt), val)
import pandas as pd
table = pd.DataFrame({c: [sweep[c, v] for v, _ in variants] for c in sweep_comps}, index=[v for v, _ in variants])
print(f"validation accuracy, {N_SWEEP} training images per class, {len(val)} validation digits ({time.time() - t0:.0f} s)")
table.round(3)'''),
]
    cells += [
("md", """**The sweep** (validation digits, not the test set). Read the table: the raw layouts
("as is", scaled, column-major, separator) leave every compressor far below the baseline. A
digit costs about 200 bits whatever the class, the classes differ by a few tens of bits, and a
real compressor rounds each size to whole bytes (8 bits), so many decisions are ties or noise.
Scaling to 0..255 does not help: PPMd models symbols, not magnitudes, and the LZ coders do
no better. What changes everything is telling the compressor *where* each pixel is: with the
positional bytes PPMd's order-1 and order-2 contexts become a per-position model of the image, and
accuracy jumps (PPMd's higher orders see more neighbours but fewer repeats). Below, the best
variant on this validation split is run on the test digits with all the training images."""),
("code", '''scores = table.loc[:, [c for c in sweep_comps if c.startswith("ppmd")]].mean(axis=1)
best_name = scores.idxmax()
best_fmt = dict(variants)[best_name]
print("chosen on validation:", best_name, best_fmt)

final_comps = {"ppmd order 2": ("ppmd", dict(order=2)), "ppmd order 3": ("ppmd", dict(order=3)),
               "ppmd order 4": ("ppmd", dict(order=4)), "ppmd order 6": ("ppmd", dict(order=6)),
               "lzma": ("lzma", {}), "zstd": ("zstd", {})}
results, K_of = {}, {}
t0 = time.time()
for cname, (name, opts) in final_comps.items():
    comp = kolmo.get_compressor(name, **opts)
    for label, fmt in [("as is", {}), (best_name, best_fmt)]:
        K_of[cname, label] = conditional_matrix(comp, train, test, **fmt)
        results[cname, label] = accuracy(K_of[cname, label], test)
    print(f"{cname:13s} as is {results[cname, 'as is']:.3f}   {best_name}: {results[cname, best_name]:.3f}")
ppmd_best = max((c for c in final_comps if c.startswith("ppmd")), key=lambda c: results[c, best_name])
K_avg = conditional_matrix(kolmo.get_compressor(*final_comps[ppmd_best][:1], **final_comps[ppmd_best][1]),
                           train, test, shuffles=3, **best_fmt)
results[ppmd_best + ", 3 orders", best_name] = accuracy(K_avg, test)
print(f"{ppmd_best}, averaged over 3 orders of the training images: {results[ppmd_best + ', 3 orders', best_name]:.3f}")
print(f"logistic regression: {baseline:.3f}   ({time.time() - t0:.0f} s)")'''),
]
    cells += [
("md", """## A learning compressor: lm-online with a transformer that starts from nothing

`lm-online` codes its input in blocks and takes an optimizer step on each block after coding it
(prequential coding), so C(y | X_c) is the cost of y after a small byte-level transformer has
*trained* on the class's images: iGPT in miniature, with the class model learned from
N images in one pass and no separate training phase. It is much slower than PPMd, so it runs on
fewer images and test digits; PPMd runs on the same subset beside it. Settings (all pinned, as the
defaults may change): 2 layers, width 128, 4 heads, a 128-byte context (the current image and
the one before), no hashed n-grams, one Adam step (learning rate 1e-3) per 64-byte block = per
image, the positional bytes."""),
("code", '''LM_TRAIN, LM_TEST = (5, 10) if SMALL else (30, 100)
ONLINE = dict(model="scratch", layers=2, width=128, heads=4, context=128, ngram=0, block_tokens=64,
              lr=1e-3, steps=1, train_on="block", mix=None, progress=False)  # mix=None: the learner alone
lm_train = {c: train[c][:LM_TRAIN] for c in range(10)}
lm_test = test[:LM_TEST]
fmt = dict(values="positional", layout=best_fmt.get("layout", "row"))
t0 = time.time()
online = kolmo.get_compressor("lm-online", **ONLINE)
K_online = conditional_matrix(online, lm_train, lm_test, **fmt)
t_online = time.time() - t0
K_ppmd_sub = conditional_matrix(kolmo.get_compressor(*final_comps[ppmd_best][:1], **final_comps[ppmd_best][1]),
                                lm_train, lm_test, **fmt)
subset = {"lm-online (scratch)": accuracy(K_online, lm_test), ppmd_best: accuracy(K_ppmd_sub, lm_test),
          "logistic regression": logreg_accuracy(np.concatenate(list(lm_train.values())), lm_test)}
print(f"{LM_TRAIN} training images per class, {LM_TEST} test digits; lm-online took {t_online:.0f} s")
for k, v in subset.items():
    print(f"  {k:22s} {v:.3f}")'''),
("code", '''fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [3, 2]})
names = list(final_comps) + [ppmd_best + ", 3 orders"]
w = 0.38
x = np.arange(len(names))
axes[0].bar(x - w / 2, [results.get((n, "as is"), np.nan) for n in names], w, label="as is (0..16, row-major)")
axes[0].bar(x + w / 2, [results[n, best_name] for n in names], w, label=best_name)
axes[0].axhline(baseline, color="k", ls="--", lw=1, label=f"logistic regression ({baseline:.3f})")
axes[0].set_xticks(x, names, rotation=20, ha="right", fontsize=8)
axes[0].set_ylim(0, 1); axes[0].set_ylabel("test accuracy")
axes[0].set_title(f"argmin_c C(y | X_c): {N_TRAIN} images per class, {N_TEST} test digits")
axes[0].legend(fontsize=8, loc="lower left")
axes[1].bar(range(len(subset)), list(subset.values()), color=["C2", "C1", "0.5"])
axes[1].set_xticks(range(len(subset)), list(subset), rotation=20, ha="right", fontsize=8)
axes[1].set_ylim(0, 1); axes[1].set_title(f"subset: {LM_TRAIN} images per class, {LM_TEST} test digits")
for i, v in enumerate(subset.values()):
    axes[1].text(i, v + 0.01, f"{v:.2f}", ha="center", fontsize=8)
plt.tight_layout(); plt.show()'''),
("code", '''from sklearn.metrics import confusion_matrix, ConfusionMatrixDisplay
pred = K_avg.argmin(axis=0)
fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [1, 1.4]})
ConfusionMatrixDisplay(confusion_matrix(labels[test], pred, labels=range(10))).plot(ax=axes[0], colorbar=False)
axes[0].set_title(f"{ppmd_best}, {best_name}, 3 orders")
wrong = np.nonzero(pred != labels[test])[0][:12]
axes[1].axis("off"); axes[1].set_title("misclassified test digits: true -> predicted (bits over the best class)")
for k, j in enumerate(wrong):
    ax = fig.add_axes([0.46 + (k % 6) * 0.085, 0.5 - (k // 6) * 0.4, 0.075, 0.3])
    ax.imshow(images[test[j]], cmap="gray_r"); ax.set_xticks([]); ax.set_yticks([])
    margin = K_avg[labels[test[j]], j] - K_avg[pred[j], j]
    ax.set_title(f"{labels[test[j]]} -> {pred[j]} (+{margin:.0f})", fontsize=8)
plt.show()'''),
("md", """**Reading it.** (Written from the full-size run: the numbers printed above.)

* **The layout decides everything.** On the raw bytes no compressor gets near the baseline (test
  accuracy 0.18-0.44). With the positional bytes, chosen on the validation split, PPMd reaches
  **0.953** (orders 3 and 4; 0.940 at order 2, 0.930 at order 6), lzma 0.943 and zstd 0.880, against
  **0.967** for logistic regression on the same 1000 training images. So the goal of 90% is met by
  PPMd and lzma, and compression stays about 1.5 points below a linear classifier on raw pixels.
* **lm-online**, a transformer trained from nothing on 30 images per class while coding them, gets
  0.92 on its 100 test digits, beside PPMd's 0.90 and logistic regression's 0.94 on the same subset:
  as good as the best classical coder (100 digits cannot separate them), at hundreds of times the
  cost.
* **What did not help.** Scaling 0..16 to 0..255 (PPMd's model sees symbols, not magnitudes, and
  stays as poor; lzma drops from 0.370 to 0.295 on the validation split), column-major order
  (mixed: better for lzma and zstd on raw bytes, worse for PPMd with positions), a separator byte
  between images (helps PPMd a little, up to 0.41), and averaging over 3 orders of the training
  images (0.953 either way here). Outside the notebook we also tried, on splits of 50 or 100 images
  per class and 200 test digits: quantising without positions (2, 3 or 5 levels: at most 0.6),
  positions with 2 or 3 levels (0.84-0.92, mostly below 4 levels' 0.89-0.94), a position byte
  interleaved with the full 0..16 value (0.90-0.93 for PPMd), and for lm-online hashed n-gram
  embeddings (ngram=4: the same 0.94) and a higher learning rate (3e-3: 0.86 against 0.90 with 20
  images per class).

Why position matters: a byte compressor predicts the next byte from the few bytes before it. Raw
pixels give it contexts like "two dark pixels", which occur all over every digit; tagged with their
position they become "a dark pixel at (3, 4) after a dark one at (3, 3)", which is what separates a
3 from an 8. Classification by C(y | X_c) is then a class-conditional generative model fitted in
one pass, the compression view of naive Bayes with neighbours; iGPT gets the same information from
learned position embeddings. In the misclassified digits, the margin is how many bits more the
true class cost: several are near-ties (a few bits, less than the byte a real compressor rounds to),
the rest mostly unusual writings."""),
]
    return cells


def archetype_cells():
    """06: archetypal transfer between procedurally generated stories, with significance tests."""
    cells = [
("md", """# Archetypal transfer: does a dataset of one kind of story inform a new story of that kind?

X is a few hundred short stories that share one **archetype**, the quest (a hero leaves home,
meets a mentor who gives a gift, faces a trial, returns changed). Does reading X make a held-out
quest story Y cheaper to code than a held-out story of another archetype, the trickster (a small
animal fools a big greedy one and takes its food)? And is what transfers the *archetype*, or just
the templates, names and words that X and Y happen to share?

The stories are generated here, seeded, from templates, so we control exactly what is shared:

* **same templates**: held-out stories drawn from the training templates and name lists (new
  combinations): Y shares X's sentences and words;
* **new telling**: the same plot steps written with other sentences and filled from *disjoint* lists
  of names, places, objects and animals: what is left in common is the archetype (and English).

Controls: X_trickster, the same number of trickster stories (an X of the *other* archetype, same
format and size); X shuffled, each training story with its words shuffled (the same words, no
phrases, sentences or plot); and, for zstd, each story with its *sentences* shuffled (phrases kept,
plot order lost). Everything is in bits: gap(X, Y) = C(X) + C(Y) - C(XY) = C(Y) - C(Y | X)."""),
("code", SETUP),
("code", '''import re
POOLS = [  # pool 0: the training stories and the "same templates" held-out ones; pool 1: only the "new telling"
    dict(h=["Mira", "Tobin", "Ansel", "Rhea", "Idris", "Lena", "Corin", "Sela", "Bram", "Nadia"],
         home=["a fishing village", "a hill farm", "a mill town", "a river hamlet", "a mountain hut"],
         quest=[("a cure for the fever", "the cure"), ("the lost temple bell", "the bell"),
                ("water for the dry fields", "the water"), ("the seed of the great tree", "the seed")],
         mentor=["an old hermit", "a blind ferryman", "a retired soldier", "a talking owl"],
         gift=["a rope of grey hair", "a bronze key", "a cloak that smelled of rain", "a silver needle"],
         trial=[("a bridge guarded by a giant", "the giant"), ("a cave where a dragon slept", "the dragon"),
                ("a tower full of mirrors", "the mirrors"), ("a storm on the black lake", "the storm")],
         flaw=[("afraid", "brave"), ("proud", "humble"), ("careless", "patient"), ("selfish", "generous")],
         t=["Fox", "Hare", "Spider", "Crow"], b=["Bear", "Lion", "Wolf", "Bull"],
         goods=["honey", "fish", "grain", "cheese"],
         place=["the river bank", "the old well", "the market square", "the cornfield"],
         lie=["the moon had fallen into the pond", "a hunter was coming with a hundred dogs",
              "the king wanted every animal to dance", "the hollow tree was full of gold"],
         fool=["jumped into the pond to catch it", "ran into the hills to hide", "danced until it fell asleep",
               "pushed its head into the tree and got stuck"],
         escape=["ran home laughing", "shared the feast with its friends", "hid it all under a stone"]),
    dict(h=["Oren", "Tamsin", "Elio", "Wren", "Dario", "Freya", "Kian", "Ysolde", "Matteo", "Ilse"],
         home=["a salt marsh", "an orchard", "a quiet valley", "a walled city", "a forest clearing"],
         quest=[("medicine for the sick king", "the medicine"), ("the sun's stolen feather", "the feather"),
                ("fire for the frozen town", "the fire"), ("the name of the hidden spring", "the name")],
         mentor=["a weary pilgrim", "a one-eyed smith", "a grandmother of the marsh", "a silent fisherman"],
         gift=["a whistle carved from bone", "a map drawn on bark", "a pouch of black salt", "a copper ring"],
         trial=[("a gate that asked riddles", "the gate"), ("a desert of glass", "the desert"),
                ("a swamp full of voices", "the swamp"), ("a wall of living thorns", "the thorns")],
         flaw=[("lazy", "diligent"), ("timid", "bold"), ("greedy", "kind"), ("boastful", "modest")],
         t=["Weasel", "Mouse", "Jackal", "Magpie"], b=["Tiger", "Eagle", "Boar", "Crocodile"],
         goods=["figs", "eggs", "plums", "bread"],
         place=["the hollow oak", "the salt road", "the meadow", "the mill pond"],
         lie=["the sky was about to fall", "a bigger beast had claimed the land",
              "the river was full of sweet milk", "the farmer had left his gate open"],
         fool=["held up the sky with its back all night", "went off to fight the stranger",
               "drank from the river until it burst", "ran to the farm and found only dogs"],
         escape=["vanished into the reeds", "was never seen there again", "slept in the sun all afternoon"]),
]
TEMPLATES = {  # TEMPLATES[archetype][telling]: telling 0 for the training data, 1 for the new telling
    "quest": ["{h} of {home} was {flaw}. One day {h} set out to find {quest}. On the road {h} met {mentor}, "
              "who gave {h} {gift}. At {trial}, {h} used {gift_the} and overcame {foe}. {h} came home with "
              "{thing}, no longer {flaw} but {virtue}.",
              "In {home} there lived a {flaw} youth named {h}. When the village needed {quest}, {h} went away "
              "to seek it. A stranger, {mentor}, shared a fire with {h} and left behind {gift}. The road ended "
              "at {trial}; with {gift_the}, {h} got past {foe}. Years later {h} returned bearing {thing}, and "
              "everyone saw how {virtue} {h} had become."],
    "trickster": ["{t} lived by {place} and was small and always hungry. {b} was big and strong and kept all "
                  "the {goods} for itself. One day {t} told {b} that {lie}. {b} believed it and {fool}. So {t} "
                  "took the {goods} and {escape}. Since then {b} trusts no small animal.",
                  'Nobody at {place} feared little {t}. The {goods} belonged to {b}, who was huge and shared '
                  'nothing with anyone. "Have you heard," whispered {t}, "that {lie}?" Without a thought, {b} '
                  '{fool}. When {b} came back, the {goods} were gone, and {t} {escape}. The old animals still '
                  'tell this story to their young.'],
}

def story(rng, archetype, telling):
    """One story (a line of text): telling 0 = training templates and names, 1 = new sentences, new names."""
    p = POOLS[telling]
    (quest, thing), (trial, foe), (flaw, virtue) = rng.choice(p["quest"]), rng.choice(p["trial"]), rng.choice(p["flaw"])
    gift = rng.choice(p["gift"])
    fill = dict(h=rng.choice(p["h"]), home=rng.choice(p["home"]), quest=quest, thing=thing, mentor=rng.choice(p["mentor"]),
                gift=gift, gift_the="the" + gift[gift.index(" "):], trial=trial, foe=foe, flaw=flaw, virtue=virtue,
                **{k: rng.choice(p[k]) for k in ("t", "b", "goods", "place", "lie", "fool", "escape")})
    return TEMPLATES[archetype][telling].format(**fill) + "\\n"

def shuffle_words(text, rng):
    words = text.split()
    rng.shuffle(words)
    return " ".join(words) + "\\n"

def shuffle_sentences(text, rng):
    sentences = re.split(r"(?<=[.!?]) ", text.strip())
    rng.shuffle(sentences)
    return " ".join(sentences) + "\\n"

rng = random.Random(11)
N_X = 40 if SMALL else 300                  # stories in each training set
N_Y = 20                                    # held-out stories of each kind (1 + 19 makes p < 0.05 possible)
X_quest = [story(rng, "quest", 0) for _ in range(N_X)]
X_trick = [story(rng, "trickster", 0) for _ in range(N_X)]
X_shuf = [shuffle_words(s, rng) for s in X_quest]
seen = set(X_quest) | set(X_trick)
def held_out(archetype, telling):
    out = []
    while len(out) < N_Y:
        s = story(rng, archetype, telling)
        if s not in seen and s not in out:  # never a copy of a training story
            out.append(s)
    return out
Y = {(a, t): held_out(a, t) for a in ("quest", "trickster") for t in (0, 1)}
TELLING = {0: "same templates", 1: "new telling"}
XS = {"X_quest": X_quest, "X_trickster": X_trick, "X_shuffled": X_shuf}
for name, xs in XS.items():
    print(f"{name:12s} {len(xs)} stories, {len(''.join(xs)):6d} bytes")
for (a, t), ys in Y.items():
    print(f"held-out {a:9s} {TELLING[t]:14s} mean {np.mean([len(s) for s in ys]):.0f} bytes:  {ys[0][:90]}...")
print("X_shuffled:", X_shuf[0][:90], "...")'''),
]
    cells += [
("md", """## The test

For each compressor and condition, with n held-out quest stories q_i and n trickster stories t_i
(of one telling), and a training set of each archetype (X_q, X_t):

* `kolmo.gap_test(X_q, q_i, null=[t_1..t_n])` for each quest story (and `gap_test(X_t, t_i,
  null=[q_1..q_n])` for each trickster story): does X tell more about this story than about
  stories of the other archetype? One p-value per story (it can reach 0.05 only with n >= 19).
* `kolmo.pairing_test([X_q]*n + [X_t]*n, [q_1..q_n, t_1..t_n])`: the mean gap over the true
  pairs (each training set with a story of its own archetype) against random re-pairings, which
  match archetypes only about half the time. One p-value for the whole condition, from the same
  gaps (the results cache holds them, so nothing is compressed twice).

The effect reported is *matched minus mismatched*: the mean gap of a story with the training set
of its own archetype minus its mean gap with the other one, in bits per story."""),
("code", '''import tempfile, time
CACHE = str(Path(tempfile.mkdtemp()) / "atl.sqlite")   # a fresh results cache for this run

def blob(stories):
    return "".join(stories).encode()

def atl(comp, x_quest, x_trick, telling, n, label):
    """Per-story gap tests and one pairing test; returns a summary row (bits, p-values)."""
    q, t = [s.encode() for s in Y["quest", telling][:n]], [s.encode() for s in Y["trickster", telling][:n]]
    xq, xt = blob(x_quest), blob(x_trick)
    t0 = time.time()
    if comp.name == "lm-online":   # train through each X once; the instance remembers every C(XY)
        comp.conditional_bits_many(q + t, xq); comp.conditional_bits_many(q + t, xt)
    kw = dict(compressor=comp, cache=CACHE, n_boot=200, seed=0)
    per_story = [kolmo.gap_test(xq, y, null=t, **kw) for y in q] + [kolmo.gap_test(xt, y, null=q, **kw) for y in t]
    pair = kolmo.pairing_test([xq] * n + [xt] * n, q + t, n_perm=9999, progress=False, **kw)
    G = pair.gaps                                    # G[i, j] = gap(xs[i], ys[j])
    matched = np.r_[G[0, :n], G[n, n:]]              # each story with the X of its own archetype
    mismatched = np.r_[G[n, :n], G[0, n:]]
    name = comp.name + (" mix" if comp.config.get("mix") else "")   # lm-online's mixture: "lm-online mix"
    return dict(compressor=name, condition=label, telling=TELLING[telling], n=2 * n,
                x_bytes=len(xq), matched=matched.mean(), mismatched=mismatched.mean(),
                effect=(matched - mismatched).mean(), pairing_p=pair.p_value,
                stories_p_below_05=np.mean([r.p_value < 0.05 for r in per_story]) if n >= 19 else np.nan,
                median_story_p=np.median([r.p_value for r in per_story]), seconds=time.time() - t0,
                diffs=matched - mismatched)

def show(r):
    print(f"{r['compressor']:13s} {r['telling']:14s} {r['condition']:18s} |X| = {r['x_bytes']:5d} B, {r['n']:2d} stories: "
          f"gap matched {r['matched']:7.1f}, mismatched {r['mismatched']:7.1f}, effect {r['effect']:+7.1f} bits/story, "
          f"pairing p = {r['pairing_p']:.4f}  ({r['seconds']:.0f} s)")

shuf_trick = [shuffle_words(s, random.Random(5)) for s in X_trick]
sent_quest = [shuffle_sentences(s, random.Random(6)) for s in X_quest]   # sentences kept, plot order lost
sent_trick = [shuffle_sentences(s, random.Random(7)) for s in X_trick]
print("sentences shuffled:", sent_quest[0][:100], "...")
rows = []'''),
("code", '''zstd = kolmo.get_compressor("zstd")     # level 19; C(XY) by concatenation (joint="concat")
for telling, (xq, xt, label) in [(0, (X_quest, X_trick, "X")), (1, (X_quest, X_trick, "X")),
                                 (1, (sent_quest, sent_trick, "sentences shuffled")),
                                 (1, (X_shuf, shuf_trick, "X shuffled"))]:
    rows.append(atl(zstd, xq, xt, telling, N_Y, label))
    show(rows[-1])'''),
("md", """## The language models

**lm** (SmolLM2-135M, in context) reads X in its window and has no cache of X across pairs, so
every gap costs a full C(XY): X is the first 2 stories of each training set and the test uses 4 +
4 held-out stories (its smallest possible p-value is then 1 / C(8, 4) = 0.014). **lm-online**
learns X: its weights are trained on X while it codes it. The pretrained SmolLM2 fine-tuned this
way needed about 100 s for 600 tokens of X on this shared 2-core CPU (25 s per 128-token block,
full fine-tuning and LoRA alike), far too slow for a notebook, so lm-online runs
`model="scratch"`: a 2-layer byte transformer that starts from nothing (settings pinned below),
trained on the first 30 stories of each training set, tested on 8 + 8 held-out stories. It runs
twice: the learner alone (`mix=None`) and `lm-online`'s default, the learner mixed per token with
its memories of the bytes coded so far (n-grams of orders 1-8 and a match model; "lm-online mix")."""),
("code", '''LM_STORIES, LM_N = (1, 2) if SMALL else (2, 4)
conditions = [(1, (X_quest, X_trick, "X")), (1, (X_shuf, shuf_trick, "X shuffled"))]
lm = kolmo.get_compressor("lm", progress=False)
for telling, (xq, xt, label) in conditions[:1] if SMALL else conditions:   # small runs: one condition
    rows.append(atl(lm, xq[:LM_STORIES], xt[:LM_STORIES], telling, LM_N, label))
    show(rows[-1])'''),
("code", '''ONLINE_STORIES, ONLINE_N = (2, 2) if SMALL else (30, 8)
PINNED = dict(model="scratch", layers=2, width=128, heads=4, context=256, ngram=6, buckets=1 << 16,
              block_tokens=128, lr=2e-3, steps=1, train_on="window", seed=0, progress=False)
for mix in (None, "auto"):   # the learner alone, then lm-online's default: the learner mixed with its memories
    online = kolmo.get_compressor("lm-online", mix=mix, **PINNED)
    for telling, (xq, xt, label) in conditions[:1] if SMALL else conditions:
        rows.append(atl(online, xq[:ONLINE_STORIES], xt[:ONLINE_STORIES], telling, ONLINE_N, label))
        show(rows[-1])'''),
("code", '''import pandas as pd
table = pd.DataFrame(rows).drop(columns="diffs").set_index(["compressor", "telling", "condition"])
print("gaps in bits per held-out story; effect = matched - mismatched; p: kolmo.pairing_test (9999 permutations)")
table.round({"matched": 1, "mismatched": 1, "effect": 1, "pairing_p": 4, "stories_p_below_05": 2,
             "median_story_p": 3, "seconds": 0})'''),
("code", '''fig, axes = plt.subplots(1, 2, figsize=(14, 4.8))
names = [f"{r['compressor']}\\n{r['telling']}\\n{r['condition']}" for r in rows]
x = np.arange(len(rows))
ax = axes[0]
ax.bar(x - 0.2, [r["matched"] for r in rows], 0.4, label="with the X of its own archetype")
ax.bar(x + 0.2, [r["mismatched"] for r in rows], 0.4, label="with the X of the other archetype")
ax.set_ylabel("mean gap per held-out story (bits, symlog)")
ax.set_title("gap(X, Y) = C(Y) - C(Y | X)")
ax.legend(fontsize=8)
ax = axes[1]
for i, r in enumerate(rows):
    jitter = np.random.default_rng(i).uniform(-0.15, 0.15, len(r["diffs"]))
    ax.scatter(i + jitter, r["diffs"], s=10, alpha=0.6, color=f"C{2 + ['X', 'sentences shuffled', 'X shuffled'].index(r['condition'])}")
    ax.plot([i - 0.3, i + 0.3], [r["effect"]] * 2, color="k", lw=2)
    ax.text(i, 1.01, f"p={r['pairing_p']:.2g}", ha="center", fontsize=8, transform=ax.get_xaxis_transform())
ax.set_ylabel("own-archetype X minus other X, per story (bits, symlog)")
ax.set_title("the effect, story by story (bar: mean; p: pairing_test)", pad=18)
for ax in axes:
    ax.set_yscale("symlog", linthresh=20)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xticks(x, names, fontsize=7)
plt.tight_layout(); plt.show()'''),
("md", """**Reading it.** (Written from the full-size run: the numbers printed above.)

* **Same templates: huge, and trivially significant.** With the 300 quest stories as X, zstd codes a
  held-out quest story 1639 bits cheaper than with the 300 trickster stories (p = 0.0001, the
  smallest 9999 permutations can give; every one of the 40 per-story gap tests is below 0.05).
  That is template overlap: X contains the sentences Y is made of. It says nothing about archetypes.
* **New telling: small, but real for all three.** With new sentences and disjoint names the effect
  falls forty-fold and stays significant: zstd +40 bits per story (p = 0.0001; 23 of the 40 per-story
  tests below 0.05), lm +10 bits with two stories in context (p = 0.015, the floor for 4 + 4 stories),
  lm-online's learner +97 bits after training on 30 stories (p = 0.0001), its mixture +41 (p = 0.0001).
  The mixture's gaps are smaller in every cell (218 against 710 bits matched) because its memories
  already code a story well with no X at all: less is left for X to explain.
* **The shuffles say what carries it.** zstd keeps its effect when the sentences of each training
  story are shuffled (+55 bits) and loses it when the words are (-32, p = 1): it matches byte strings
  that span words, inside sentences, not the order of events. The LM keeps
  almost all of its effect with the words shuffled (+9 of +10 bits), the learner most of it (+61 of
  +97): what they transfer is carried by words, not by sentences or plot. The mixture sits between
  the two kinds: it keeps about a third (+15 of +41, p = 0.014), because its n-gram and match
  memories, like zstd, use the word sequences of X.

What the controls rule out: X_trickster is the same kind and amount of text, so the generic gain
any story gives (the LM saves about 41 bits on any held-out story after two stories of either kind:
the format, "this is a fable") is subtracted out; what remains is specific to the archetype. The
shuffles rule out plot order as the carrier: no compressor here needs it.

What the numbers do not show: that any compressor represents a quest *as* a quest (leave home,
mentor, trial, return). Tellings of one archetype inevitably share vocabulary (village, road,
stranger, journey; animals, food, tricks), and that shared vocabulary is enough to explain every
effect above. An archetype detector would show an effect that survives a new telling *and* needs
the plot: one that drops when X's sentences are shuffled. A 135M model reading two stories and a
2-layer model trained on 30 are far from that, and the X sizes differ by compressor (300 stories for
zstd, 30 for lm-online, 2 for lm), so compare conditions within a compressor, not compressors. Note
also zstd's negative gaps in the new telling: after 93 kB of X its adapted statistics code an
unrelated story a little *worse* than from scratch; only the matched-minus-mismatched difference is
meaningful there."""),
]
    return cells


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
("md", """**Reading it.** Every compressor recognises X itself (the gap is most of C(X)) and finds next
to nothing in an unrelated text. Between the two English translations the classical compressors
save 39-45% of C(Y) (full-size run: zlib 2976, zstd 3152, bzip2 3288, lzma 3528, PPMd 2496 bits).

SmolLM2 is by far the best compressor here (0.62 bits per byte on the KJV against 2.1-2.5), yet
its gap with the WEB is small: 184 bits, 12% of its C(Y). It already knows Genesis, in both
translations, from its training data, so X tells it little its weights did not: **the gap measures
information shared beyond what the compressor already knows.** That is Sutskever's point from the
other side: a model that has absorbed a dataset conditions on it implicitly, and C(Y) itself drops.

Across languages only lzma and the LM find anything, and lzma finds as much in an unrelated text
(704 against 744 bits: its adaptive state, not shared meaning). The LM's 97 bits for French
against 38 for unrelated text is the only cross-language signal, and a faint one."""),
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
("md", """**Reading it.** Compare each bar with the last one, the cipher of an *unrelated* text: that
is what a compressor "finds" with no shared content at all. Every compressor recognises an exact
copy. PPMd finds less than nothing in every variant (its English statistics hurt on ciphertext),
and lzma's six hundred bits are about the same for every variant (632, 656 and 584 in the full-size
run), so they are not shared structure. zstd, coding the concatenation XY (its default joint code),
finds 408 bits for the cipher of X (and 424 for the French) against 152 for the control: coded in
one frame after X, Y profits from statistics it shares with X (a letter cipher keeps the lengths
and places of X's repeats, its spaces and line breaks), not from knowing the mapping. The LM finds more for the cipher of X (200
bits) than for the control (-37): word lengths, line breaks, capitals and punctuation survive a
letter cipher, and the model can use them in context. Neither number comes close to what the
mapping would be worth.

The cipher's key is at most log2(26!) = 88 bits, so K(Y|X) is tiny while every C(Y|X) here stays
near C(Y). That distance, between compressors that match byte strings and one that could learn the
mapping, is what "distribution matching" asks of a learner; a 135M-parameter model reading 2.5 kB
in context covers only a sliver of it."""),
],

"03_conditioning_on_a_dataset.ipynb": [
("md", """# Conditioning on a dataset rather than an example

Sutskever's point: a compressor should condition on a whole **dataset**, not one example. Here Y is
a fixed passage of the World English Bible's Genesis, and X is King James Genesis text of growing
size, either **around the parallel verses** (X contains the same verses in other English once it is
large enough) or **from elsewhere** in the book (same style, other content). We plot C(Y|X) against
|X| for four ways of using X:

* **zstd** and **lzma**: C(Y|X) = C(XY) - C(X), their windows sized by kolmo to hold all of X
  (zstd's default joint code is this concatenation; `joint="two-part"` would prime zstd with X as a
  dictionary instead, printed for comparison);
* **lm** (SmolLM2-135M): X in its context window, at most 2048 tokens;
* **lm-online**: a learner that *trains* on X while coding it (prequential coding), so X reaches
  it through its weights, whatever its length. The pretrained SmolLM2 trains far too slowly on this
  CPU (about 25 s per 128-token block), so this is `model="scratch"`, a small byte transformer that
  starts from nothing: C(Y | empty X) is then its cost of Y knowing no English at all. It runs
  alone (`mix=None`, "lm-online") and as `lm-online`'s default, a *mixture* ("lm-online mix"): the
  same learner and two memories of every byte coded so far (n-grams of orders 1-8 and a match
  model), weighed per byte by how well each has coded."""),
("code", SETUP),
("code", '''web = genesis("english-web", 200_000)
kjv = genesis("english-kjv", 200_000)
start = 6000 if len(web) > 20_000 else len(web) // 3
y = web[start:start + (300 if SMALL else 1200)]                 # the passage to code
mid = int((start + len(y) / 2) * len(kjv) / len(web))           # the parallel verses' middle in the KJV
far = len(kjv) // 2                                             # the middle of the book: other content
sizes = [0, 300, 1000] if SMALL else [0, 300, 1000, 2000, 4000, 6000]
# settings pinned: 2 layers of width 128, a 256-byte context, hashed 2..6-grams, one Adam step per 128 bytes
scratch = dict(model="scratch", layers=2, width=128, heads=4, context=256, ngram=6, buckets=1 << 16,
               block_tokens=128, lr=2e-3, steps=1, train_on="window", seed=0, progress=False)
compressors = {
    "zstd": kolmo.get_compressor("zstd"),
    "lzma": kolmo.get_compressor("lzma"),
    "SmolLM2 (lm, in context)": kolmo.get_compressor("lm", progress=False),
    "lm-online (scratch, learning)": kolmo.get_compressor("lm-online", mix=None, **scratch),
    # the same learner mixed with its memories of the bytes coded so far (lm-online's default mix)
    "lm-online (scratch, mixture)": kolmo.get_compressor("lm-online", **scratch),
}
rows = {name: [] for name in compressors}
short = lambda name: name.split()[0] + (" mix" if "mixture" in name else "")   # a column label
for n in sizes:
    around = kjv[max(0, mid - n // 2): mid + n // 2] if n else b""
    elsewhere = kjv[far: far + n]
    for name, comp in compressors.items():
        rows[name].append((comp.conditional_bits(y, around), comp.conditional_bits(y, elsewhere)))
    print(f"|X| = {n:5d} bytes, C(Y|X) in bits (around / elsewhere): "
          + ";  ".join(f"{short(name)} {a:5.0f} / {e:5.0f}" for name, (a, e) in ((k, v[-1]) for k, v in rows.items())))
dictionary = kolmo.get_compressor("zstd", joint="two-part")
print(f"zstd primed with X as a dictionary (joint='two-part'), |X| = {sizes[-1]}: "
      f"{dictionary.conditional_bits(y, kjv[max(0, mid - sizes[-1] // 2): mid + sizes[-1] // 2]):.0f} / "
      f"{dictionary.conditional_bits(y, kjv[far: far + sizes[-1]]):.0f} bits")'''),
("code", '''ns = np.array([max(n, 100) for n in sizes])
fig, ax = plt.subplots(figsize=(9, 5))
for k, (name, vals) in enumerate(rows.items()):
    ax.plot(ns, [a / len(y) for a, _ in vals], "o-", color=f"C{k}", label=f"{name}, X around the parallel verses")
    ax.plot(ns, [e / len(y) for _, e in vals], "o--", color=f"C{k}", alpha=0.6, label=f"{name}, X from elsewhere")
ax.set_xscale("log")
ax.set_xlabel("|X| in bytes (0 plotted at 100)")
ax.set_ylabel("C(Y | X)  (bits per byte of Y)")
ax.set_title("coding a WEB passage given more and more KJV Genesis")
ax.legend(fontsize=7, ncol=2)
plt.tight_layout()
plt.show()'''),
("md", """**Reading it.** (Written from the full-size run: the numbers printed above.) With X empty the
LM codes this passage in 1144 bits, zstd in 4456 and lzma in 4856: the LM's weights are a
compressed dataset of their own. lm-online's learner starts from nothing and pays 6796 bits (5.7
bits per byte); its mixture pays 3968, below zstd: the memories learn Y's own repeats as it goes.

Genesis text from *elsewhere* barely helps the LM (about 1100 bits whatever |X|) and helps the
byte coders a little (zstd 3504 bits with 6 kB of it, lzma 3536). Text *around the parallel verses*
helps them all: once X holds the whole parallel passage (1-2 kB), zstd drops to about 2150 bits and
lzma to about 2050 (-52% and -58%), copying the phrases the two translations share, and the LM to 735
(-36%), reading a paraphrase in context and predicting Y's wording from it. Past that, more X gives
the byte coders nothing more and costs the LM a little (853 bits at 6 kB): a 135M model's attention
is diluted by text it does not need, and beyond its window (2048 tokens, about 8 kB of English)
more X cannot reach it at all. zstd's default code here is the concatenation; priming it with X as a
dictionary (`joint="two-part"`) costs more (2336 / 3976 bits at 6 kB).

lm-online falls furthest with X from *elsewhere* (6796 -> 3546 bits, -48%, against -21% for zstd):
it conditions on X by learning from it, whatever its length, not by finding Y's phrases in it. Most
of its gain is generic (English spelling and words); the parallel verses add about 820 bits on top
at 6 kB (2723 around), against about 1300 for zstd. The mixture has both kinds of gain: its
memories copy the shared phrases as zstd does and its learner learns English, so it is the lowest
byte-level curve at every size (1891 bits around, 3005 elsewhere at 6 kB, against lzma's 2056 and
3536), still far above SmolLM2's 853. A learner that also starts from a pretrained model
would have both advantages, the LM's 1144-bit start and learning past the window; on this CPU it is
too slow for a notebook. Conditioning on a whole dataset needs a compressor whose "context" is the
dataset: the window of a byte coder, or the weights of a learner."""),
("md", """## The whole book: X far past the window

Now the question of the issue that built `lm-online`: what happens when X grows far past any
window? Y is the first 4 kB of the WEB Genesis (chapters 1-2); X is the King James Genesis from
chapter 3 on (Y's parallel verses are *not* in it), its first 0, 2, 8, 32, 64 kB and then all of it
(about 190 kB). The same compressors; `lm-online` is the byte transformer from scratch with its
default settings (2 layers of width 128, hashed 2..6-grams, one Adam step per 32 bytes), alone
(`python -m benchmarks.online_bench --parts 1 --learner scratch`) and in its default mixture."""),
("code", '''kjv_book = genesis("english-kjv", 10**7)
cut = kjv_book.find(b"Now the serpent was more subtil")
x_book = kjv_book[cut:] if cut >= 0 else kjv_book     # chapter 3 on (the stand-in corpus: all of it)
y_book = genesis("english-web", 1024 if SMALL else 4096)
book_sizes = [0, 1024, 4096] if SMALL else [0, 2048, 8192, 32768, 65536, len(x_book)]
learner = kolmo.get_compressor("lm-online", model="scratch", mix=None, progress=False)  # the learner alone
mixture = kolmo.get_compressor("lm-online", model="scratch", progress=False)  # its default: learner + memories
book_compressors = {"zstd": compressors["zstd"], "lzma": compressors["lzma"],
                    "SmolLM2 (lm, in context)": compressors["SmolLM2 (lm, in context)"],
                    "lm-online (scratch, learning)": learner, "lm-online (scratch, mixture)": mixture}
book = {name: [] for name in book_compressors}
for n in book_sizes:
    for name, comp in book_compressors.items():
        book[name].append(comp.conditional_bits(y_book, x_book[:n]))
    print(f"|X| = {n:6d} bytes, C(Y|X) in bits: " + ";  ".join(f"{short(k)} {v[-1]:6.0f}" for k, v in book.items()))
for name in ("lm-online (scratch, learning)", "lm-online (scratch, mixture)"):
    print(f"{name}: C(Y | all of X) / C(Y | 8 kB of X) = {book[name][-1] / book[name][min(2, len(book_sizes) - 1)]:.3f}")'''),
("code", '''fig, ax = plt.subplots(figsize=(9, 5))
for k, (name, vals) in enumerate(book.items()):
    ax.plot([max(n, 256) for n in book_sizes], np.array(vals) / len(y_book), "o-", color=f"C{k}", label=name)
ax.axvline(4 * 2048, color="0.5", ls=":", lw=1)
ax.text(4 * 2048, ax.get_ylim()[1], " SmolLM2's window (~8 kB)", va="top", fontsize=8, color="0.4")
ax.set_xscale("log")
ax.set_xlabel("|X| in bytes: King James Genesis from chapter 3 on (0 plotted at 256)")
ax.set_ylabel("C(Y | X)  (bits per byte of Y)")
ax.set_title("coding 4 kB of WEB Genesis 1-2 given more and more of the rest of the book")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()'''),
("md", """**Reading it.** (Written from the full-size run: the numbers printed above.) SmolLM2 in context
is flat: 2105 bits with no X, 2083 with all 188 kB. X reaches it only through its window, and the
last 8 kB of the rest of Genesis say little about chapters 1-2 that the model did not already
know. The learner keeps falling long after the window: 14407 bits from nothing, 8570 after 8 kB,
7646 after 32 kB, 7486 after all of X, so C(Y | all of X) is 0.87 x C(Y | 8 kB of X): the whole
dataset conditions Y, through the weights. zstd and lzma fall too (their windows hold all of X),
and after 188 kB the learner, which started knowing no English at all, codes Y as well as lzma
(7486 against 7480 bits) and better than zstd (7696). The mixture starts far lower (8589 bits: its
memories learn from Y itself) and keeps falling too (7266 after 8 kB, 6587 after all of X, 0.91 x),
12% under lzma at the end: learning and remembering add up.

What this does not show: that learning beats reading. The pretrained model *in context* is still
3.6 times better than every other curve, because its weights hold far more English (and more
Genesis) than 188 kB can teach. Fine-tuning that same model on X while coding
(`lm-online` with its default model, too slow for this notebook on a CPU: `python -m
benchmarks.online_bench --parts 1`) does *not* help here: 2077 bits with no X, 1990 with 8 kB,
2102 with all of it at lr 3e-5, and
at the default 1e-4 it rises sooner (2218 bits with 32 kB). It knows Genesis already, and learning the King James English pulls
it away from the WEB's modern English. Learning from a dataset pays where the dataset teaches the
model something it did not know; on alice29.txt, in-domain, the same fine-tuning codes 0.998 bits
per byte against the in-context model's 1.093.

With a pretrained model, `lm-online`'s default mixture also holds the frozen model reading the
same windows, so it reads and learns at once, never much worse than the better of the two (in
this setting, the WEB given 32 kB of the KJV: 1063 bits against 1114 in context and 1129 for the
learner alone; `python -m benchmarks.mix_bench --parts english`).
`07_learning_against_reading.ipynb` measures it on a language SmolLM2 hardly knows."""),
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
("md", """**Reading it.** Compression alone recovers the English group: the two translations sit
closest (NCD 0.74 with PPMd on 40 kB each) and lolcat English joins them. The other languages sit
at an NCD of about 1 from each other and from English: one book of parallel text shares too little
surface vocabulary across Finnish, French, German, Portuguese and Swedish for a byte-level
compressor, so the tree's remaining branches are noise (zstd, lzma and bzip2 each give different
ones). Cilibrasi and Vitanyi's language trees used the Universal Declaration of Human Rights in
50+ languages, where nearest neighbours are closer relatives than these; a compressor that knew the
languages (an LM trained on all of them) is what it would take to see families in so little text.
Nothing but compressed sizes went in."""),
],

"05_digits_as_sequences.ipynb": digits_cells(),
"06_archetypal_transfer.ipynb": archetype_cells(),
"07_learning_against_reading.ipynb": [
("md", """# Learning against reading: a language the model hardly knows

SmolLM2 knows English far better than Finnish. So here Y is the first 2 kB of the Finnish Genesis
(as UTF-8) and X is the same book from "käärme" (the serpent, chapter 3) on: the same language,
other verses. Nine ways to use X, each C(Y | X) = C(XY) - C(X) in bits:

* **lm (in context)**: SmolLM2 reads X in its window (2048 tokens, about 4 kB of Finnish);
* **PPMd** (order 6): X in its model's statistics, however long;
* **lm-online**, the mixture's parts alone: the **learner** (SmolLM2 fine-tuned on X while it codes),
  the **frozen** model (SmolLM2 untouched, reading the same windows), the token **ngram** memory and
  the **match** model (the token after the longest earlier repeat);
* **the mixture** of all four, weights learned per token (`lm-online` with `mix=(...)`);
* **the default mixture**, the four with a **neural cache** (the tokens that followed the earlier
  positions whose frozen-model hidden states are most like the current one): `lm-online` as it is
  in float32;
* **the default with bf16**: where the hardware computes bf16, `lm-online`'s default runs the models
  in bf16 and adds a second learner at three times the rate (and a stack of mixers).

The language-model rows take tens of minutes on a CPU (learning is three forward passes per token),
so they come from the benchmark's saved runs (`python -m benchmarks.mix_bench --parts finnish --json
benchmarks/saved/mix_finnish.json`, and for the cache `benchmarks/saved/mix_cache.json`: the same
runs' per-part columns mixed again with the cache's); the cheap rows are measured again here, live."""),
("code", SETUP),
("code", '''import json
SAVED = Path(kolmo.__file__).resolve().parents[1] / "benchmarks" / "saved" / "mix_finnish.json"  # in kolmo's checkout
saved = json.loads(SAVED.read_text())["finnish"]
print(f"saved run: {saved['config']['mix']}, kolmo {saved['config']['kolmo_version']}, torch {saved['config']['torch_version']}")
names = ["lm", "ppmd", *saved["rows"][0]["parts"], "mixture"]
print(f"{'|X| bytes':>10} " + " ".join(f"{n:>9}" for n in names) + "   mixture / lm")
for r in saved["rows"]:
    vals = [r["lm"], r["ppmd"], *r["parts"].values(), r["mixture"]]
    print(f"{r['x_bytes']:>10} " + " ".join(f"{v:>9.0f}" for v in vals) + f"   {r['mixture'] / r['lm']:.3f}")

# the default mixture (with the neural cache): the same runs' columns mixed again with the cache's
cached = json.loads((SAVED.parent / "mix_cache.json").read_text())["offline"]["finnish"]
default = dict(zip(cached["x_bytes"], cached["theta_150"]))
for r in saved["rows"]:
    if r["x_bytes"] in default:
        print(f"{r['x_bytes']:>10}  default mixture in float32 (with the neural cache) {default[r['x_bytes']]:6.0f} bits, "
              f"{default[r['x_bytes']] / r['lm']:.3f} x lm in context")

# lm-online's default where the hardware computes bf16: the models in bf16 and a second learner
bf16 = json.loads((SAVED.parent / "mix_bf16_default.json").read_text())
bf16_default = {r["x_bytes"]: r["mixture"] for r in bf16["finnish"]["rows"]}
print(f"default with bf16 ({bf16['env']['cpu_kernels']} CPU kernels, bf16 in hardware: {bf16['env']['native_bf16']}): "
      + ", ".join(f"|X| = {n}: {v:.0f} bits" for n, v in bf16_default.items()))

# live: PPMd and the two memories (no language model involved: seconds)
fi = genesis("finnish", 10**7).decode("latin-1").encode("utf-8")
cut = fi.find("käärme".encode())
y_fi, x_fi = fi[:2048], fi[cut:] if cut >= 0 else fi[2048:]
live_sizes = [0, 4096] if SMALL else [r["x_bytes"] for r in saved["rows"]]
ppmd = kolmo.get_compressor("ppmd", order=6)
memories = kolmo.get_compressor("lm-online", mix=("ngram", "match"), progress=False)
for n in live_sizes:
    print(f"live, |X| = {n:6d}: PPMd {ppmd.conditional_bits(y_fi, x_fi[:n]):6.0f} bits, "
          f"n-gram + match memories {memories.conditional_bits(y_fi, x_fi[:n]):6.0f} bits")'''),
("code", '''xs = [max(r["x_bytes"], 1024) for r in saved["rows"]]
fig, ax = plt.subplots(figsize=(9, 5))
curves = {"lm (in context)": [r["lm"] for r in saved["rows"]], "PPMd order 6": [r["ppmd"] for r in saved["rows"]]}
for part in ("learner", "frozen"):
    curves[f"{part} alone"] = [r["parts"][part] for r in saved["rows"]]
orders = [k for k in saved["rows"][0]["parts"] if k.startswith("ngram")]
curves["n-gram memory alone (its best order)"] = [min(r["parts"][k] for k in orders) for r in saved["rows"]]
curves["mixture of the four"] = [r["mixture"] for r in saved["rows"]]
curves["default mixture in float32 (with the neural cache)"] = [default.get(r["x_bytes"], np.nan) for r in saved["rows"]]
curves["default with bf16 (a second learner)"] = [bf16_default.get(r["x_bytes"], np.nan) for r in saved["rows"]]
for k, (name, vals) in enumerate(curves.items()):
    mixed = name.startswith(("mixture", "default"))
    ax.plot(xs, np.array(vals) / len(y_fi), "s-" if mixed else "o-", color=f"C{k}", label=name,
            lw=3 if name.startswith("default") else 2 if mixed else 1.5)
ax.set_xscale("log")
ax.set_ylim(top=4.5)
ax.set_xlabel("|X| in bytes: the Finnish Genesis from chapter 3 on (0 plotted at 1024)")
ax.set_ylabel("C(Y | X)  (bits per byte of Y)")
ax.set_title("coding 2 kB of Finnish Genesis 1-2 given more of the book")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()'''),
("md", """**Reading it.** (From the saved run and the live cells above.) With no X the learner has learned
nothing yet and is the frozen model (4581 bits); the mixture already saves 2% (4485) because its
memories catch Y's own repeats (names, "ja Jumala sanoi"). Reading X in context barely helps
SmolLM2 in Finnish (4421 bits with 16 kB of X, 4522 with 48 kB: only the last few kB fit its
window). PPMd gains more (5520 -> 4200 bits: it keeps statistics of all of X), and learning gains
most: the fine-tuned learner codes Y in 3980, 3871 and 3589 bits at 16, 48 and 150 kB. The mixture
beats every part at every size: 3804 bits (0.86 x the in-context lm) at 16 kB, 3694 (0.82 x, 12%
below PPMd) at 48 kB, 3449 (0.77 x the lm's 4495, 17% below PPMd's 4176) at 150 kB. Its
parts are right about different tokens: the memories about exact repeats of X's names and
phrases, the learner about Finnish in general, and the mixer weighs them token by token. The
neural cache, which remembers where the frozen model's reading was alike rather than where the
tokens repeat, takes the default a little further: 4435, 3709, 3624 and 3419 bits (0.761 x the
in-context lm at 150 kB), most where the learner has seen little.

So learning from a dataset beats reading it when the dataset teaches the model something it did not
know. It does not when the model knows the text already: on the English Genesis
(`python -m benchmarks.mix_bench --parts english`, X = 32 kB of the King James Bible, Y = 2 kB of
the World English Bible) the learner alone codes Y in 1129 bits, *more* than the frozen model
reading X in context (1114), and the mixture, which keeps the frozen model as one of its parts,
codes it in 1063: learning can no longer make a known text costlier. The 150 kB row took 87
minutes of learning on one thread of this CPU (`--sizes 153600`); on the way to 0.75 x the
in-context lm the four parts stop at 0.77 x and the default at 0.761 x: the parts it mixes, not the
mixer, set that figure (replayed offline over the runs' saved per-token columns: eta and two layers
of mixers move the 150 kB row by 0.2% or less; weight sets chosen by the cache's confidence or by
the last token's cost move the 16 and 48 kB rows by less than 0.3%; the default's weights on Y at
150 kB are as good as the best fixed weights chosen after the fact). Another part moves it: a second
learner at three times the rate (the part `"fast"`, an option because it doubles the learning) codes
the 150 kB row in 3379 bits (0.752 x), 3694 at 16 kB, and costs 7 bits in English (1066, still below
the lm's 1114). With it, the cache at theta 200 and a stack of mixers (`eta=(0.1, 0.02, 1.0)`) a full
run codes the 150 kB row in 3372.6 bits, 0.7503 x the in-context lm, in 1.8 x the default's time.
Where the hardware computes bf16 (`autocast="bfloat16"`: the models' products in bf16, a learning
step 2.16 x faster on this CPU) the same setting codes it in 3369.8 bits, **0.7497 x** the in-context
lm and 19% below PPMd, in 1.19 x the time of the learner alone in float32: the goal, by 1.2 bits.
That is `lm-online`'s default where the hardware computes bf16 (the thick last curve: 4434, 3691,
3596 and 3370 bits at 0, 16, 48 and 150 kB); without bf16 in hardware the second learner would take
2.2 x the learner alone's time, so there the default stays float32's.
`benchmarks/saved/learner_150k.json` and `mix_bf16_default.json` have these runs."""),
],
}


def main(argv=None):
    """Execute and write the notebooks named in argv (all by default); --markdown-only refreshes
    the prose of already executed notebooks without running them."""
    import os
    import sys
    from nbclient import NotebookClient
    args = sys.argv[1:] if argv is None else argv
    text_only = "--markdown-only" in args
    names = [a for a in args if not a.startswith("--")] or list(NOTEBOOKS)
    for name in names:
        book = nb(NOTEBOOKS[name])
        if text_only:
            old = nbformat.read(HERE / name, as_version=4)
            if [c.cell_type for c in old.cells] != [c.cell_type for c in book.cells]:
                raise SystemExit(f"{name}: cells changed; execute it instead of --markdown-only")
            for c_old, c_new in zip(old.cells, book.cells):
                if c_new.cell_type == "markdown":
                    c_old.source = c_new.source
            nbformat.write(old, HERE / name)
            print("refreshed the prose of", name)
            continue
        NotebookClient(book, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
        nbformat.write(book, HERE / name)
        print("wrote", name, "small" if os.environ.get("KOLMO_EXAMPLES_SMALL") == "1" else "full")
    (HERE / "genesis_ncd.json").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
