"""Language-model machinery, in layers; each imports only the layers below it (tests/test_house.py).

    kernels.py, machine.py   loose, at the bottom: numba kernels of the CPU coding path; what a
                             CPU's floats depend on
    models/     loading, identity, exact byte tokens, the one frozen model, the learners and the
                scratch model
    scoring/    windows, batches and heads: the log-likelihood core (ideal code lengths)
    coding/     the step-model and learner contracts, the decoder's schedule, integer tables,
                rANS, the coder with verification and safe mode, the prequential engine
    mixing/     n-grams, the match model, the neural cache, the mixer, the mixture and its step
    settings.py loose, at the top: lm-online's options turned into an engine

Byte layouts live in :mod:`kolmo.framing`. Imports torch and transformers; ``import kolmo`` never
imports this package.
"""
