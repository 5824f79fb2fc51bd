"""Checking options: one rule for every compressor and setting, one error per mistake.

* :func:`check_options`: a misspelt option is a TypeError that names the compressor, lists its
  options and suggests the closest (``compressor 'zstd' has no option 'levle' (did you mean
  'level'?)``), for a factory's keyword parameters.
* :func:`check_int` and :func:`check_float`: a value of the wrong type is a TypeError, one out of
  range a ValueError; both say what was expected and what arrived.
"""

from __future__ import annotations

import difflib
import inspect
import math
from typing import Any, Callable, Dict, List, Optional, Sequence


def accepted_options(factory: Callable[..., Any]) -> Optional[List[str]]:
    """The keyword options ``factory`` takes, or None when it takes any (``**kwargs``)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # a builtin or C callable without a signature: cannot tell
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def check_options(name: str, factory: Callable[..., Any], options: Dict[str, Any], also: Sequence[str] = ()) -> None:
    """Raise a TypeError naming the compressor, its options and the closest match for a misspelt one
    (``also``: options the compressor takes besides ``factory``'s)."""
    known = accepted_options(factory)
    if known is None:
        return
    known = list(known) + [a for a in also if a not in known]
    unknown = [k for k in options if k not in known]
    if not unknown:
        return
    key = unknown[0]
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    takes = f"its options are: {', '.join(known)}" if known else "it takes no options"
    raise TypeError(f"compressor {name!r} has no option {key!r}{hint}; {takes}")


def check_int(name: str, value: Any, least: int = 1, most: Optional[int] = None, *, none: bool = False,
              what: str = "") -> Optional[int]:
    """``value`` as an int if it is one (numpy's too, never a bool) in [least, most]; None passes
    where ``none``. ``what`` says what the number counts, for the message."""
    if value is None and none:
        return None
    import numpy as np
    span = ({1: "a positive int", 0: "a non-negative int"}.get(least, f"an int >= {least}") if most is None
            else f"an int in [{least}, {most}]")
    span += f" ({what})" if what else ""
    span += " or None" if none else ""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be {span}, got {type(value).__name__} {value!r}")
    if value < least or (most is not None and value > most):
        raise ValueError(f"{name} must be {span}, got {value}")
    return int(value)


def check_float(name: str, value: Any, *, zero: bool = False, none: bool = False) -> Optional[float]:
    """``value`` as a float if it is a finite number > 0 (>= 0 where ``zero``); None passes where ``none``."""
    if value is None and none:
        return None
    span = f"a {'non-negative' if zero else 'positive'} finite number" + (" or None" if none else "")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be {span}, got {type(value).__name__} {value!r}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        raise ValueError(f"{name} must be {span}, got {value!r}")
    return float(value)
