"""The exceptions and warnings that kolmo raises.

``TypeError`` and ``ValueError`` are used for wrong arguments; everything that is kolmo's own
failure (a stream that cannot be decoded exactly, a model that does not match a stream) derives
from :class:`KolmoError`.
"""


class KolmoError(Exception):
    """Base class of kolmo's own failures."""


class CorruptStreamError(KolmoError, ValueError):
    """A compressed stream is truncated, corrupted, or was not written by kolmo.

    Raised instead of returning bytes that might differ from what was compressed.
    """


class StreamMismatchError(KolmoError, ValueError):
    """A stream was written by another compressor, configuration or model than the one decoding it."""


class ModelUnavailableError(KolmoError, RuntimeError):
    """A language model (or the package that ships it) cannot be found or loaded."""


class KolmoWarning(UserWarning):
    """Base class of kolmo's warnings."""


class WindowWarning(KolmoWarning):
    """The inputs exceed what the compressor can see at once, so C(XY) cannot fully reuse X."""
