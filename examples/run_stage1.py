# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""
Stage 1 of CLIP-FlanT5 (feature alignment) with TRL's SFTTrainer: a fresh CLIP-FlanT5 is assembled from a FlanT5
checkpoint and a CLIP checkpoint, and only the projector trains, on image captions; template `t5_plain_split_text`
(or `t5_plain`), images resized without padding ("square").

The output folder is a complete CLIP-FlanT5 (loadable with AutoModelForImageTextToText) that also holds the projector
alone (`projector.safetensors` + `projector_config.json`); stage 2 starts from either.

`--data_path` is required. A small run on CPU without data: `python -m transformers_clipflant5.testing.demo --stage 1`
writes synthetic captions and tiny random base checkpoints and prints the command that trains on them.

```bash
# The paper's recipe (global batch 256, lr 1e-2, cosine, 3% warmup, bf16, gradient checkpointing) on 8 GPUs:
accelerate launch --config_file examples/accelerate/deepspeed_zero2.yaml examples/run_stage1.py \
    --config examples/configs/stage1.yaml \
    --text_model google/flan-t5-xxl --vision_model openai/clip-vit-large-patch14-336 \
    --data_path playground/data/LLaVA-Pretrain/blip_laion_cc_sbu_558k.json \
    --image_folder playground/data/LLaVA-Pretrain/images \
    --output_dir outputs/clip-flant5-xxl-stage-1
```
"""

# First: its log filters and its OpenMP wait policy act only on what is imported after it (docs/shared_machines.md).
import transformers_clipflant5  # noqa: F401, I001

# isort: split
import transformers
from trl import ModelConfig, SFTConfig

from transformers_clipflant5.training.arguments import CLIPFlanT5ScriptArguments
from transformers_clipflant5.training.model import load_model, set_trainable_parameters
from transformers_clipflant5.training.stages import (
    load_stage_data,
    parse_stage_arguments,
    stage_card_info,
    stage_collator,
)
from transformers_clipflant5.training.trainer import CLIPFlanT5SFTTrainer


STAGE = 1


def main(script_args: CLIPFlanT5ScriptArguments, training_args: SFTConfig, model_args: ModelConfig) -> None:
    if model_args.use_peft:
        raise ValueError("Stage 1 trains the projector only; LoRA (--use_peft) applies to stage 2.")
    # Data first (template, rows and images checked in seconds), then the base models (minutes for FlanT5-XXL)
    train_dataset, report = load_stage_data(STAGE, script_args)
    model, processor, sources = load_model(
        STAGE, script_args, model_args.model_name_or_path, model_args.dtype, model_args.attn_implementation
    )
    trainable = set_trainable_parameters(model, STAGE)

    # Images are opened batch by batch in the collator
    trainer = CLIPFlanT5SFTTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        data_collator=stage_collator(STAGE, script_args, training_args, processor),
        processing_class=processor,
        group_by_modality_length=script_args.group_by_modality_length,
        save_projector=True,
        card_info=stage_card_info(STAGE, sources, script_args, training_args, len(train_dataset)),
    )
    trainer.accelerator.print(f"Training data: {report.summary()}")
    trainer.accelerator.print(f"Trainable: {', '.join(trainable)}.")

    # Train, save, push
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    trainer.accelerator.print(f"Model and projector saved to {training_args.output_dir}.")
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.data_path)
    trainer.end()


if __name__ == "__main__":
    transformers.logging.set_verbosity_warning()
    main(*parse_stage_arguments())
