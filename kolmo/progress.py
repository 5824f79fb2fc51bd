"""Progress bars: one switch for everything kolmo starts underneath a call.

A user gives ``progress=`` to the call they make (``kolmo.matrix``, ``joint_gap``, the ``lm``
compressor); whatever that call starts underneath (the LM core's scoring bar, the coder's bars,
transformers' weight-loading bars) follows it:

* ``progress=False``: nothing kolmo starts prints a bar, at any depth;
* ``progress=True`` on a job that has its own bar (a matrix): that one bar, and none of the
  per-row bars underneath;
* ``progress=None`` (the default where offered): a bar only for long work.

The switch is a :class:`contextvars.ContextVar`, so it follows the call in this thread (and in
asyncio tasks); process pools run only classical codecs, which show no bars.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import Iterator, Optional

#: False while an outer call has silenced (or taken over) the progress display
_ALLOWED: ContextVar[bool] = ContextVar("kolmo_progress_allowed", default=True)


def allowed() -> bool:
    """Whether bars may be shown here (False under :func:`silenced`)."""
    return _ALLOWED.get()


def wanted(progress: Optional[bool], total: int = 0, min_total: int = 0) -> bool:
    """Show a bar for ``total`` units? ``progress`` True/False decides, None means 'if long'."""
    if not allowed() or progress is False or total <= 0:
        return False
    return bool(progress) or total >= min_total


@contextlib.contextmanager
def silenced(active: bool = True) -> Iterator[None]:
    """Within this block no bar that kolmo starts is shown (a no-op when ``active`` is False)."""
    if not active:
        yield
        return
    token = _ALLOWED.set(False)
    try:
        yield
    finally:
        _ALLOWED.reset(token)


def bar(total: int, desc: str, unit: str, progress: Optional[bool] = None, min_total: int = 0):
    """A tqdm bar (disabled unless :func:`wanted`); use it as a context manager or close it."""
    from tqdm import tqdm  # not tqdm.auto: its notebook widget warns where ipywidgets is missing
    return tqdm(total=total, desc=desc, unit=unit, leave=False,
                disable=not wanted(progress, total, min_total))


@contextlib.contextmanager
def library_bars(show: bool) -> Iterator[None]:
    """transformers' and huggingface_hub's own bars (loading weights, writing shards) only if ``show``."""
    if show:
        yield
        return
    restore = []
    try:
        from transformers.utils import logging as tlog
        if tlog.is_progress_bar_enabled():
            tlog.disable_progress_bar()
            restore.append(tlog.enable_progress_bar)
    except ImportError:  # pragma: no cover - transformers is present whenever a model loads
        pass
    try:
        from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
        if not are_progress_bars_disabled():
            disable_progress_bars()
            restore.append(enable_progress_bars)
    except ImportError:  # pragma: no cover
        pass
    try:
        # transformers' GGUF reader runs a tqdm bar of its own that no switch reaches
        import functools

        import transformers.modeling_gguf_pytorch_utils as gguf_utils
        bar_cls = gguf_utils.tqdm
        gguf_utils.tqdm = functools.partial(bar_cls, disable=True)
        restore.append(lambda: setattr(gguf_utils, "tqdm", bar_cls))
    except (ImportError, AttributeError):  # pragma: no cover - another transformers layout
        pass
    try:
        yield
    finally:
        for undo in restore:
            undo()
