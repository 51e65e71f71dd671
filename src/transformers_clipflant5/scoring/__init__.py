# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Scoring with CLIP-FlanT5: [`VQAScore`] (`vqascore`) and the [`ScoringPlan`] every way of scoring runs (`plan`), the
question and answer templates and the checks of texts (`prompts`), where a scorer runs (`devices`), the forward passes
(`scoring_forward`, the fused T5 of `t5_inference`), images read ahead (`image_reading`), differentiable
preprocessing for rewards (`pixel_preprocessing`), quantization (`precision`) and generation (`generation`)."""
