"""What every benchmark prints beside its figures: versions, device, machine."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any, Dict


def environment(device: str = "cpu") -> Dict[str, Any]:
    from kolmo._version import __version__
    env: Dict[str, Any] = {"kolmo": __version__, "python": sys.version.split()[0],
                           "platform": platform.platform(), "cpu_count": os.cpu_count(), "device": device}
    for mod in ("numpy", "zstandard", "torch", "transformers", "constriction", "numba"):
        try:
            env[mod] = __import__(mod).__version__
        except Exception:  # not installed: say so rather than fail
            env[mod] = None
    try:
        import torch
        env["torch_threads"] = torch.get_num_threads()
        env["cpu_kernels"] = torch.backends.cpu.get_cpu_capability()
        from kolmo.lm.machine import native_bf16
        env["native_bf16"] = native_bf16(torch.device("cuda" if device.startswith("cuda") else "cpu"))
        if device.startswith("cuda"):
            env["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return env


def default_text(n_bytes: int) -> bytes:
    """English text that needs no download: the corpus if present, else Python's own docs."""
    from pathlib import Path
    corpus = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "canterbury-mixed" / "alice29.txt"
    if corpus.is_file():
        return corpus.read_bytes()[:n_bytes]
    import pydoc
    import textwrap
    text = "\n\n".join(pydoc.getdoc(m) for m in (textwrap, pydoc, os, sys, platform))
    return text.encode()[:n_bytes]
