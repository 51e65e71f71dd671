"""One SGD step of CLIPFlanT5SFTTrainer on every rank of a `torchrun` launch (CPU, gloo), for test_multi_rank.py.

Writes to OUTPUT: `initial.pt` and `final.pt` (the trainable parameters before and after the step, from rank 0) and
`rows-<rank>.json` (the ids of the rows of each batch each rank's collator made, the step's first). Usage:
    torchrun --standalone --nproc_per_node 2 tests/training/multi_rank_step.py DATA IMAGE_FOLDER OUTPUT
"""

import json
import sys
from pathlib import Path

import torch
from trl import SFTConfig

from transformers_clipflant5.testing.tiny import build_tiny_model
from transformers_clipflant5.training.collator import CLIPFlanT5DataCollator
from transformers_clipflant5.training.data import load_llava_dataset
from transformers_clipflant5.training.model import set_trainable_parameters
from transformers_clipflant5.training.trainer import CLIPFlanT5SFTTrainer


def build_model():
    """The model both this script and the test start from: the tiny model, without dropout, stage-2 trainable."""
    model, processor = build_tiny_model(seed=1)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    set_trainable_parameters(model, 2)
    return model, processor


def trainable_state(model) -> dict[str, torch.Tensor]:
    return {name: param.detach().clone() for name, param in model.named_parameters() if param.requires_grad}


class RecordingCollator(CLIPFlanT5DataCollator):
    """The collator, noting which rows each batch it made held (the data loader may prepare one batch ahead)."""

    batches: list[list[str]] = []

    def __call__(self, rows):
        self.batches.append([row["id"] for row in rows])
        return super().__call__(rows)


def main(data: str, image_folder: str, output: str) -> None:
    output = Path(output)
    model, processor = build_model()
    dataset, _ = load_llava_dataset(data, "t5_v1", image_folder)
    args = SFTConfig(
        output_dir=str(output / "trainer"),
        per_device_train_batch_size=2,
        max_steps=1,
        # Plain SGD with lr 1 and nothing else: the step is exactly -gradient, which the test recomputes.
        optim="sgd",
        learning_rate=1.0,
        lr_scheduler_type="constant",
        weight_decay=0.0,
        max_grad_norm=0.0,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        bf16=False,
        activation_checkpointing=False,
        dataloader_pin_memory=False,
        dataloader_num_workers=0,
        # With this seed, groups cut for one rank instead of two would mix the modalities within both of the first
        # two steps (seeds 0, 3 and 6 happen not to), so the test can see a sampler that ignores the world size.
        seed=4,
    )
    collator = RecordingCollator(processor, "t5_v1", image_folder, max_length=1024)
    data = {"train_dataset": dataset, "data_collator": collator, "processing_class": processor}
    trainer = CLIPFlanT5SFTTrainer(model=model, args=args, group_by_modality_length=True, **data)
    rank = trainer.args.process_index
    if rank == 0:
        torch.save(trainable_state(model), output / "initial.pt")
    trainer.train()
    (output / f"rows-{rank}.json").write_text(json.dumps(collator.batches))
    if rank == 0:
        torch.save(trainable_state(trainer.accelerator.unwrap_model(trainer.model)), output / "final.pt")


if __name__ == "__main__":
    main(*sys.argv[1:4])
