# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""TRL's `SFTTrainer` for an encoder-decoder model: CLIP-FlanT5 stage-1 and stage-2 training.

TRL 1.x's `SFTTrainer` is written for causal LMs: its `__init__` patches a causal "fused LM head" onto the model's
`forward`, and its `compute_loss` calls the backbone without decoder inputs and scores `labels[:, 1:]` against
`hidden[:, :-1]`. For T5 that either crashes (no decoder input) or, with a backbone that returns hidden states, is
silently wrong (a shift that does not exist in seq2seq, and FlanT5's head scaling skipped). [`CLIPFlanT5SFTTrainer`]
keeps everything else of `SFTTrainer` (arguments, logging, PEFT, DeepSpeed, checkpointing, Hub pushes) and replaces
those two pieces:

- the patch is removed, so `model(**batch)` is the model's own seq2seq forward (decoder input = labels shifted right);
- the loss is the model's own (`loss_function`): the token cross-entropy summed over the label tokens and divided by
  the label tokens of the whole optimizer step on all ranks (`num_items_in_batch`), which equals the model's mean
  loss for one full batch and makes gradient accumulation exact; `mean_token_accuracy`, `entropy` and `num_tokens` (encoder + decoder tokens) are
  logged without the causal shift.

Saving: every checkpoint folder and the final folder are self-contained Hub folders in our format (model
safetensors, config with `auto_map` and remote code, processor with chat template, and our model card instead of
TRL's). A stage-1 trainer also writes the projector alone (`projector.safetensors` + `projector_config.json`).
A save cut short is never mistaken for a complete one (`training.checkpoints`): every checkpoint gets a marker once
all its files are on disk, `resume_from_checkpoint=True` picks the last marked one, and the final save is written
aside and moved into `output_dir` with `config.json` last. One run per `output_dir`: the main process holds its lock
(`output_lock`) while it trains and saves.
"""

import logging
import os
import shutil
from contextlib import ExitStack
from typing import Any

import torch
from accelerate.utils import is_peft_model
from transformers.trainer import TRAINING_ARGS_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints
from trl import SFTConfig, SFTTrainer

from ..cpu_threads import describe_cpu_threads
from ..file_permissions import fix_weight_permissions
from ..hub.model_card import render_training_card
from ..hub.publish import push_folder
from ..modeling_clip_flant5 import CLIPFlanT5MultiModalProjector
from ..output_lock import exclusive_output
from ..projector import save_projector
from .checkpoints import (
    COMPLETE_MARKER,
    listed_files,
    mark_complete,
    publish_folder,
    remove_cut_checkpoint,
    resolve_resume_checkpoint,
    unmark_complete,
)
from .data import LENGTH_COLUMN
from .sampler import ModalityGroupedSampler


logger = logging.getLogger(__name__)

_PROJECTOR_KEY = "multi_modal_projector."
# Where the final save is written before it is moved into output_dir (the same name on every process).
_STAGING_NAME = ".saving"


def projector_from_state_dict(state_dict: dict[str, torch.Tensor], config) -> CLIPFlanT5MultiModalProjector:
    """The projector of a full CLIP-FlanT5 state dict (e.g. a consolidated ZeRO-3 one) as a module on the CPU."""
    weights = {key.split(_PROJECTOR_KEY, 1)[1]: tensor for key, tensor in state_dict.items() if _PROJECTOR_KEY in key}
    if not weights:
        raise RuntimeError("The state dict to save holds no projector weights.")
    projector = CLIPFlanT5MultiModalProjector(config)
    projector.load_state_dict({key: tensor.detach().cpu() for key, tensor in weights.items()}, strict=True)
    return projector.to(next(iter(weights.values())).dtype)


def write_model_card(output_dir: str | os.PathLike, card_info: dict[str, Any]) -> None:
    """Write the README.md of a training output folder from `card_info` (the arguments of `render_training_card`)."""
    render_training_card(**card_info).save(os.path.join(output_dir, "README.md"))


class CLIPFlanT5SFTTrainer(SFTTrainer):
    """
    `trl.SFTTrainer` that trains CLIP-FlanT5 (or any encoder-decoder model whose forward builds its decoder input from
    `labels`) correctly. Use it with [`CLIPFlanT5DataCollator`] and a dataset from [`load_llava_dataset`].

    Args (in addition to `SFTTrainer`'s):
        group_by_modality_length (`bool`): draw each optimizer step from one modality, with length-grouped per-device
            batches ([`ModalityGroupedSampler`]); needs the dataset's `length` column.
        save_projector (`bool`): also write the projector alone (`projector.safetensors` + `projector_config.json`,
            see `transformers_clipflant5.projector`) in every saved folder (stage 1).
        card_info (`dict`): the arguments of `hub.model_card.render_training_card` (stage, base models, dataset,
            hyper-parameters, results) for the model card of every saved folder.
    """

    # compute_loss divides by the label tokens of the whole optimizer step, so Trainer must not rescale for GA.
    loss_is_scaled_for_ga = True

    def __init__(
        self,
        *args,
        group_by_modality_length: bool = False,
        save_projector: bool = False,
        card_info: dict[str, Any] | None = None,
        **kwargs,
    ):
        training_args = kwargs.get("args") if "args" in kwargs else (args[1] if len(args) > 1 else None)
        if not isinstance(training_args, SFTConfig):
            raise TypeError("CLIPFlanT5SFTTrainer needs an explicit trl.SFTConfig as `args`.")
        _require_seq2seq_settings(training_args)
        self.group_by_modality_length = group_by_modality_length
        self.save_projector = save_projector
        self.card_info = dict(card_info or {})
        self._saving_checkpoint = False
        self._holds_output_lock = False
        super().__init__(*args, **kwargs)
        # "chunked_nll": TRL's default before 1.16 ("same math as nll"; since then a deprecated alias of it).
        if (
            self.args.loss_type not in ("nll", "chunked_nll")
            or self.args.label_smoothing_factor > 0
            or self.compute_loss_func is not None
        ):
            raise ValueError(
                "CLIPFlanT5SFTTrainer computes the plain token cross-entropy (loss_type='nll'); label smoothing, "
                "compute_loss_func and other loss types are not supported."
            )
        # SFTTrainer patched a causal fused-LM-head `forward` onto the model instance; drop it so that the class's own
        # seq2seq forward runs.
        base = self.model.get_base_model() if is_peft_model(self.model) else self.model
        base.__dict__.pop("forward", None)
        # Let Trainer count the label tokens of each optimizer step (num_items_in_batch), unshifted: in an
        # encoder-decoder model logits[:, t] predicts labels[:, t].
        self.model_accepts_loss_kwargs = True
        self._loss_shifts_labels = False
        if not self.card_info:
            self.card_info = self._default_card_info()
        if group_by_modality_length and LENGTH_COLUMN not in (self.train_dataset.column_names or []):
            raise ValueError(f"group_by_modality_length needs a '{LENGTH_COLUMN}' column (see load_llava_dataset).")

    def _card_arguments(self) -> dict[str, Any]:
        # The repo the folder is pushed to, for the usage snippets (set by init_hf_repo when pushing).
        return {
            **self.card_info,
            "repo_id": self.card_info.get("repo_id") or self.hub_model_id or self.args.hub_model_id,
        }

    def _default_card_info(self) -> dict[str, Any]:
        model = self.accelerator.unwrap_model(self.model)
        trainable = [name for name, param in model.named_parameters() if param.requires_grad]
        config = model.config
        return {
            "stage": 1 if trainable and all(_PROJECTOR_KEY in name for name in trainable) else 2,
            "base_text_model": config.text_config._name_or_path or config._name_or_path or "not recorded",
            "base_vision_model": config.vision_config._name_or_path or "not recorded",
            "dataset": None,
            "hyperparameters": {"learning rate": self.args.learning_rate},
        }

    # ------------------------------------------------------------------------------------------------------------------
    # Loss and metrics

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        inputs["use_cache"] = False
        labels = inputs["labels"]
        # The model's own loss divides the summed token cross-entropy by `num_items_in_batch` when given.
        outputs = model(**inputs, num_items_in_batch=num_items_in_batch)
        loss = outputs.loss
        logits = outputs.logits.float()
        mask = labels != -100
        if num_items_in_batch is None and self.model.training:
            loss = loss / self.current_gradient_accumulation_steps
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            # num_items_in_batch counts the tokens of all ranks while DDP/DeepSpeed average the gradients over ranks.
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())

        with torch.no_grad():
            log_probs = torch.log_softmax(logits, dim=-1)
            entropy = -(log_probs.exp() * log_probs).sum(-1)
            correct = (logits.argmax(-1) == labels) & mask
            totals = torch.stack([mask.sum(), correct.sum()]).float()
            totals = torch.cat([totals, (entropy * mask).sum().reshape(1)])
            totals = self.accelerator.gather(totals.reshape(1, -1)).sum(0)
        n_labels, n_correct, entropy_sum = totals.tolist()
        self._metrics[mode]["mean_token_accuracy"].append(n_correct / n_labels if n_labels else 0.0)
        self._metrics[mode]["entropy"].append(entropy_sum / n_labels if n_labels else 0.0)
        if mode == "train":
            decoder_mask = inputs.get("decoder_attention_mask")
            n_tokens = inputs["attention_mask"].sum() + (
                decoder_mask.sum() if decoder_mask is not None else mask.sum()
            )
            self._total_train_tokens += int(self.accelerator.gather(n_tokens.reshape(1)).sum()) // max(
                self._tp_size, 1
            )
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        return (loss, outputs) if return_outputs else loss

    # ------------------------------------------------------------------------------------------------------------------
    # Sampling

    def _get_train_sampler(self, train_dataset=None):
        if not self.group_by_modality_length:
            return super()._get_train_sampler(train_dataset)
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        return ModalityGroupedSampler(
            dataset[LENGTH_COLUMN],
            batch_size=self.args.per_device_train_batch_size,
            world_size=self.args.world_size,
            gradient_accumulation_steps=self.args.gradient_accumulation_steps,
            seed=self.args.data_seed if self.args.data_seed is not None else self.args.seed,
        )

    # ------------------------------------------------------------------------------------------------------------------
    # One run per output_dir; resuming from complete checkpoints only

    def _output_dir_lock(self) -> ExitStack:
        """The lock on output_dir, held by the main process (the others write where it says)."""
        stack = ExitStack()
        if self.is_world_process_zero() and not self._holds_output_lock:
            os.makedirs(self.args.output_dir, exist_ok=True)
            stack.enter_context(exclusive_output(self.args.output_dir, "output_dir"))
            self._holds_output_lock = True
            stack.callback(setattr, self, "_holds_output_lock", False)
        return stack

    def train(self, resume_from_checkpoint: str | bool | None = None, trial=None, **kwargs):
        """`Trainer.train`, holding the lock on output_dir, where `resume_from_checkpoint=True` (or "true") resumes from
        the last COMPLETE checkpoint (transformers' picks the last one, even one cut short) and a path must be a
        complete checkpoint (see `training.checkpoints`)."""
        # On a shared CPU the thread count and how idle threads wait decide the speed: the run's first line says them.
        if self.args.device.type == "cpu":
            self.accelerator.print(f"Training on CPU: {describe_cpu_threads()}.")
        with self._output_dir_lock():
            say = print if self.is_world_process_zero() else (lambda message: None)
            resume = resolve_resume_checkpoint(resume_from_checkpoint, self.args.output_dir, say)
            return super().train(resume_from_checkpoint=resume, trial=trial, **kwargs)

    # ------------------------------------------------------------------------------------------------------------------
    # Saving

    def _save_checkpoint(self, model, trial) -> None:
        run_dir = self._get_output_dir(trial=trial)
        folder = os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
        if self.args.should_save:
            # A folder left by a save cut short at this step, or a complete one about to be overwritten: neither may
            # look complete while this save writes there.
            remove_cut_checkpoint(folder)
            unmark_complete(folder)
        self.accelerator.wait_for_everyone()
        # Old checkpoints are rotated out only once this one is marked complete: a save cut short must not leave
        # fewer complete checkpoints than save_total_limit asks for.
        limit, self.args.save_total_limit = self.args.save_total_limit, None
        self._saving_checkpoint = True
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.save_total_limit, self._saving_checkpoint = limit, False
        # Every process has written its part (RNG states, DeepSpeed shards) before the marker says the folder is done.
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            mark_complete(folder)
            rotate_checkpoints(
                output_dir=run_dir,
                save_total_limit=limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=True,
            )

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """`Trainer.save_model`; outside a checkpoint, written to `<output_dir>/.saving` first and moved into
        `output_dir` once complete (`publish_folder`), so that a save cut short never looks like a saved model."""
        if self._saving_checkpoint:
            return super().save_model(output_dir, _internal_call)
        folder = output_dir if output_dir is not None else self.args.output_dir
        staging = os.path.join(folder, _STAGING_NAME)
        with self._output_dir_lock() if folder == self.args.output_dir else ExitStack():
            if self.args.should_save:
                shutil.rmtree(staging, ignore_errors=True)
            self.accelerator.wait_for_everyone()
            try:
                super().save_model(staging, _internal_call)
            except BaseException:
                # A save that failed here (a full disk, say) leaves output_dir as it was.
                if self.args.should_save:
                    shutil.rmtree(staging, ignore_errors=True)
                raise
            self.accelerator.wait_for_everyone()
            if self.args.should_save:
                publish_folder(staging, folder)
            self.accelerator.wait_for_everyone()

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        super()._save(output_dir, state_dict)
        if not self.args.should_save:
            return
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        # The model's own save_pretrained fixes its weights; PEFT's adapter files are written by PEFT.
        fix_weight_permissions(output_dir)
        # Trainer pickles the arguments into training_args.bin, which its Hub push would upload and which nobody
        # should ever unpickle: keep them as JSON instead (resuming does not read either).
        pickled_args = os.path.join(output_dir, TRAINING_ARGS_NAME)
        if os.path.exists(pickled_args):
            os.remove(pickled_args)
        with open(os.path.join(output_dir, "training_args.json"), "w", encoding="utf-8") as handle:
            handle.write(self.args.to_json_string())
        if self.save_projector:
            model = self.accelerator.unwrap_model(self.model)
            if state_dict is None:
                state_dict = model.state_dict()
            config = model.config
            save_projector(
                projector_from_state_dict(state_dict, config),
                output_dir,
                text_model=self.card_info.get("base_text_model"),
                vision_model=self.card_info.get("base_vision_model"),
                vision_feature_layer=config.vision_feature_layer,
                vision_feature_select_strategy=config.vision_feature_select_strategy,
            )
        write_model_card(output_dir, self._card_arguments())

    def push_to_hub(
        self,
        commit_message: str | None = "End of training",
        blocking: bool = True,
        token: str | None = None,
        revision: str | None = None,
        private: bool | None = None,
        **kwargs,
    ):
        """
        `Trainer.push_to_hub` (what `--push_to_hub` runs at the end), uploading the saved self-contained folder in ONE
        commit with [`push_folder`], without pickles, optimizer states or checkpoints. Trainer's own upload goes
        through `HfApi.upload_folder`, which may split a large folder into several commits and would upload the
        pickled training arguments. Always blocking.
        """
        self.callback_handler.on_push_begin(self.args, self.state, self.control)
        token = token if token is not None else self.args.hub_token
        if self.hub_model_id is None:
            self.init_hf_repo(token=token, private=private)
        self.save_model(_internal_call=True)
        if not self.is_world_process_zero():
            return None
        self._finish_current_push()
        return push_folder(
            self.args.output_dir,
            self.hub_model_id,
            revision=revision if revision is not None else self.args.hub_revision,
            private=private if private is not None else self.args.hub_private_repo,
            commit_message=commit_message,
            token=token,
        )

    def create_model_card(self, model_name: str | None = None, dataset_name: str | None = None, tags=None, **kwargs):
        # TRL's version writes its own causal-LM card to output_dir before every checkpoint and Hub push; ours
        # describes this model and how to load it.
        if self.is_world_process_zero():
            os.makedirs(self.args.output_dir, exist_ok=True)
            write_model_card(self.args.output_dir, self._card_arguments())
            # A card rewritten after the final save (with results, say) stays part of the complete save.
            if os.path.isfile(os.path.join(self.args.output_dir, COMPLETE_MARKER)):
                mark_complete(self.args.output_dir, listed_files(self.args.output_dir))


def _require_seq2seq_settings(args: SFTConfig) -> None:
    """Set the SFTConfig options the seq2seq path needs; refuse the ones it cannot honour."""
    if args.packing or args.padding_free:
        raise ValueError("packing and padding_free concatenate causal sequences; they do not apply to CLIP-FlanT5.")
    if args.use_liger_kernel:
        raise ValueError("use_liger_kernel has no T5 support; turn it off.")
    if args.ddp_find_unused_parameters is None:
        # Every trainable parameter takes part in every step (the projector runs even for text-only batches), so DDP
        # need not search for unused ones (SFTTrainer would turn the search on for a processor).
        args.ddp_find_unused_parameters = False
    if args.remove_unused_columns:
        # Trainer would drop every column the collator reads (image paths, conversations) before the collator runs.
        logger.info("Setting remove_unused_columns=False: the collator reads the raw dataset columns.")
        args.remove_unused_columns = False
    dataset_kwargs = dict(args.dataset_kwargs or {})
    if not dataset_kwargs.get("skip_prepare_dataset"):
        # SFTTrainer's dataset preparation tokenizes causal prompt+completion rows; our collator does it instead.
        dataset_kwargs["skip_prepare_dataset"] = True
        args.dataset_kwargs = dataset_kwargs


__all__ = ["CLIPFlanT5SFTTrainer", "projector_from_state_dict", "write_model_card"]
