"""The prequential (online) engine: code a block, learn from it, code the next.

A sequence is ``[start] + tokens``; its tokens are split into blocks of ``B = block_tokens``
(block ``k`` is positions ``s_k = 1 + kB .. e_k = min(1 + (k+1)B, L)``). With weights
``theta_0`` (the pretrained or seeded model) the code length is

    C(x) = sum_k  sum_{p = s_k}^{e_k - 1}  -log2 p(x_p | x_{<p}; theta_k)        (bits)

    theta_{k+1} = theta_k after ``steps`` optimizer steps on the loss
                  (1 / |block k|) sum_{p in block k} -ln p(x_p | x_{<p}; theta)

(Rissanen's predictive MDL; the prequential code of Blier and Ollivier 2018). With
``train_on="window"`` the loss averages over every token of the block's windows instead (the
context before the block is replayed; the forward pass is the same). With ``replay = R`` each
block's steps are followed by R more, the r-th on an earlier block ``j`` drawn uniformly from
``0 .. k-1`` by a generator seeded with ``(seed, k, r)`` (experience replay: the decoder has
every earlier block, and the draw depends on nothing else, so runs continued from a snapshot
draw the same blocks); each costs one more forward and backward pass. Every token is
coded *before* the model learns from it, so a decoder that replays the same updates decodes it:
C(x) is a real code length and already pays for the parameters, with no separate model cost.
No training follows the last block (it would change nothing that is coded).

Context: block k is scored, and trained on, in the windows of
:func:`kolmo.lm.scoring.loglik.plan_windows` ``(e_k, s_k, window, stride)``: with ``B <= stride`` that is one
window of ``window`` tokens ending at ``e_k``, so each token sees at least ``window - B`` tokens.

Two modes of :meth:`Prequential.run`, both with the same training:

``ideal``   block bits from one full forward pass per window (the forward pass of the first
            optimizer step, so scoring is free when ``steps >= 1``): ``Compressor.bits``.
``code``    ``on_block(k, s, e)`` codes (or decodes into ``seq``) block k before the model learns
            from it: :class:`kolmo.lm.coding.coder.Coder` runs the decoder's step schedule there.

Learners (:class:`HFLearner` here, :class:`kolmo.lm.models.scratch.ScratchLearner`) provide ``start``
(the id read at position 0), ``alphabet`` (coding symbols), ``device``, ``max_positions``,
``module`` (the torch model being trained), ``named_trainable()`` and ``initial`` (theta_0 by
name), ``encode``/``decode`` (bytes <-> ids), ``tensor(ids)`` (model input), ``hidden(ids, past,
use_cache)`` (hidden states and KV cache), ``target_logp(h, targets)`` (ln p, differentiable) and
``step_probs(h)`` (the coder's distributions, on the device) and ``new_cache(kind, length)`` (the
step models of :mod:`kolmo.lm.coding.schedule`); optionally ``sparse_names`` (parameters with sparse
gradients, updated lazily).

Determinism: no dropout, no sampling, initialisation from a seeded generator. torch's CPU kernels
give the same floats for the same shapes and the same thread count; another thread count,
device, kernel level, library version or a CUDA kernel with atomics may not: streams record what
the floats depended on (:mod:`kolmo.lm.machine`), and decoding raises instead of returning wrong bytes.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..scoring.batching import plan_windows

LN2 = math.log(2.0)
OPTIMIZERS = ("adam", "adamw", "sgd")
TRAIN_ON = ("block", "window")


def make_optimizers(name: str, dense, sparse, *, lr: float, weight_decay: float,
                    sparse_lr: Optional[float] = None) -> list:
    """The optimizer ``name`` on the dense parameters, and on parameters with sparse gradients
    (hashed embedding tables) its lazy form: SparseAdam for adam/adamw (no weight decay), SGD,
    with learning rate ``sparse_lr`` (default ``lr``)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[name]
    out = [cls(dense, lr=lr, weight_decay=weight_decay)] if dense else []
    if sparse:
        slr = lr if sparse_lr is None else sparse_lr
        out.append(torch.optim.SGD(sparse, lr=slr) if name == "sgd" else torch.optim.SparseAdam(sparse, lr=slr))
    return out


def clip_grad_norm(params, max_norm: float) -> None:
    """Scale all gradients by min(1, max_norm / (||g|| + 1e-6)), ||g|| the global L2 norm (sparse too)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    norms = [(g.coalesce().values() if g.is_sparse else g).norm() for g in grads]
    scale = max_norm / (float(torch.stack(norms).norm()) + 1e-6)
    if scale < 1.0:
        for g in grads:
            g.mul_(scale)


class Prequential:
    """Runs the block schedule of the module docstring on one learner."""

    def __init__(self, learner, *, block_tokens: int, window: int, stride: int, steps: int, lr: float,
                 optimizer: str, grad_clip: Optional[float], weight_decay: float, train_on: str = "block",
                 sparse_lr: Optional[float] = None, replay: int = 0, seed: int = 0):
        self.learner = learner
        self.replay, self.seed = replay, seed
        self.sparse_lr = sparse_lr
        self.block_tokens, self.window, self.stride, self.steps = block_tokens, window, stride, steps
        self.lr, self.optimizer_name = lr, optimizer
        self.grad_clip, self.weight_decay = grad_clip, weight_decay
        if train_on not in TRAIN_ON:
            raise ValueError(f"train_on must be one of {', '.join(TRAIN_ON)}, got {train_on!r}")
        self.train_on = train_on
        named = learner.named_trainable()
        sparse = getattr(learner, "sparse_names", ())
        self.params = [p for _, p in named]
        self.dense = [p for n, p in named if n not in sparse]
        self.sparse = [p for n, p in named if n in sparse]
        self.opts: list = []

    @property
    def coding_model(self):
        """The step model the engine codes with (:mod:`kolmo.lm.coding.schedule`): the learner itself."""
        return self.learner

    # -- state ------------------------------------------------------------------------------------
    @torch.no_grad()
    def reset(self) -> None:
        """theta_0 and a fresh optimizer: the last one's state zeroed in place where there is one
        (the state of an optimizer that has not stepped yet: the same floats as a new optimizer,
        without allocating its moments again; for the scratch model's hashed table that is 1 GB
        of memory to fault in, about a second per run)."""
        for n, p in self.learner.named_trainable():
            p.copy_(self.learner.initial[n])  # (a 0-d initial value fills the whole parameter)
        if not self.opts:
            self.opts = make_optimizers(self.optimizer_name, self.dense, self.sparse, lr=self.lr,
                                        weight_decay=self.weight_decay, sparse_lr=self.sparse_lr)
            return
        for o in self.opts:
            for state in o.state.values():
                for key, value in state.items():
                    if isinstance(value, torch.Tensor):
                        value.zero_()
                    elif isinstance(value, (int, float)) and not isinstance(value, bool):
                        state[key] = type(value)(0)
                    else:
                        raise TypeError(f"cannot reset optimizer state {key!r} of type {type(value).__name__}")

    def snapshot(self) -> Dict:
        return {"params": [p.detach().clone() for p in self.params],
                "opts": [copy.deepcopy(o.state_dict()) for o in self.opts]}

    @torch.no_grad()
    def restore(self, snap: Dict) -> None:
        for p, saved in zip(self.params, snap["params"]):
            p.copy_(saved)
        for o, saved in zip(self.opts, snap["opts"]):
            o.load_state_dict(copy.deepcopy(saved))

    def blocks(self, n_tokens: int) -> List[Tuple[int, int]]:
        """(s_k, e_k) sequence positions of each block of an ``n_tokens``-token input."""
        B = self.block_tokens
        return [(1 + i, 1 + min(i + B, n_tokens)) for i in range(0, n_tokens, B)]

    # -- the schedule -----------------------------------------------------------------------------
    def run(self, seq: np.ndarray, *, first_block: int = 0, stop_block: Optional[int] = None, mode: str = "ideal",
            on_block: Optional[Callable[[int, int, int], None]] = None, bar=None, per_token: bool = False) -> list:
        """Bits of blocks ``first_block .. stop_block - 1`` (default: to the end) of ``seq``
        ([start] + tokens), learning after each but the input's last; with ``stop_block`` given the
        run is to be continued, so it learns after every block.

        ``mode`` is ``ideal`` or ``code`` (module docstring; in ``code`` mode ``on_block(k, s, e)``
        codes block k and the bits returned are 0). ``per_token``: each block's bits as an array
        of its tokens' bits. The engine continues from its current state (call :meth:`reset` first).
        """
        if mode not in ("ideal", "code"):
            raise ValueError(f"mode must be 'ideal' or 'code', got {mode!r}")
        blocks = self.blocks(len(seq) - 1)
        out: list = []
        for k in range(first_block, len(blocks) if stop_block is None else stop_block):
            s, e = blocks[k]
            learn = self.steps > 0 and (stop_block is not None or k + 1 < len(blocks))
            if mode == "ideal":
                bits = self._train(seq, s, e, score=True) if learn else self._score(seq, s, e)
            else:
                on_block(k, s, e)
                bits = np.zeros(e - s)
                if learn:
                    self._train(seq, s, e, score=False)
            out.append(bits if per_token else float(bits.sum()))
            if bar is not None:
                bar.update(e - s)
        return out

    def _zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def windows(self, s: int, e: int):
        """The windows (begin, split, end) that score, code and train block [s, e)."""
        return plan_windows(e, s, self.window, self.stride)

    @torch.inference_mode()
    def _score(self, seq: np.ndarray, s: int, e: int, net=None, hidden: Optional[list] = None) -> np.ndarray:
        """Bits of each token of block [s, e) under the current weights (float64); ``net``: another
        model on the same windows (default the learner); ``hidden`` (a list) receives the last
        hidden states that predicted them, (e - s, d) in order."""
        net = net or self.learner
        parts = []
        for b, split, end in self.windows(s, e):
            h, _ = net.advance(net.inputs(seq[b:end])[None])
            rows = h[0, split - b - 1:end - b - 1]
            parts.append(-net.target_logp(rows, seq[split:end]).double().cpu().numpy())
            if hidden is not None:
                hidden.append(rows)
        return np.concatenate(parts) / LN2

    def _train(self, seq: np.ndarray, s: int, e: int, *, score: bool) -> Optional[np.ndarray]:
        """``steps`` optimizer steps on block [s, e), then ``replay`` steps on earlier blocks (module
        docstring); with ``score``, the bits of the block's tokens under the weights before the
        first step (from that step's forward pass)."""
        parts = []
        for step in range(self.steps):
            self._step(seq, s, e, parts if step == 0 and score else None)
        k = (s - 1) // self.block_tokens
        for r in range(self.replay if k > 0 else 0):
            j = int(np.random.default_rng([self.seed, k, r]).integers(0, k))
            self._step(seq, 1 + j * self.block_tokens, 1 + (j + 1) * self.block_tokens, None)
        self._zero_grad()
        return np.concatenate(parts) if score else None

    def _step(self, seq: np.ndarray, s: int, e: int, parts: Optional[list]) -> None:
        """One optimizer step on block [s, e)'s loss; ``parts`` (a list) receives the block's bits
        under the weights before the step."""
        net = self.learner
        windows = self.windows(s, e)
        n_train = sum(end - (split if self.train_on == "block" else b + 1) for b, split, end in windows)
        self._zero_grad()
        for b, split, end in windows:
            h, _ = net.advance(net.inputs(seq[b:end])[None])
            first = split if self.train_on == "block" else b + 1  # the targets trained on
            logp = net.target_logp(h[0, first - b - 1:end - b - 1], seq[first:end])
            if parts is not None:
                parts.append(-logp[split - first:].detach().double().cpu().numpy() / LN2)
            (-logp.sum() / n_train).backward()
        if self.grad_clip:
            clip_grad_norm(self.params, self.grad_clip)
        for o in self.opts:
            o.step()


def common_blocks(a: Sequence[int], b: Sequence[int], block_tokens: int) -> int:
    """Number of whole leading blocks that token sequences ``a`` and ``b`` share exactly."""
    n = min(len(a), len(b))
    diff = np.nonzero(np.asarray(a[:n]) != np.asarray(b[:n]))[0]
    same = int(diff[0]) if len(diff) else n
    return same // block_tokens


def shared_runs(engine: Prequential, seqs: Sequence[np.ndarray], bar=None,
                on_run: Optional[Callable[[Any, List[float]], None]] = None) -> List[float]:
    """Ideal code lengths of sequences ([start] + tokens) that may share a prefix: the engine
    trains through their common whole blocks once, then continues each from a copy of the weights
    and optimizer state (the same floats as a run from the start). ``on_run(key, block_bits)``, if
    given, is called after each run of the engine (key ``"head"`` for the shared blocks, then each
    sequence's index), while the engine still holds what the run left (e.g. the mixture's
    per-expert columns)."""
    shared = min(common_blocks(seqs[0][1:], s[1:], engine.block_tokens) for s in seqs) if len(seqs) > 1 else 0
    engine.reset()
    head = engine.run(seqs[0], stop_block=shared, bar=bar) if shared else []
    if shared and on_run is not None:
        on_run("head", head)
    snap = engine.snapshot() if shared and len(seqs) > 1 else None
    out = []
    for j, seq in enumerate(seqs):
        if j:
            engine.restore(snap) if snap is not None else engine.reset()
        tail = engine.run(seq, first_block=shared, bar=bar)
        if on_run is not None:
            on_run(j, tail)
        out.append(float(sum(head + tail)))
    return out
