"""The scratch model's one-token coding steps on a CPU: :class:`StepCache` and its buffers.

:class:`kolmo.lm.models.scratch.ScratchLearner` prefills a window with the module's forward, then codes
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
    """A learner's numpy buffers for the coding steps: the KV cache and scratch space, made once
    and reused by every window's :class:`StepCache` (held by one cache at a time), and numpy
    views of the parameters (the layout of :func:`kolmo.lm.kernels.transformer_step`), taken again
    for each window: the kernels read the weights in place, as the optimizers leave them."""

    def __init__(self, model: nn.Module):
        from ..kernels import scratch_step, work_size
        self.kernel = scratch_step
        L, C = model.pos.weight.shape
        nl, H = len(model.blocks), model.blocks[0].heads
        self.key = self.key_of(model)
        self.owner: Optional[StepCache] = None
        dt = _numpy(model.pos.weight).dtype
        self.eps = np.zeros((nl + 1, 2), np.float64)
        self.keys, self.values = np.zeros((nl, H, C // H, L), dt), np.zeros((nl, H, L, C // H), dt)
        self.scale = (C // H) ** -0.5
        self.work, self.x = np.empty(work_size(C, L), dt), np.empty(C, dt)
        self.logits = np.empty(model.head.bias.shape[0], dt)
        self.last: Optional[tuple] = None  # the last step's (hidden state, probabilities)

    @staticmethod
    def key_of(model: nn.Module) -> tuple:
        """What the workspace's buffers depend on: the parameters' dtype and shapes."""
        p = model.pos.weight
        return p.dtype, tuple(p.shape), len(model.blocks), model.blocks[0].heads, model.head.bias.shape[0]

    def load(self, model: nn.Module, kvs) -> None:
        """A new window: the prefill's keys and values (1, H, n, D) per layer, and views of the
        weights now."""
        for i, (k, v) in enumerate(kvs):
            n = k.shape[2]
            self.keys[i, :, :, :n] = _numpy(k[0]).transpose(0, 2, 1)
            self.values[i, :, :n] = _numpy(v[0])
        mats, vecs = [], []
        for i, b in enumerate(model.blocks):
            mats += [_numpy(b.qkv.weight_t), _numpy(b.proj.weight_t), _numpy(b.fc.weight_t), _numpy(b.out.weight_t)]
            vecs += [_numpy(p) for p in (b.qkv.bias, b.proj.bias, b.fc.bias, b.out.bias, b.ln1.weight, b.ln1.bias,
                                         b.ln2.weight, b.ln2.bias)]
            self.eps[i] = b.ln1.eps, b.ln2.eps
        self.eps[-1, 0] = model.ln_f.eps
        self.mats = tuple(mats + [_numpy(model.head.weight_t)])
        self.vecs = tuple(vecs + [_numpy(model.ln_f.weight), _numpy(model.ln_f.bias), _numpy(model.head.bias)])
        self.tok, self.pos = _numpy(model.tok.weight), _numpy(model.pos.weight)
        self.hashed = _numpy(model.hashed.weight) if model.hashed is not None else self.x[None]

    def probs_of(self, h: torch.Tensor) -> Optional[np.ndarray]:
        """The distribution the last step computed with its hidden state, where ``h`` (1, width) is
        that state (a view of its whole storage, which this workspace keeps alive, so no other
        tensor can have its address); else None. The steps' states are inference tensors, which
        cannot be changed in place outside inference mode (nor are they, by the schedule)."""
        last = self.last
        if last is None or h.data_ptr() != last[0].data_ptr() or h.shape != (1, last[0].shape[0]):
            return None
        return last[1]


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
        w.kernel(token, n, self.recent, m.buckets, w.tok, w.pos, w.hashed, w.mats, w.vecs, w.eps, w.keys, w.values,
                 w.scale, w.work, w.x, hidden, w.logits, probs[0])
        self.length = n + 1
        h = torch.from_numpy(hidden)
        w.last = (h, probs)
        return h.view(1, 1, -1)
