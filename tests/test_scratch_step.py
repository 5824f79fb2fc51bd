"""The scratch model's coding steps (kolmo.lm.models.scratch.StepCache) and the one-stream fast paths of
the tables (kolmo.lm.coding.tables) and the rANS coder (kolmo.lm.coding.rans).

The steps take their own code path (one compiled call per step on numpy buffers, the weights
transposed): it must give the batched forward's hidden states to float rounding (stated tolerance below), the
same floats bit for bit every time it runs, and leave the training path as it was. The fast paths
of one stream must give exactly what the vectorised paths give.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from kolmo.errors import CorruptStreamError  # noqa: E402
from kolmo.lm.coding.tables import HostTables, frequencies, frequencies_host  # noqa: E402
from kolmo.lm.coding.rans import BatchDecoder, BatchEncoder  # noqa: E402
from kolmo.lm.models.scratch import START, ScratchLearner, StepCache  # noqa: E402

#: steps against the batched forward: hidden states (after the final LayerNorm, of order 1) agree
#: to this absolute and relative tolerance (measured: below 1e-6)
TOL = 1e-5
TEXT = b"In the beginning God created the heaven and the earth. And the earth was without form, and void."


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def learner(ngram=6, seed=3, random_table=True, **kw):
    opts = dict(layers=2, width=32, heads=4, context=64, ngram=ngram, buckets=257, seed=seed)
    lr = ScratchLearner(**{**opts, **kw}, device=torch.device("cpu"), dtype=torch.float32)
    if ngram and random_table:  # random rows make a wrong bucket visible (the table starts at zero)
        with torch.no_grad():
            lr.module.hashed.weight.normal_(generator=torch.Generator().manual_seed(seed))
    return lr


def ids(data=TEXT[:60]):
    return np.array([START] + list(data), dtype=np.int64)


def run_window(lr, seq, split):
    """The schedule's calls: a prefill of seq[:split] (its last position's state only), then one
    step per position; hidden states (1, len(seq) - split + 1, width) and the probabilities."""
    with torch.inference_mode():
        h, cache = lr.advance(lr.inputs(seq[None, :split]), None, True)
        hs, probs = [h], [lr.step_probs(h[:, -1])]
        for p in range(split, len(seq)):
            h, cache = lr.advance(lr.inputs(seq[None, p:p + 1]), cache, True)
            assert isinstance(cache, StepCache)
            hs.append(h)
            probs.append(lr.step_probs(h[:, -1]))
    return torch.cat(hs, dim=1), torch.cat(probs)


@pytest.mark.parametrize("ngram", [0, 2, 6])
@pytest.mark.parametrize("split", [1, 7, 40])
def test_steps_match_the_batched_forward(ngram, split):
    lr, seq = learner(ngram), ids()
    got, probs = run_window(lr, seq, split)
    with torch.inference_mode():
        full, _ = lr.advance(lr.inputs(seq[None]))
        want = torch.softmax(lr.module.head(full[0]), dim=-1)
    torch.testing.assert_close(got, full[:, split - 1:], atol=TOL, rtol=TOL)
    torch.testing.assert_close(probs, want[split - 1:], atol=TOL, rtol=TOL)


def test_steps_are_bit_identical_every_run():
    lr, seq = learner(), ids()
    a, pa = run_window(lr, seq, 9)
    run_window(lr, ids(TEXT[5:50]), 3)  # another window in between: nothing of it may stay behind
    b, pb = run_window(lr, seq, 9)
    assert torch.equal(a, b) and torch.equal(pa, pb)
    c, pc = run_window(learner(), seq, 9)  # a fresh learner with the same weights
    assert torch.equal(a, c) and torch.equal(pa, pc)


def test_a_later_window_takes_the_buffers_over():
    lr, seq = learner(), ids()
    with torch.inference_mode():
        _, old = lr.advance(lr.inputs(seq[None, :5]), None, True)
        _, new = lr.advance(lr.inputs(seq[None, :8]), None, True)
        lr.advance(lr.inputs(seq[None, 8:9]), new, True)
        with pytest.raises(RuntimeError, match="later window"):
            lr.advance(lr.inputs(seq[None, 5:6]), old, True)


def test_steps_stop_at_the_context():
    lr = learner(context=12)
    seq = ids(TEXT[:12])
    with torch.inference_mode():
        _, cache = lr.advance(lr.inputs(seq[None, :10]), None, True)
        for p in range(10, 12):
            _, cache = lr.advance(lr.inputs(seq[None, p:p + 1]), cache, True)
        with pytest.raises(ValueError, match="context of 12"):
            lr.advance(lr.inputs(seq[None, 12:13]), cache, True)


def test_a_longer_input_continues_a_step_cache():
    lr, seq = learner(), ids()
    with torch.inference_mode():
        full, _ = lr.advance(lr.inputs(seq[None]))
        _, cache = lr.advance(lr.inputs(seq[None, :10]), None, True)
        _, cache = lr.advance(lr.inputs(seq[None, 10:11]), cache, True)
        h, cache = lr.advance(lr.inputs(seq[None, 11:30]), cache, True)  # T > 1 on a StepCache
        h2, _ = lr.advance(lr.inputs(seq[None, 30:31]), cache, True)
    assert h.shape == (1, 1, full.shape[2])  # coding one sequence: the last position's state only
    torch.testing.assert_close(h, full[:, 29:30], atol=TOL, rtol=TOL)
    torch.testing.assert_close(h2, full[:, 30:31], atol=TOL, rtol=TOL)


def test_the_last_only_forward_is_the_forward():
    """A prefill's last-position forward (the last block for one query) against the full forward:
    the same state to float rounding and the same keys and values for every position."""
    lr, seq = learner(), ids()
    with torch.no_grad():
        full, (kv_full, _) = lr.module(lr.inputs(seq[None]), use_cache=True)
        last, (kv_last, _) = lr.module(lr.inputs(seq[None]), use_cache=True, last_only=True)
    assert last.shape == (1, 1, full.shape[2])
    torch.testing.assert_close(last, full[:, -1:], atol=TOL, rtol=TOL)
    for (k1, v1), (k2, v2) in zip(kv_full, kv_last):
        assert torch.equal(k1, k2) and torch.equal(v1, v2)


def test_training_keeps_the_batched_path():
    lr, seq = learner(), ids()
    h, cache = lr.advance(lr.inputs(seq[None]), None, True)  # gradients on: the module's own cache
    assert not isinstance(cache, StepCache) and isinstance(cache[0], list)
    lr.target_logp(h[0, :-1], seq[1:]).sum().backward()
    grads = {n: p.grad for n, p in lr.module.named_parameters()}
    assert all(g is not None for g in grads.values())
    assert grads["hashed.weight"].is_sparse


@pytest.mark.parametrize("ngram,buckets", [(2, 257), (6, 1 << 16), (9, 4099)])
def test_compiled_ngram_sums_equal_the_module_sums(ngram, buckets):
    """The prefill's compiled n-gram sums (no gradients) against the module's own (gradients on):
    the same buckets (wrapping int64 hashes of long n-grams) and the same additions, bit for bit."""
    lr = learner(ngram=ngram, buckets=buckets, width=16)
    rng = np.random.default_rng(ngram)
    ids = torch.from_numpy(rng.integers(0, 257, (3, 40)))
    for recent in (None, torch.from_numpy(rng.integers(0, 257, (3, ngram - 1)))):
        want, want_recent = lr.module._ngrams(ids, recent)  # gradients on: torch's path
        with torch.no_grad():
            got, got_recent = lr.module._ngrams(ids, recent)
        assert torch.equal(got, want.detach()) and torch.equal(got_recent, want_recent)


def test_the_step_hashes_as_the_module():
    """A step's embedding (kernels.embed) with zero token and position tables is the sum of its
    n-grams' rows: the module's, bit for bit, and the step's id joins the recent ids."""
    from kolmo.lm.kernels import embed
    lr = learner(ngram=7, buckets=1009, width=16)
    table = lr.module.hashed.weight.detach()
    rng = np.random.default_rng(5)
    seq = torch.from_numpy(rng.integers(0, 257, (1, 30)))
    want, _ = lr.module._ngrams(seq, None)
    zeros = np.zeros((257, 16), np.float32)
    for t in (0, 3, 6, 29):
        recent = np.concatenate([np.full(6, START), seq[0, :t].numpy()])[-6:]
        x = np.empty(16, np.float32)
        embed(zeros, zeros, table.numpy(), int(seq[0, t]), 0, recent, 1009, x)
        np.testing.assert_array_equal(x, want[0, t].detach().numpy())
        assert recent[-1] == seq[0, t]


# -- one stream: tables and coder ------------------------------------------------------------------

def odd_rows(a):
    gen = torch.Generator().manual_seed(a)
    p = torch.softmax(torch.randn(8, a, generator=gen) * 5, dim=-1)
    p[1] *= 1.01  # sums to more than 1: the integer rescaling
    p[2, 0] = float("nan")
    p[3, -1] = float("inf")
    p[4, 0] = float("-inf")
    p[5, -1] = -0.25
    p[6] = float("nan")
    p[7, :] = 2.0
    return p


@pytest.mark.parametrize("a", [1, 2, 256, 300])
def test_one_row_tables_equal_the_device_tables(a):
    for probs in (odd_rows(a), odd_rows(a).double()):
        for row in probs:
            want = frequencies(row[None], 24).numpy()
            got = frequencies_host(row[None].numpy(), 24)
            np.testing.assert_array_equal(got, want)
            one, many, found = HostTables(got), HostTables(np.repeat(got, 2, axis=0)), HostTables(got)
            found.find_host(np.array([0]))  # the cumulative counts made: interval_host reads them
            for s in {0, a // 2, a - 1}:
                want = np.stack(many.interval_host(np.array([s, s])))[:, :1]
                np.testing.assert_array_equal(np.stack(one.interval_host(np.array([s]))), want)
                np.testing.assert_array_equal(np.stack(found.interval_host(np.array([s]))), want)


def test_one_row_interval_rejects_bad_symbols():
    t = HostTables(frequencies_host(odd_rows(4)[:1].numpy(), 24))
    for bad in (-1, 4):
        with pytest.raises(ValueError, match="symbols must be in"):
            t.interval_host(np.array([bad]))


def one_stream_steps(n=300, seed=1):
    rng = np.random.default_rng(seed)
    p = torch.softmax(torch.from_numpy(rng.normal(size=(n, 40)) * 3), dim=-1)
    freq = frequencies_host(p.numpy(), 24)
    sym = np.array([rng.choice(40, p=f / f.sum()) for f in freq])
    ends = np.cumsum(freq, axis=1)
    return freq, ends, sym


def test_one_stream_writes_stream_0_of_the_vectorised_coder():
    freq, ends, sym = one_stream_steps()
    one, two = BatchEncoder(1), BatchEncoder(2)
    for f, e, s in zip(freq, ends, sym):
        one.push([e[s] - f[s]], [f[s]])
        two.push([e[s] - f[s]] * 2, [f[s]] * 2)  # two equal streams: every word twice
    w1, w2 = one.finish(), two.finish()
    np.testing.assert_array_equal(w1, np.concatenate([w2[:2], w2[4::2]]))
    assert w1.dtype == np.uint32


def decode_one(words, freq, ends):
    dec = BatchDecoder(words, 1)
    out = []
    for f, e in zip(freq, ends):
        s = int(np.searchsorted(e, dec.slots()[0], side="right"))
        dec.advance([e[s] - f[s]], [f[s]])
        out.append(s)
    dec.check_end()
    return out


def test_one_stream_decodes_and_checks_like_the_vectorised_coder():
    freq, ends, sym = one_stream_steps()
    enc = BatchEncoder(1)
    for f, e, s in zip(freq, ends, sym):
        enc.push(np.array([e[s] - f[s]]), np.array([f[s]]))
    words = enc.finish()
    assert decode_one(words, freq, ends) == sym.tolist()
    for cut in (0, 1, 2, words.size // 2, words.size - 1):
        with pytest.raises(CorruptStreamError):
            decode_one(words[:cut], freq, ends)
    with pytest.raises(CorruptStreamError, match="left"):
        decode_one(np.concatenate([words, [7]]).astype(np.uint32), freq, ends)
    dec = BatchDecoder(words, 1)
    slot = int(dec.slots()[0])
    with pytest.raises(ValueError, match="stream 0: the interval"):
        dec.advance([slot + 1], [1])  # an interval without the slot
    with pytest.raises(ValueError, match="not inside"):
        BatchEncoder(1).push([(1 << 24) - 1], [2])
    with pytest.raises(TypeError, match="integer"):
        BatchEncoder(1).push([0.0], [1.0])


# -- the compiled steps on other CPU targets -------------------------------------------------------

_DIGEST = """
import hashlib, numpy as np
from kolmo.lm.kernels import scratch_step, work_size
rng = np.random.default_rng(7)
C, L, nl, H, A, B = 32, 16, 2, 4, 256, 97
f = lambda *s: (rng.standard_normal(s) * 0.5).astype(np.float32)
tok, pos, hashed = f(257, C), f(L, C), f(B, C)
mats = tuple(m for _ in range(nl) for m in (f(C, 3 * C), f(C, C), f(C, 4 * C), f(4 * C, C))) + (f(C, A),)
vecs = tuple(v for _ in range(nl) for v in (f(3 * C), f(C), f(4 * C), f(C), 1 + f(C), f(C), 1 + f(C), f(C)))
vecs += (1 + f(C), f(C), f(A))
eps = np.full((nl + 1, 2), 1e-5)
keys, values = np.zeros((nl, H, C // H, L), np.float32), np.zeros((nl, H, L, C // H), np.float32)
recent = np.array([256, 256, 3], dtype=np.int64)
work, x, logits = np.empty(work_size(C, L), np.float32), np.empty(C, np.float32), np.empty(A, np.float32)
out = hashlib.sha256()
for n, token in enumerate(rng.integers(0, 256, L)):
    hidden, probs = np.empty(C, np.float32), np.empty(A, np.float32)
    scratch_step(int(token), n, recent, B, tok, pos, hashed, mats, vecs, eps, keys, values, 0.35, work, x, hidden,
                 logits, probs)
    out.update(hidden.tobytes() + probs.tobytes())
print(out.hexdigest())
"""


def test_the_compiled_steps_give_the_same_floats_on_another_cpu_target(tmp_path):
    """The step compiled for this CPU (its widest vectors) and for a generic x86-64 (SSE2, no FMA)
    give the same floats bit for bit: no sum depends on the vector width (the kernels' claim)."""
    import os
    import subprocess
    import sys
    runs = []
    for cpu in (None, "generic"):
        env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / (cpu or "host"))}
        if cpu:
            env["NUMBA_CPU_NAME"] = cpu
        done = subprocess.run([sys.executable, "-c", _DIGEST], env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        runs.append(done.stdout.strip())
    assert len(runs[0]) == 64 and runs[0] == runs[1]


def test_diverged_weights_give_nan_not_a_crash():
    """Weights that diverged to NaN (too high a learning rate) make NaN probabilities, as torch
    does, and the tables still code every symbol: the compiled steps never index out of a table."""
    lr, seq = learner(), ids()
    with torch.no_grad():
        lr.module.blocks[0].fc.weight_t.fill_(float("nan"))
    _, probs = run_window(lr, seq, 9)
    assert torch.isnan(probs).all()
    freq = frequencies_host(probs[-1:].numpy(), 24)
    assert freq.min() >= 1 and freq.sum() == 1 << 24
