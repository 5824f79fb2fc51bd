"""Scoring: the batched log-likelihood core, token ids in, ideal code lengths (bits) out.

Windows over long sequences, batches under a token budget, the output heads and the
:class:`~kolmo.lm.scoring.loglik.Scorer`. It knows nothing of compressors or of coding. May
import: ``kolmo.lm.models`` and the loose bottom modules.
"""
