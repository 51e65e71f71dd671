# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Stage-1 and stage-2 training of CLIP-FlanT5 with TRL, one concern per module:

- `data`: reading, flattening and validating LLaVA JSON into a `datasets.Dataset`;
- `templates`: the original prompt templates (`t5_plain`, `t5_plain_split_text`, `t5_v1`);
- `collator`: rows -> seq2seq batches, images opened batch by batch;
- `sampler`: the modality-grouped, length-grouped sampler;
- `trainer`: [`CLIPFlanT5SFTTrainer`], TRL's SFTTrainer made right for an encoder-decoder;
- `model`: assembling the model from base checkpoints, loading a stage's model, trainable parameters, LoRA;
- `arguments`: the scripts' data and model options and the stage defaults.

The example scripts `examples/run_stage1.py` and `examples/run_stage2.py` are built from these pieces.
"""
