"""kolmo: how much does dataset X tell me about dataset Y?

Compress X, Y and their concatenation with a good compressor; the saving
C(X) + C(Y) - C(XY) estimates the algorithmic mutual information, C(XY) - C(X) the conditional
complexity K(Y|X). All quantities are in bits.

    >>> import kolmo
    >>> r = kolmo.joint_gap(b"abracadabra" * 20, b"abracadabra" * 20, compressor="zstd")
    >>> r.gap > 0
    True

Importing kolmo is light: torch and transformers load only when the ``lm`` compressor is used.
"""

from ._version import __version__
from .analysis import Clustering, NCDClassifier, cluster
from .cache import ResultsCache
from .compressors.base import CodecCompressor, CodeParts, Compressor
from .errors import (CorruptStreamError, KolmoError, KolmoWarning, ModelUnavailableError,
                     StreamMismatchError, WindowWarning)
from .explain import Explanation, explain
from .inputs import as_bytes
from .matrices import DistanceMatrix, load_matrix, matrix
from .measures import JointGapResult, conditional_bits, joint_gap, ncd
from .registry import get_compressor, list_compressors, register
from .significance import GapTestResult, PairingTestResult, gap_test, pairing_test

__all__ = [
    "Clustering", "CodecCompressor", "CodeParts", "Compressor", "CorruptStreamError", "DistanceMatrix",
    "Explanation", "GapTestResult", "JointGapResult", "KolmoError", "KolmoWarning", "ModelUnavailableError",
    "NCDClassifier", "PairingTestResult", "ResultsCache", "StreamMismatchError", "WindowWarning",
    "__version__", "as_bytes", "cluster", "conditional_bits", "explain", "gap_test", "get_compressor",
    "joint_gap", "list_compressors", "load_matrix", "matrix", "pairing_test", "ncd", "register",
]
