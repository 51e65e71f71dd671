# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""
The training demo (what `bash scripts/demo.sh` runs): stage 2 of CLIP-FlanT5 on CPU in a few minutes, with no data
and no download. It writes a small synthetic dataset (coloured shapes; captions and yes/no questions about colour,
shape and position), builds a tiny CLIP-FlanT5 from scratch, trains it as `run_stage2.py` does, reloads the saved
folder and prints the held-out VQAScore discrimination (ROC-AUC of matching vs. mismatched captions on images it never
saw) before and after training. The output folder also holds `training_loss.png` and `heldout_roc.png`, shown in its
model card.

```bash
python examples/train_demo.py                                          # into outputs/clip-flant5-demo
python examples/train_demo.py --seed 1 --output_dir outputs/demo-seed-1  # any stage-2 option overrides the demo's
```
"""

import time

# First: its log filters and its OpenMP wait policy act only on what is imported after it (docs/shared_machines.md).
import transformers_clipflant5  # noqa: F401, I001


# isort: split
import transformers
from trl import SFTConfig

from transformers_clipflant5 import VQAScore
from transformers_clipflant5.testing.demo import (
    DEMO_SOURCES,
    DemoArguments,
    build_demo_model,
    parse_demo_arguments,
    prepare_demo,
    write_demo_figures,
)
from transformers_clipflant5.testing.synthetic import evaluate_discrimination
from transformers_clipflant5.training.arguments import CLIPFlanT5ScriptArguments, stage_do_pad
from transformers_clipflant5.training.model import set_trainable_parameters
from transformers_clipflant5.training.stages import load_stage_data, stage_card_info, stage_collator
from transformers_clipflant5.training.trainer import CLIPFlanT5SFTTrainer


STAGE = 2


def main(demo_args: DemoArguments, script_args: CLIPFlanT5ScriptArguments, training_args: SFTConfig) -> None:
    start = time.perf_counter()
    output_dir, seed = training_args.output_dir, training_args.seed
    paths = prepare_demo(script_args, output_dir, STAGE, seed, demo_args.demo_train_images, demo_args.demo_eval_images)
    train_dataset, report = load_stage_data(STAGE, script_args)
    model, processor = build_demo_model(seed, stage_do_pad(STAGE, script_args.do_pad))
    set_trainable_parameters(model, STAGE)
    trainer = CLIPFlanT5SFTTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        data_collator=stage_collator(STAGE, script_args, training_args, processor),
        processing_class=processor,
        group_by_modality_length=script_args.group_by_modality_length,
        card_info=stage_card_info(STAGE, DEMO_SOURCES, script_args, training_args, len(train_dataset)),
    )
    print(f"Training data: {report.summary()}")

    before = evaluate_discrimination(VQAScore(model, processor), paths["eval"], paths["image_folder"], progress=True)
    print(f"Held-out ROC-AUC before training: {before['roc_auc']:.3f}")

    trainer.train()
    trainer.save_model(output_dir)

    # Score with the saved folder, reloaded: what a user gets.
    scorer = VQAScore.from_pretrained(output_dir, dtype="float32", device="cpu")
    after = evaluate_discrimination(scorer, paths["eval"], paths["image_folder"], progress=True)
    figures = write_demo_figures(output_dir, trainer.state.log_history, before, after)
    trainer.card_info.update(
        results={"held-out ROC-AUC (synthetic shapes)": round(after["roc_auc"], 4)}, figures=figures
    )
    trainer.create_model_card()
    print(
        f"Held-out ROC-AUC after training: {after['roc_auc']:.3f} (matching captions score "
        f"{after['mean_score_match']:.3f} on average, mismatched ones {after['mean_score_mismatch']:.3f}; "
        f"{after['pairs']} images never seen in training). Total time {time.perf_counter() - start:.0f} s."
    )
    print(f"Model, model card and pictures ({', '.join(figures.values())}) saved to {output_dir}.")
    trainer.end()


if __name__ == "__main__":
    transformers.logging.set_verbosity_warning()
    main(*parse_demo_arguments())
