# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Kept for its importers: the tiny builders live in `transformers_clipflant5.testing.tiny`.

An external conformance harness imports `transformers_clipflant5.tiny.build_tiny_model` and `build_tiny_tokenizer`,
so this module re-exports the public names of `testing.tiny`. Nothing of the runtime library imports either.
"""

from .testing.tiny import (
    COLORS,
    POSITIONS,
    SHAPES,
    build_tiny_model,
    build_tiny_tokenizer,
    flant5_config,
    tiny_config,
    tiny_corpus,
    tiny_processor,
    train_tiny_sentencepiece,
)


__all__ = [
    "COLORS",
    "POSITIONS",
    "SHAPES",
    "build_tiny_model",
    "build_tiny_tokenizer",
    "flant5_config",
    "tiny_config",
    "tiny_corpus",
    "tiny_processor",
    "train_tiny_sentencepiece",
]
