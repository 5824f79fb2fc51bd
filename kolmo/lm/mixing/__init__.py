"""Mixing: several predictors of the same tokens mixed per token, learning as they code.

Token n-grams, the match model, the neural cache, the fixed-share mixer, the mixture (a
prequential engine) and its step model. May import every layer below: models, scoring, coding.
"""
