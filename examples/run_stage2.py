# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""
Stage 2 of CLIP-FlanT5 (VQA fine-tuning) with TRL's SFTTrainer: the projector and all of FlanT5 train, the CLIP
vision tower stays frozen; template `t5_v1`, images padded to square.

With no arguments it runs the built-in demo: it writes a small synthetic dataset (coloured shapes; captions and
yes/no questions about colour, shape and position), builds a tiny CLIP-FlanT5 from scratch, trains it on CPU in a few
minutes, reloads the saved folder and prints the held-out VQAScore discrimination (ROC-AUC of matching vs. mismatched
captions on images it never saw) before and after training.

```bash
python examples/run_stage2.py

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

import time

# First: its log filters and its OpenMP wait policy act only on what is imported after it (docs/shared_machines.md).
import transformers_clipflant5  # noqa: F401, I001


# isort: split
import transformers
from trl import ModelConfig, SFTConfig

from transformers_clipflant5 import VQAScore
from transformers_clipflant5.testing.demo import DEMO_ARGS, build_demo_model, prepare_demo
from transformers_clipflant5.testing.synthetic import evaluate_discrimination
from transformers_clipflant5.training.arguments import CLIPFlanT5ScriptArguments, stage_do_pad
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


def main(script_args: CLIPFlanT5ScriptArguments, training_args: SFTConfig, model_args: ModelConfig, demo: bool):
    start = time.perf_counter()
    if demo:
        demo_paths = prepare_demo(script_args, training_args.output_dir, stage=STAGE, seed=training_args.seed)
    # Data first: validated up front (template, malformed rows, missing images) in seconds, before the base models load
    train_dataset, report = load_stage_data(STAGE, script_args)

    # Model and processor
    if demo:
        model, processor = build_demo_model(training_args.seed, stage_do_pad(STAGE, script_args.do_pad))
        sources = {
            "text_model": "tiny random FlanT5 (built in code)",
            "vision_model": "tiny random CLIP (built in code)",
        }
    else:
        model, processor, sources = load_model(
            STAGE, script_args, model_args.model_name_or_path, model_args.dtype, model_args.attn_implementation
        )
    peft_config = default_peft_config(model_args, STAGE)
    set_trainable_parameters(model, STAGE)

    # Images are opened batch by batch in the collator
    collator = stage_collator(STAGE, script_args, training_args, processor)
    trainer = CLIPFlanT5SFTTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        data_collator=collator,
        processing_class=processor,
        peft_config=peft_config,
        group_by_modality_length=script_args.group_by_modality_length,
        card_info=stage_card_info(STAGE, sources, script_args, training_args, len(train_dataset)),
    )
    trainer.accelerator.print(f"Training data: {report.summary()}")
    # Counted on the trainer's model: with --use_peft, LoRA has replaced FlanT5's weights by adapters by now.
    trainer.accelerator.print(describe_trainable(trainer.model))

    if demo:
        before = evaluate_discrimination(VQAScore(model, processor), demo_paths["eval"], demo_paths["image_folder"])
        print(f"Held-out ROC-AUC before training: {before['roc_auc']:.3f}")

    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    if peft_config is not None:
        merge_lora_and_save(trainer, training_args.output_dir)
    trainer.accelerator.print(f"Model saved to {training_args.output_dir}.")

    if demo:
        # Score with the saved folder, reloaded, so the demo checks what a user gets.
        scorer = VQAScore.from_pretrained(training_args.output_dir, dtype="float32", device="cpu")
        after = evaluate_discrimination(scorer, demo_paths["eval"], demo_paths["image_folder"])
        trainer.card_info["results"] = {"held-out ROC-AUC (synthetic shapes)": round(after["roc_auc"], 4)}
        trainer.create_model_card()
        print(
            f"Held-out ROC-AUC after training: {after['roc_auc']:.3f} (matching captions score "
            f"{after['mean_score_match']:.3f} on average, mismatched ones {after['mean_score_mismatch']:.3f}; "
            f"{after['pairs']} images never seen in training). Total time {time.perf_counter() - start:.0f} s."
        )

    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.data_path)
    trainer.end()


if __name__ == "__main__":
    transformers.logging.set_verbosity_warning()
    main(*parse_stage_arguments(demo_args=DEMO_ARGS))
