"""The scratch model's one-token coding steps on a CPU: :class:`StepCache` and its buffers.

:class:`kolmo.lm.scratch.ScratchLearner` prefills a window with the module's forward, then codes
one byte per step on a :class:`StepCache`: one compiled call per step
(:func:`kolmo.lm.kernels.scratch_step`) on numpy buffers held by a :class:`Workspace`.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import nn

STEP_DTYPES = (torch.float32, torch.float64)  #: dtypes of the compiled coding steps (others: the forward)
#: how a coding step computes its floats, in lm-online's stream configuration (a stream made with
#: other steps is refused, not decoded wrong): the compiled steps of :mod:`kolmo.lm.kernels`
COMPILED_STEPS = "kolmo.lm.kernels/1"


def step_kind(device: torch.device, dtype: torch.dtype) -> str:
    """The coding steps' kind on ``device`` in ``dtype``: :data:`COMPILED_STEPS` for one sequence
    on a CPU in a dtype of :data:`STEP_DTYPES`, else ``"forward"`` (the module's own forward)."""
    return COMPILED_STEPS if device.type == "cpu" and dtype in STEP_DTYPES else "forward"


class Workspace:
    """A learner's numpy buffers for the coding steps (:func:`kolmo.lm.kernels.transformer_step`'s
    layout: weights transposed, the KV cache), made once and reused by every window's
    :class:`StepCache`; held by one cache at a time. The embedding tables are read in place
    (numpy views of the parameters, which the optimizers update in place). The transposed weights
    are remade when a parameter changed: its storage or its version counter (every in-place
    update, an optimizer's or ``copy_``, advances it), so the encoder's verification run, on the
    same weights, reuses them."""

    def __init__(self, model: nn.Module):
        from .kernels import scratch_step, work_size
        self.kernel = scratch_step
        L, C = model.pos.weight.shape
        nl, H = len(model.blocks), model.blocks[0].heads
        self.key = self.key_of(model)
        self.owner: Optional[StepCache] = None
        dt = _numpy(model.pos.weight).dtype
        self.wqkv, self.wproj = np.empty((nl, C, 3 * C), dt), np.empty((nl, C, C), dt)
        self.wfc, self.wout = np.empty((nl, C, 4 * C), dt), np.empty((nl, 4 * C, C), dt)
        self.bias, self.norms = np.empty((nl, 9 * C), dt), np.empty((nl + 1, 2, 2, C), dt)
        self.eps = np.zeros((nl + 1, 2), np.float64)
        self.keys, self.values = np.zeros((nl, H, C // H, L), dt), np.zeros((nl, H, L, C // H), dt)
        self.scale = (C // H) ** -0.5
        self.work, self.x, self.out = np.empty(work_size(C, L), dt), np.empty(C, dt), np.empty(C, dt)
        self.tok, self.pos = _numpy(model.tok.weight), _numpy(model.pos.weight)
        self.hashed = _numpy(model.hashed.weight) if model.hashed is not None else np.zeros((1, C), dt)
        A = model.head.out_features  # the coding alphabet
        self.head_w, self.head_b, self.logits = np.empty((C, A), dt), np.empty(A, dt), np.empty(A, dt)
        self.dense = [p for n, p in model.named_parameters() if n.startswith(("blocks.", "ln_f.", "head."))]
        self.loaded: Optional[list] = None  # the dense parameters' (storage, version) when transposed
        self.last: Optional[tuple] = None  # the last step's (hidden state, probabilities)

    @staticmethod
    def key_of(model: nn.Module) -> tuple:
        """What the workspace's views depend on: the embedding tables' storage."""
        t, p, h = model.tok.weight, model.pos.weight, model.hashed
        return t.data_ptr(), p.data_ptr(), h.weight.data_ptr() if h is not None else 0, p.dtype

    def load(self, model: nn.Module, kvs) -> None:
        """A new window: the prefill's keys and values (1, H, n, D) per layer, and the weights if
        they changed since they were last arranged."""
        for i, (k, v) in enumerate(kvs):
            n = k.shape[2]
            self.keys[i, :, :, :n] = _numpy(k[0]).transpose(0, 2, 1)
            self.values[i, :, :n] = _numpy(v[0])
        state = _state(self.dense)
        if state == self.loaded:
            return
        C = self.x.shape[0]
        for i, block in enumerate(model.blocks):
            for w, lin in ((self.wqkv, block.qkv), (self.wproj, block.proj), (self.wfc, block.fc),
                           (self.wout, block.out)):
                w[i] = _numpy(lin.weight).T
            b = self.bias[i]
            b[:3 * C], b[3 * C:4 * C] = _numpy(block.qkv.bias), _numpy(block.proj.bias)
            b[4 * C:8 * C], b[8 * C:] = _numpy(block.fc.bias), _numpy(block.out.bias)
            for j, ln in enumerate((block.ln1, block.ln2)):
                self.norms[i, j] = _numpy(ln.weight), _numpy(ln.bias)
                self.eps[i, j] = ln.eps
        self.norms[-1, 0] = _numpy(model.ln_f.weight), _numpy(model.ln_f.bias)
        self.eps[-1, 0] = model.ln_f.eps
        self.head_w[:], self.head_b[:] = _numpy(model.head.weight).T, _numpy(model.head.bias)
        self.loaded = state

    def probs_of(self, h: torch.Tensor) -> Optional[np.ndarray]:
        """The distribution the last step computed with its hidden state, where ``h`` (1, width) is
        that state (a view of its whole storage, which this workspace keeps alive, so no other
        tensor can have its address); else None. The steps' states are inference tensors, which
        cannot be changed in place outside inference mode (nor are they, by the schedule)."""
        last = self.last
        if last is None or h.data_ptr() != last[0].data_ptr() or h.shape != (1, last[0].shape[0]):
            return None
        return last[1]


def _state(params) -> list:
    """Where parameters live and how often they were changed in place."""
    return [(p.data_ptr(), p._version) for p in params]


def _numpy(t: torch.Tensor) -> np.ndarray:
    """A CPU tensor's numpy view (no copy)."""
    return t.detach().numpy()


class StepCache:
    """A window's KV cache for the one-token coding steps of one sequence (:meth:`step`): the
    positions held, the last ``ngram - 1`` ids, and the learner's :class:`Workspace`, loaded with
    the prefill's keys and values and the weights of the window (the schedule never learns within
    a window). A later window's cache takes the workspace over; stepping this one then raises."""

    def __init__(self, work: Workspace, model: nn.Module, kvs, recent: Optional[torch.Tensor]):
        self.work, self.model, self.length = work, model, kvs[0][0].shape[2]
        work.owner = self
        work.load(model, kvs)
        # the last ngram - 1 ids, oldest first
        self.recent = recent[0].numpy().copy() if recent is not None else np.zeros(0, dtype=np.int64)

    def as_past(self):
        """This cache as :meth:`ByteTransformer.forward` takes it (copies of the keys and values)."""
        n, w = self.length, self.work
        kvs = [(torch.from_numpy(np.ascontiguousarray(w.keys[i, :, :, :n].transpose(0, 2, 1)))[None],
                torch.from_numpy(w.values[i, :, :n].copy())[None]) for i in range(w.keys.shape[0])]
        return kvs, (torch.from_numpy(self.recent.copy())[None] if self.model.hashed is not None else None)

    def step(self, token: int) -> torch.Tensor:
        """The hidden state (1, 1, width) after ``token`` at the next position, which it adds to the
        cache: ``ByteTransformer.forward``'s to float rounding, in one compiled call that also
        computes the next byte's distribution (:meth:`ScratchLearner.step_probs` returns it)."""
        w, m, n = self.work, self.model, self.length
        if w.owner is not self:
            raise RuntimeError("this KV cache's buffers were taken over by a later window's cache")
        if n >= m.context:
            raise ValueError(f"{n + 1} positions exceed the scratch model's context of {m.context}")
        if not 0 <= token < w.tok.shape[0]:  # the compiled step reads the tables unchecked
            raise ValueError(f"the scratch model reads ids 0 .. {w.tok.shape[0] - 1}, got {token}")
        hidden, probs = np.empty(w.x.shape[0], w.x.dtype), np.empty((1, w.logits.shape[0]), w.x.dtype)
        w.kernel(token, n, self.recent, m.buckets, w.tok, w.pos, w.hashed, w.wqkv, w.wproj, w.wfc, w.wout,
                     w.bias, w.norms, w.eps, w.keys, w.values, w.scale, w.work, w.x, hidden, w.head_w, w.head_b,
                     w.logits, probs[0])
        self.length = n + 1
        h = torch.from_numpy(hidden)
        w.last = (h, probs)
        return h.view(1, 1, -1)
