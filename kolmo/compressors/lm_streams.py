"""What the two language-model compressors share: their streams' checks and the retired formats.

Both write the language models' payload (:mod:`kolmo.framing.lm_payload`) in kolmo's container.
A stream that fails this compressor's configuration hash is refused up front, naming what it is:
a retired payload format (format 0 by the configuration it was written with, later ones by the
payload's version bits), or a default stream from hardware whose default precision is the other
one, or one of ``lm`` coded without the match model (each with the option that decodes it).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from .. import framing
from ..errors import StreamMismatchError
from ..inputs import as_bytes
from .base import Compressor


class LMStreams(Compressor):
    """Base of ``lm`` and ``lm-online``: :meth:`unpack` checks a blob before its payload is decoded."""

    #: the description of payload format 0, whose streams have ``format0_config()``'s hash
    RETIRED = "payload format 0"
    #: a boundary every text model has seen, between the documents of a dataset (kolmo.inputs.as_dataset)
    document_separator = b"\n\n"
    #: the floats depend on torch's CPU thread count: matrix tasks set it and key the cache by it
    float_threads = True
    _options: Dict[str, Any]  # the options as given (set by the subclass's __init__)

    def resolved_options(self) -> Dict[str, Any]:
        """Options that choose this configuration on any machine (those resolved by the hardware)."""
        return {}

    def __getstate__(self) -> Dict[str, Any]:
        """The options, with those resolved by this machine's hardware as resolved here: a copy in
        another process (a worker) computes the same floats, never with weights in the pickle."""
        return {**self._options, **self.resolved_options()}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def format0_config(self) -> Dict[str, Any]:
        """The configuration payload format 0 wrote for these settings."""
        raise NotImplementedError

    def other_hardware_default(self) -> Optional[Tuple[Dict[str, Any], str]]:
        """(the stream configuration these options give where the hardware's default precision is
        the other one, the error that names the option decoding such a stream), or None."""
        return None

    def other_configs(self) -> List[Tuple[Dict[str, Any], str]]:
        """Stream configurations that other options of this compressor give, each with the error that
        names the option decoding such a stream: :meth:`unpack` tells a stream of one of them."""
        other = self.other_hardware_default()
        return [other] if other else []

    def unpack(self, blob: Any) -> framing.Frame:
        blob = as_bytes(blob, name="blob")
        try:
            return framing.unpack(blob, name=self.name, config=self.stream_config,
                                  retired={self.RETIRED: self.format0_config},
                                  retired_payloads=framing.RETIRED_PAYLOADS)
        except StreamMismatchError as exc:
            for config, message in self.other_configs():
                if framing.config_hash_of(blob) == framing.config_hash(self.name, config):
                    raise StreamMismatchError(message) from exc
            raise
