"""Coding: probabilities to a real stream, for any step model and schedule.

The step-model and learner contracts (:mod:`.protocols`), the decoder's schedule, integer
frequency tables, the interleaved rANS coder, the coder with verification and safe mode, and the
prequential engine (code a block, learn, code the next). Stream bytes are written by
:mod:`kolmo.framing`. May import: ``kolmo.lm.models``, ``kolmo.lm.scoring`` and the loose bottom
modules; never mixing.
"""
