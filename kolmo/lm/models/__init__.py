"""Models: what predicts the next token.

Loading (the bundled GGUF, Hugging Face names and folders), a model's identity, exact byte
tokens, the one frozen pretrained model, the learners that fine-tune it, and the scratch byte
transformer with its compiled steps. May import: ``kolmo.lm.machine``, ``kolmo.lm.kernels`` and
kolmo's base modules (errors, cache, progress); never scoring, coding or mixing.
"""
