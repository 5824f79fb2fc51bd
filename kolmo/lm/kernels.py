"""Compiled (numba) kernels of the coding path on a CPU: the scratch model's one-token step, its
prefill's n-gram sums, integer frequency tables on the host and the mixture's weighted sum.

A coding step of the small byte transformer (:mod:`kolmo.lm.models.scratch`) is about 0.3 MFLOP; run as
torch operations it costs ~0.45 ms, nearly all of it per-operation overhead (some 40 calls), and
the encoder runs every step twice (coding, then verification). :func:`transformer_step` does the
same arithmetic in one call, ~10x faster.

Its floats depend only on the inputs: IEEE-754 additions, multiplications, divisions and square
roots in a fixed order (compiled without fast-math, so nothing is reassociated or fused), and
``exp`` and ``erf`` computed here from those operations (no libm call, whose last bit may differ
between C libraries). So the step gives the same floats on every machine for the same weights and
KV cache (the weights and the prefill still come from torch: :mod:`kolmo.lm.machine`). It
gives the batched forward's hidden states to within ~1e-6 (its sums run in other orders, and
``erf`` here has an absolute error below 1.5e-7, Abramowitz and Stegun 7.1.26, in float64).

Layout (``nl`` layers, width ``C``, ``H`` heads of ``D``, ``L`` positions), float32 or float64,
the model's parameters read in place: weights stored input dimension first (the scratch model's
layers keep them so), so every matrix-vector product is a sum of scaled rows (vectorised across
outputs, each output's sum in input order). ``mats``: per layer the qkv (C, 3C), proj (C, C), fc
(C, 4C) and out (4C, C) weights, then the head's (C, A); ``vecs``: per layer the qkv, proj, fc and
out biases and the ln1 and ln2 gains and shifts, then the final LayerNorm's gain and shift, then
the head's bias; the LayerNorms' epsilons ``eps`` (nl + 1, 2) float64 (the final one at [nl, 0]);
keys (nl, H, D, L) and values (nl, H, L, D).
"""

from __future__ import annotations

import math

import numpy as np

try:
    from numba import njit
except ImportError:  # pragma: no cover (numba is part of kolmo[lm])
    raise ImportError("kolmo's compiled coding steps (model='scratch' on a CPU, lm-online's mixture) need numba; "
                      "install it with `pip install 'kolmo[lm]'` (or `pip install numba`)") from None

_LN2_HI = 6.93147180369123816490e-01  # ln 2 split so that k * _LN2_HI is exact for |k| < 2**20
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e+00
_POW2 = np.ldexp(1.0, np.arange(-1080, 1)).astype(np.float64)  # 2**k, k = -1080 .. 0: exact
_MULTIPLIER = np.int64(0x5BD1E995)  # of the n-gram hashes (:func:`embed`)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def exp_neg(x: float) -> float:
    """e**x for x <= 0 in float64 (e**-745 below -745): 2**k e**r, |r| <= ln(2) / 2, e**r by its
    Taylor polynomial of degree 12 (relative error below 1e-15). Its branches are selects, so
    loops over it vectorise; NaN in gives NaN out."""
    x = max(x, -745.0)
    k = math.floor(x * _INV_LN2 + 0.5)
    if not k >= -1080.0:  # NaN (weights that diverged): any finite k, never an index out of the table
        k = -1080.0
    if k > 0.0:
        k = 0.0
    r = (x - k * _LN2_HI) - k * _LN2_LO
    p = 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    return p * _POW2[int(k) + 1080]


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def erf(x: float) -> float:
    """erf(x) in float64 to an absolute error below 1.5e-7 (Abramowitz and Stegun 7.1.26)."""
    z = abs(x)
    t = 1.0 / (1.0 + 0.3275911 * z)
    y = 1.0 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t
               + 0.254829592) * t * exp_neg(-z * z)
    return math.copysign(y, x)


@njit(cache=True, nogil=True, error_model="numpy")
def layer_norm(x, gain, shift, eps, out) -> None:
    """out = (x - mean) / sqrt(var + eps) * gain + shift; mean and (biased) variance in float64."""
    n = x.shape[0]
    s = 0.0
    for i in range(n):
        s += x[i]
    mean = s / n
    v = 0.0
    for i in range(n):
        d = x[i] - mean
        v += d * d
    r = 1.0 / math.sqrt(v / n + eps)
    for i in range(n):
        out[i] = (x[i] - mean) * r * gain[i] + shift[i]


@njit(cache=True, nogil=True, error_model="numpy")
def affine(w, bias, x, out) -> None:
    """out = bias + x @ w (w: (in, out)), each output summed over the inputs in order."""
    m, n = out.shape[0], x.shape[0]
    for i in range(m):
        out[i] = 0.0
    n4 = n - n % 4
    for k in range(0, n4, 4):  # four inputs per pass over the outputs, added one after another
        x0, x1, x2, x3 = x[k], x[k + 1], x[k + 2], x[k + 3]
        r0, r1, r2, r3 = w[k], w[k + 1], w[k + 2], w[k + 3]
        for i in range(m):
            out[i] = (((out[i] + r0[i] * x0) + r1[i] * x1) + r2[i] * x2) + r3[i] * x3
    for k in range(n4, n):
        xk = x[k]
        row = w[k]
        for i in range(m):
            out[i] += row[i] * xk
    for i in range(m):
        out[i] += bias[i]


@njit(cache=True, nogil=True, error_model="numpy")
def attend(qkv, keys, values, n, scale, scores, out) -> None:
    """Causal attention of one position ``n`` over positions 0 .. n of one layer's cache, every
    head: ``out[h D + d] = sum_j softmax_j(scale q_h . k_hj) v_hjd``."""
    heads, dim = keys.shape[0], keys.shape[1]
    for h in range(heads):
        for j in range(n + 1):
            scores[j] = 0.0
        for d in range(dim):
            q = qkv[h * dim + d]
            kd = keys[h, d]
            for j in range(n + 1):
                scores[j] += q * kd[j]
        top = -np.inf
        for j in range(n + 1):
            scores[j] *= scale
            top = max(top, scores[j])
        for j in range(n + 1):  # apart from the sum below: this loop vectorises
            scores[j] = exp_neg(scores[j] - top)
        total = 0.0
        for j in range(n + 1):
            total += scores[j]
        for d in range(dim):
            out[h * dim + d] = 0.0
        for j in range(n + 1):
            scores[j] = scores[j] / total  # rounded to the cache's dtype
            pj = scores[j]
            vj = values[h, j]
            for d in range(dim):
                out[h * dim + d] += pj * vj[d]


@njit(cache=True, nogil=True, error_model="numpy")
def transformer_step(x, n, mats, vecs, eps, keys, values, scale, work, out) -> None:
    """One position through every layer: ``x`` (C,), its input embedding, is overwritten with the
    residual stream; the position's key and value are written at ``n``; ``out`` (C,) receives the
    final LayerNorm's output. ``work`` (:func:`work_size`): scratch space. See the module
    docstring for the layout; GELU in the erf form, ``gelu(u) = u (1 + erf(u / sqrt 2)) / 2``."""
    C = x.shape[0]
    layers, heads, dim, length = keys.shape[0], keys.shape[1], keys.shape[2], keys.shape[3]
    y, qkv, hid = work[:C], work[C:4 * C], work[4 * C:8 * C]
    scores, tmp = work[8 * C:8 * C + length], work[8 * C + length:9 * C + length]
    for l in range(layers):
        m, v = 4 * l, 8 * l
        layer_norm(x, vecs[v + 4], vecs[v + 5], eps[l, 0], y)
        affine(mats[m], vecs[v], y, qkv)
        for h in range(heads):
            for d in range(dim):
                keys[l, h, d, n] = qkv[C + h * dim + d]
                values[l, h, n, d] = qkv[2 * C + h * dim + d]
        attend(qkv, keys[l], values[l], n, scale, scores, y)
        affine(mats[m + 1], vecs[v + 1], y, tmp)
        for i in range(C):
            x[i] += tmp[i]
        layer_norm(x, vecs[v + 6], vecs[v + 7], eps[l, 1], y)
        affine(mats[m + 2], vecs[v + 2], y, hid)
        for i in range(4 * C):
            u = hid[i]
            hid[i] = 0.5 * u * (1.0 + erf(u * 0.7071067811865476))
        affine(mats[m + 3], vecs[v + 3], hid, tmp)
        for i in range(C):
            x[i] += tmp[i]
    layer_norm(x, vecs[8 * layers], vecs[8 * layers + 1], eps[layers, 0], out)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _bucket(h, j, buckets):
    """The bucket of an n-gram from its hash ``h`` (wrapping int64) and ``j = n - 1``."""
    return ((h ^ np.int64(j * 0x2545F491)) >> 3) % buckets


@njit(cache=True, nogil=True, error_model="numpy")
def embed(tok, pos, hashed, token, n, recent, buckets, x) -> None:
    """x = tok[token] + pos[n] + the hashed table's rows of the n-grams (n = 2 .. len(recent) + 1)
    ending at ``token`` (``recent``: the ids before it, oldest first), in order of n; then
    ``token`` joins ``recent`` (the oldest id leaves). The bucket of the n ids ``token, recent[-1],
    ...`` (newest first, ``back``) is ``((h_n ^ (n - 1) 0x2545F491) >> 3) mod buckets`` with
    ``h_n = h_(n-1) 0x5BD1E995 + back[n - 1] + 1`` in wrapping int64 arithmetic, ``h_0 = 0``:
    the buckets of :meth:`kolmo.lm.models.scratch.ByteTransformer._ngrams`."""
    for i in range(x.shape[0]):
        x[i] = tok[token, i] + pos[n, i]
    k = recent.shape[0]
    h = np.int64(token) + 1
    for j in range(1, k + 1):
        h = h * _MULTIPLIER + recent[k - j] + 1
        row = hashed[_bucket(h, j, buckets)]
        for i in range(x.shape[0]):
            x[i] += row[i]
    for j in range(k - 1):
        recent[j] = recent[j + 1]
    if k:
        recent[k - 1] = token


@njit(cache=True, nogil=True, error_model="numpy")
def ngram_sums(hashed, full, buckets, out) -> None:
    """out[b, t] = the sum, in order of n, of the hashed table's rows of the n-grams (n = 2 ..
    k + 1) ending at position k + t of ``full[b]`` (``full``: (B, k + T) ids, ``out``: (B, T, C)),
    buckets as in :func:`embed`: the floats of the module's own sum (``0 + row_2 + row_3 ...``)."""
    T = out.shape[1]
    k = full.shape[1] - T
    for b in range(full.shape[0]):
        for t in range(T):
            o = out[b, t]
            for i in range(o.shape[0]):
                o[i] = 0.0
            h = full[b, k + t] + 1
            for j in range(1, k + 1):
                h = h * _MULTIPLIER + full[b, k + t - j] + 1
                row = hashed[_bucket(h, j, buckets)]
                for i in range(o.shape[0]):
                    o[i] += row[i]


@njit(cache=True, nogil=True, error_model="numpy")
def head_softmax(h, w, bias, logits, out) -> None:
    """out = softmax(bias + h @ w) (w: (C, A), transposed): the maximum subtracted, e**x and the
    sum in float64 (the sum in symbol order), each probability rounded once to ``out``'s dtype."""
    affine(w, bias, h, logits)
    top = -np.inf
    for j in range(logits.shape[0]):
        top = max(top, logits[j])
    e = np.empty(logits.shape[0], np.float64)
    for j in range(logits.shape[0]):
        e[j] = exp_neg(logits[j] - top)
    total = 0.0
    for j in range(logits.shape[0]):
        total += e[j]
    for j in range(logits.shape[0]):
        out[j] = e[j] / total


@njit(cache=True, nogil=True, error_model="numpy")
def frequencies_rows(probs, precision, freq) -> None:
    """:func:`kolmo.lm.coding.tables.frequencies` of each row of ``probs`` (B, A) into ``freq`` (B, A)
    int64: the same float64 products and truncations, integer sums and first argmax, so the same
    integers."""
    m = np.int64(1) << precision
    a = probs.shape[1]
    scale = np.float64(m - a)
    for b in range(probs.shape[0]):
        p, f = probs[b], freq[b]
        total = np.int64(0)
        for i in range(a):
            v = np.float64(p[i]) * scale
            if not v >= 0.0:  # NaN or negative
                v = 0.0
            if v > scale:
                v = scale
            f[i] = np.int64(v) + 1
            total += f[i]
        if total > m:
            d = max(total - a, np.int64(1))
            total = 0
            for i in range(a):
                f[i] = 1 + (f[i] - 1) * (m - a) // d
                total += f[i]
        top = 0
        for i in range(1, a):
            if f[i] > f[top]:
                top = i
        f[top] += m - total


@njit(cache=True, nogil=True, error_model="numpy")
def scratch_step(token, n, recent, buckets, tok, pos, hashed, mats, vecs, eps, keys, values, scale, work, x, hidden,
                 logits, probs) -> None:
    """One coding step of the scratch model: :func:`embed`, :func:`transformer_step` (the final
    hidden state into ``hidden``) and :func:`head_softmax` with the head, the last of ``mats``
    and ``vecs`` (the next byte's distribution into ``probs``), in one call."""
    embed(tok, pos, hashed, token, n, recent, buckets, x)
    transformer_step(x, n, mats, vecs, eps, keys, values, scale, work, hidden)
    head_softmax(hidden, mats[len(mats) - 1], vecs[len(vecs) - 1], logits, probs)


@njit(cache=True, nogil=True, error_model="numpy")
def mix_rows(probs, weights, out) -> None:
    """out = sum_k weights[k] probs[k] (probs: (K, A)): each product rounded once, the sum taken
    in the order k = 0, 1, ... (the floats of numpy's product and ``add.accumulate``)."""
    w = weights[0]
    for a in range(out.shape[0]):
        out[a] = probs[0, a] * w
    for k in range(1, probs.shape[0]):
        w = weights[k]
        row = probs[k]
        for a in range(out.shape[0]):
            out[a] = out[a] + row[a] * w


def work_size(width: int, context: int) -> int:
    """Length of :func:`transformer_step`'s scratch space."""
    return 9 * width + context
