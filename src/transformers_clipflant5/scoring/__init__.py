# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Scoring with CLIP-FlanT5: [`VQAScore`] (`vqascore`) and the checks of its prompts and texts (`prompts`)."""
