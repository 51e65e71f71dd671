# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""
Stage 2 of CLIP-FlanT5 (VQA fine-tuning) with TRL's SFTTrainer: the projector and all of FlanT5 train, the CLIP
vision tower stays frozen; template `t5_v1`, images padded to square.

`--data_path` is required. To try it without data, the demo (`examples/train_demo.py`) trains a tiny model the same
way on synthetic shapes, on CPU in a few minutes.

```bash
# The paper's recipe (global batch 96, lr 2e-5, cosine, 3% warmup, bf16, gradient checkpointing) on 8 GPUs, from a
# stage-1 output of ours:
accelerate launch --config_file examples/accelerate/deepspeed_zero3.yaml examples/run_stage2.py \
    --config examples/configs/stage2.yaml \
    --model_name_or_path outputs/clip-flant5-xxl-stage-1 \
    --data_path playground/data/llava_v1_5_mix665k.json --flatten \
    --image_folder playground/data \
    --output_dir outputs/clip-flant5-xxl

# ... or from the base checkpoints and an original stage-1 projector:
deepspeed examples/run_stage2.py --deepspeed examples/deepspeed/zero3.json \
    --config examples/configs/stage2.yaml \
    --text_model google/flan-t5-xxl --vision_model openai/clip-vit-large-patch14-336 \
    --pretrained_projector zhiqiulin/clip-flant5-xxl-stage-1 \
    --data_path playground/data/llava_v1_5_mix665k_flattened_multi_turn.json --image_folder playground/data \
    --output_dir outputs/clip-flant5-xxl

# LoRA on FlanT5 (the projector trains in full), one GPU:
python examples/run_stage2.py --config examples/configs/stage2.yaml --use_peft --lora_r 64 --lora_alpha 16 \
    --per_device_train_batch_size 12 --gradient_accumulation_steps 8 --learning_rate 2e-4 \
    --model_name_or_path outputs/clip-flant5-xl-stage-1 --data_path ... --image_folder ... --output_dir ...
```
"""

# First: its log filters and its OpenMP wait policy act only on what is imported after it (docs/shared_machines.md).
import transformers_clipflant5  # noqa: F401, I001


# isort: split
import transformers
from trl import ModelConfig, SFTConfig

from transformers_clipflant5.training.arguments import CLIPFlanT5ScriptArguments
from transformers_clipflant5.training.model import (
    default_peft_config,
    describe_trainable,
    load_model,
    merge_lora_and_save,
    set_trainable_parameters,
)
from transformers_clipflant5.training.stages import (
    load_stage_data,
    parse_stage_arguments,
    stage_card_info,
    stage_collator,
)
from transformers_clipflant5.training.trainer import CLIPFlanT5SFTTrainer


STAGE = 2


def main(script_args: CLIPFlanT5ScriptArguments, training_args: SFTConfig, model_args: ModelConfig) -> None:
    # Data first: validated up front (template, malformed rows, missing images) in seconds, before the base models load
    train_dataset, report = load_stage_data(STAGE, script_args)

    # Model and processor
    model, processor, sources = load_model(
        STAGE, script_args, model_args.model_name_or_path, model_args.dtype, model_args.attn_implementation
    )
    peft_config = default_peft_config(model_args, STAGE)
    set_trainable_parameters(model, STAGE)

    # Images are opened batch by batch in the collator
    trainer = CLIPFlanT5SFTTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        data_collator=stage_collator(STAGE, script_args, training_args, processor),
        processing_class=processor,
        peft_config=peft_config,
        group_by_modality_length=script_args.group_by_modality_length,
        card_info=stage_card_info(STAGE, sources, script_args, training_args, len(train_dataset)),
    )
    trainer.accelerator.print(f"Training data: {report.summary()}")
    # Counted on the trainer's model: with --use_peft, LoRA has replaced FlanT5's weights by adapters by now.
    trainer.accelerator.print(describe_trainable(trainer.model))

    # Train, save, push
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    if peft_config is not None:
        merge_lora_and_save(trainer, training_args.output_dir)
    trainer.accelerator.print(f"Model saved to {training_args.output_dir}.")
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.data_path)
    trainer.end()


if __name__ == "__main__":
    transformers.logging.set_verbosity_warning()
    main(*parse_stage_arguments())
