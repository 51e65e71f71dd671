# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Scoring with CLIP-FlanT5: [`VQAScore`] (`vqascore`), its question and answer templates and their checks
(`prompts`), and where it runs (`settings`: device, dtype, batch size)."""
