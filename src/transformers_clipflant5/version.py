# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""The package's version: read by `pyproject.toml` at build time and written into model cards."""

__version__ = "0.1.0"
