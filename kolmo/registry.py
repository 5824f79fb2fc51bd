"""The compressor registry: names to factories, built lazily.

    kolmo.list_compressors()                  # ['bz2', 'lm', 'lzma', 'ppmd', 'zlib', 'zstd']
    kolmo.get_compressor("zstd", level=3)     # a new ZstdCompressor
    kolmo.register("mine", MyCompressor)      # any callable returning a Compressor

A factory is a callable or a ``"module:attribute"`` string, imported on first use so that
``import kolmo`` never imports torch or transformers.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Dict, List, Union

from . import framing
from .compressors.base import Compressor
from .options import check_options

Factory = Union[str, Callable[..., Compressor]]

_FACTORIES: Dict[str, Factory] = {
    "zstd": "kolmo.compressors.zstd:ZstdCompressor",
    "lzma": "kolmo.compressors.lzma:LzmaCompressor",
    "zlib": "kolmo.compressors.zlib:ZlibCompressor",
    "bz2": "kolmo.compressors.bz2:Bz2Compressor",
    "ppmd": "kolmo.compressors.ppmd:PpmdCompressor",
    "lm": "kolmo.compressors.lm:LMCompressor",
    "lm-online": "kolmo.compressors.lm_online:OnlineLMCompressor",
}
for _name in _FACTORIES:
    framing.know_writer(_name)


def register(name: str, factory: Factory, *, overwrite: bool = False) -> None:
    """Register ``factory`` under ``name``; an existing name needs ``overwrite=True``."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"compressor name must be a non-empty str, got {name!r}")
    if not (callable(factory) or isinstance(factory, str)):
        raise TypeError(f"factory must be callable or a 'module:attribute' string, got {type(factory).__name__}")
    if name in _FACTORIES and not overwrite:
        raise ValueError(f"a compressor named {name!r} is already registered; pass overwrite=True to replace it")
    _FACTORIES[name] = factory
    framing.know_writer(name)


def list_compressors() -> List[str]:
    """Names of the registered compressors, sorted."""
    return sorted(_FACTORIES)


def get_compressor(name: str, **options: Any) -> Compressor:
    """A new compressor ``name`` built with ``options`` (e.g. ``level=3``, ``model="gpt2"``)."""
    if not isinstance(name, str):
        raise TypeError(f"compressor name must be a str, got {type(name).__name__}")
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise ValueError(f"unknown compressor {name!r}; known compressors: {', '.join(list_compressors())}") from None
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module), attr)
    check_options(name, factory, options)
    comp = factory(**options)
    if not isinstance(comp, Compressor):
        raise TypeError(f"factory for {name!r} returned {type(comp).__name__}, not a kolmo Compressor")
    return comp


def resolve(compressor: Union[str, Compressor], **options: Any) -> Compressor:
    """Accept a registry name (built with ``options``) or a ready Compressor instance."""
    if isinstance(compressor, Compressor):
        if options:
            raise TypeError(f"options {sorted(options)} only apply when the compressor is given by name; "
                            "build the instance with them instead")
        return compressor
    if isinstance(compressor, str):
        return get_compressor(compressor, **options)
    raise TypeError(f"compressor must be a registered name ({', '.join(list_compressors())}) "
                    f"or a kolmo Compressor, got {type(compressor).__name__}")
