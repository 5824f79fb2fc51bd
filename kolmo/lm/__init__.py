"""Language-model machinery: model loading, byte-exact tokenization, the log-likelihood core and
the arithmetic coder. Imports torch and transformers; ``import kolmo`` never imports this package.
"""
