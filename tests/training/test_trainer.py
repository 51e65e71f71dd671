"""CLIPFlanT5SFTTrainer: TRL's SFTTrainer training CLIP-FlanT5 correctly (loss, gradients, metrics, saving, resuming)."""

import copy
import json
import re

import pytest
import torch
from huggingface_hub import ModelCard
from peft import PeftModel
from PIL import Image
from safetensors.torch import load_file
from transformers import (
    AutoModelForImageTextToText,
    AutoProcessor,
    CLIPModel,
    CLIPVisionModel,
    T5ForConditionalGeneration,
)
from trl import ModelConfig, SFTConfig

from tests.support.hub import FakeHub
from tests.support.scores import forward_vqascores
from transformers_clipflant5 import CLIPFlanT5ForConditionalGeneration, VQAScore
from transformers_clipflant5.projector import load_projector
from transformers_clipflant5.testing.demo import write_demo_base_checkpoints
from transformers_clipflant5.testing.synthetic import write_synthetic_dataset
from transformers_clipflant5.testing.tiny import build_tiny_model
from transformers_clipflant5.training.collator import CLIPFlanT5DataCollator
from transformers_clipflant5.training.data import load_llava_dataset
from transformers_clipflant5.training.model import (
    build_model_from_base_checkpoints,
    default_peft_config,
    merge_lora_and_save,
    set_trainable_parameters,
)
from transformers_clipflant5.training.trainer import CLIPFlanT5SFTTrainer


@pytest.fixture(scope="module")
def base():
    model, processor = build_tiny_model(seed=1)
    return model, processor


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Synthetic LLaVA data: 4 images with multi-turn conversations (flattened to 32 rows) and 8 text-only rows."""
    folder = tmp_path_factory.mktemp("data")
    paths = write_synthetic_dataset(
        folder, num_train_images=4, num_eval_images=0, num_text_only=8, image_size=40, seed=0
    )
    stage2, _ = load_llava_dataset(paths["train"], "t5_v1", paths["image_folder"], flatten=True)
    return {"stage2": stage2, "image_folder": paths["image_folder"], "paths": paths}


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    return write_demo_base_checkpoints(tmp_path_factory.mktemp("bases"), seed=0)


def fresh(base, stage=2):
    model, processor = base
    model = copy.deepcopy(model).train()
    set_trainable_parameters(model, stage)
    return model, processor


def make_trainer(model, processor, dataset, image_folder, output_dir, template="t5_v1", trainer_kwargs=None, **args):
    settings = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=4,
        max_steps=2,
        learning_rate=1e-3,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        bf16=False,
        activation_checkpointing=False,
        dataloader_pin_memory=False,
        seed=0,
    )
    settings.update(args)
    return CLIPFlanT5SFTTrainer(
        model=model,
        args=SFTConfig(**settings),
        train_dataset=dataset,
        data_collator=CLIPFlanT5DataCollator(processor, template, image_folder, max_length=1024),
        processing_class=processor,
        **(trainer_kwargs or {}),
    )


def label_tokens(batch):
    return (batch["labels"] != -100).sum()


def batches(dataset, collator):
    image_rows = [i for i, f in enumerate(dataset["image_file"]) if f is not None]
    text_rows = [i for i, f in enumerate(dataset["image_file"]) if f is None]
    return {
        "mixed": collator([dataset[i] for i in image_rows[:2] + text_rows[:2]]),
        "text-only": collator([dataset[i] for i in text_rows[:3]]),
        "repeated image": collator([dataset[i] for i in image_rows[:3]]),
    }


# ----------------------------------------------------------------------------------------------------------------------
# Loss, gradients, metrics


def test_trainer_loss_equals_the_model_loss(base, data, tmp_path):
    model, processor = fresh(base)
    trainer = make_trainer(model, processor, data["stage2"], data["image_folder"], tmp_path, max_steps=1)
    # SFTTrainer's causal fused-LM-head patch is gone: the model's own seq2seq forward runs.
    assert "forward" not in vars(model)
    for name, batch in batches(data["stage2"], trainer.data_collator).items():
        if name == "repeated image":
            assert "image_index" in batch
        with torch.no_grad():
            expected = model(**batch).loss.item()
            loss = trainer.compute_loss(model, dict(batch), num_items_in_batch=label_tokens(batch)).item()
        assert loss == pytest.approx(expected, abs=1e-5), name

    # Through a real optimisation step: the logged loss of step 1 is the model's loss on the first batch.
    first_batch = next(iter(trainer.get_train_dataloader()))
    with torch.no_grad():
        expected = model(**first_batch).loss.item()
    trainer.train()
    assert trainer.state.log_history[0]["loss"] == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("stage", [1, 2])
def test_gradients_reach_exactly_the_trained_parameters(base, data, tmp_path, stage):
    model, processor = fresh(base, stage)
    trainer = make_trainer(model, processor, data["stage2"], data["image_folder"], tmp_path)
    if stage == 1:
        expected = {n for n, _ in model.named_parameters() if n.startswith("model.multi_modal_projector.")}
    else:
        expected = {n for n, _ in model.named_parameters() if not n.startswith("model.vision_tower.")}
        assert {"model.language_model.shared.weight", "lm_head.weight"} <= expected
    assert len(expected) > 0
    for name, batch in batches(data["stage2"], trainer.data_collator).items():
        model.zero_grad(set_to_none=True)
        trainer.training_step(model, dict(batch), num_items_in_batch=label_tokens(batch))
        reached = {n for n, p in model.named_parameters() if p.grad is not None}
        assert reached == expected, name
        nonzero = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
        projector = {n for n in expected if "multi_modal_projector" in n}
        if name == "text-only":
            # The projector ran (every rank runs it every step) but no image feature reached the loss.
            assert not nonzero & projector and (stage == 1 or nonzero)
        else:
            assert projector <= nonzero


def test_logged_metrics_are_unshifted(base, data, tmp_path):
    model, processor = fresh(base)
    # Train a little first: an untrained model predicts nothing right, shifted or not.
    trainer = make_trainer(
        model, processor, data["stage2"], data["image_folder"], tmp_path, max_steps=25, learning_rate=1e-2
    )
    trainer.train()
    model.train()
    batch = batches(data["stage2"], trainer.data_collator)["mixed"]
    tokens_before = trainer._total_train_tokens
    with torch.no_grad():
        logits = model(**batch).logits
        trainer.compute_loss(model, dict(batch), num_items_in_batch=label_tokens(batch))
    mask = batch["labels"] != -100
    accuracy = ((logits.argmax(-1) == batch["labels"]) & mask).sum() / mask.sum()
    log_probs = logits.log_softmax(-1)
    entropy = (-(log_probs.exp() * log_probs).sum(-1) * mask).sum() / mask.sum()
    metrics = trainer._metrics["train"]
    assert accuracy > 0.2
    assert metrics["mean_token_accuracy"][-1] == pytest.approx(accuracy.item(), abs=1e-6)
    assert metrics["entropy"][-1] == pytest.approx(entropy.item(), abs=1e-5)
    assert metrics["num_tokens"][-1] - tokens_before == (
        batch["attention_mask"].sum() + batch["decoder_attention_mask"].sum()
    )
    # The causal shift SFTTrainer uses would measure something else on this batch.
    shifted = ((logits[:, :-1].argmax(-1) == batch["labels"][:, 1:]) & mask[:, 1:]).sum() / mask[:, 1:].sum()
    assert shifted.item() != pytest.approx(accuracy.item(), abs=1e-3)


def test_gradient_accumulation_is_exact(base, data, tmp_path):
    results = []
    for batch_size, accumulation in ((4, 1), (2, 2), (1, 4)):
        model, processor = fresh(base)
        trainer = make_trainer(
            model,
            processor,
            data["stage2"].select(range(8, 12)),
            data["image_folder"],
            tmp_path / f"{batch_size}",
            per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=accumulation,
            max_steps=1,
            optim="sgd",
            learning_rate=0.5,
            lr_scheduler_type="constant",
            train_sampling_strategy="sequential",
        )
        trainer.train()
        results.append(
            (trainer.state.log_history[0]["loss"], torch.cat([p.detach().flatten() for p in model.parameters()]))
        )
    for loss, params in results[1:]:
        assert loss == pytest.approx(results[0][0], abs=1e-5)
        assert torch.allclose(params, results[0][1], atol=1e-6)
    assert not torch.equal(results[0][1], torch.cat([p.flatten() for p in base[0].parameters()]))


def test_trainer_refuses_what_it_cannot_do(base, data, tmp_path):
    model, processor = fresh(base)
    with pytest.raises(ValueError, match="packing"):
        make_trainer(model, processor, data["stage2"], data["image_folder"], tmp_path, packing=True)
    with pytest.raises(ValueError, match="loss_type='nll'"):
        make_trainer(model, processor, data["stage2"], data["image_folder"], tmp_path, loss_type="dft")


# ----------------------------------------------------------------------------------------------------------------------
# Building, saving, resuming, pushing


def test_build_from_base_checkpoints(bases, tmp_path):
    text_folder, vision_folder = bases
    model, processor = build_model_from_base_checkpoints(text_folder, vision_folder, do_pad=False)
    text = T5ForConditionalGeneration.from_pretrained(text_folder)
    vision = CLIPVisionModel.from_pretrained(vision_folder)
    ours = model.state_dict()
    for key, tensor in text.state_dict().items():
        target = "lm_head.weight" if key == "lm_head.weight" else f"model.language_model.{key}"
        assert torch.equal(ours[target], tensor), key
    for key, tensor in vision.state_dict().items():
        assert torch.equal(ours[f"model.vision_tower.{key}"], tensor), key
    assert model.config.image_token_id == processor.tokenizer.convert_tokens_to_ids("<image>")
    assert processor.image_processor.do_pad is False
    assert model.model.multi_modal_projector.linear_1.weight.abs().sum() > 0

    # A full CLIPModel checkpoint works too (its vision half is used).
    clip_config = {"text_config": {"vocab_size": 99, "hidden_size": 16, "intermediate_size": 32,
                                   "num_hidden_layers": 1, "num_attention_heads": 2, "projection_dim": 16},
                   "vision_config": vision.config.to_dict(), "projection_dim": 16}  # fmt: skip
    from transformers import CLIPConfig

    full = CLIPModel(CLIPConfig(**clip_config))
    full.save_pretrained(tmp_path / "clip")
    processor.image_processor.save_pretrained(tmp_path / "clip")
    model, _ = build_model_from_base_checkpoints(text_folder, tmp_path / "clip")
    assert torch.equal(
        model.model.vision_tower.embeddings.patch_embedding.weight,
        full.vision_model.embeddings.patch_embedding.weight,
    )


def test_build_from_a_tied_base_without_room_for_the_image_token(bases, tmp_path):
    """An original-T5-style base (head tied to the embedding, no spare embedding rows, a tokenizer without `<image>`):
    the built model keeps the tie and grows the vocabulary to hold `<image>`, also across save and load."""
    from transformers import T5Config, T5Tokenizer

    from transformers_clipflant5.testing.tiny import train_tiny_sentencepiece

    _, vision_folder = bases
    text_folder = tmp_path / "t5-v1-tiny"
    text_folder.mkdir()
    (text_folder / "spiece.model").write_bytes(train_tiny_sentencepiece(seed=3))
    tokenizer = T5Tokenizer.from_pretrained(text_folder, extra_ids=100)
    vocab_rows = len(tokenizer)  # every row taken: <image> (id vocab_rows) has none
    tokenizer.save_pretrained(text_folder)
    torch.manual_seed(0)
    text = T5ForConditionalGeneration(
        T5Config(vocab_size=vocab_rows, d_model=32, d_ff=64, d_kv=8, num_heads=4, num_layers=1, dropout_rate=0.0,
                 decoder_start_token_id=0, tie_word_embeddings=True)
    )  # fmt: skip
    text.save_pretrained(text_folder)

    model, processor = build_model_from_base_checkpoints(text_folder, vision_folder)
    image_token_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    assert image_token_id == vocab_rows == model.config.image_token_id
    rows = model.get_input_embeddings().weight.shape[0]
    assert rows > image_token_id and rows % 64 == 0
    assert model.config.tie_word_embeddings and model.lm_head.weight is model.get_input_embeddings().weight
    inputs = processor(images=[Image.new("RGB", (40, 30), "red")], text=["<image> a red image"],
                       text_target=["yes"], return_tensors="pt")  # fmt: skip
    assert torch.isfinite(model(**inputs).loss)

    model.save_pretrained(tmp_path / "built")
    reloaded = CLIPFlanT5ForConditionalGeneration.from_pretrained(tmp_path / "built")
    assert reloaded.lm_head.weight.data_ptr() == reloaded.get_input_embeddings().weight.data_ptr()
    torch.testing.assert_close(reloaded.lm_head.weight, model.lm_head.weight, rtol=0, atol=0)


def test_build_in_bfloat16_puts_every_part_in_bfloat16(bases):
    model, _ = build_model_from_base_checkpoints(*bases, dtype="bfloat16")
    assert {param.dtype for param in model.parameters()} == {torch.bfloat16}


def test_default_lora_targets_every_t5_projection_and_nothing_else(base):
    """LoRA goes on every linear layer of the T5 encoder and decoder (attention and feed-forward, `wo` included),
    never on the frozen vision tower or the LM head; the projector is trained in full beside it."""
    model, _ = base
    peft_config = default_peft_config(ModelConfig(use_peft=True), stage=2)
    linears = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
    t5 = {
        name for name in linears if name.startswith(("model.language_model.encoder.", "model.language_model.decoder."))
    }
    assert any(name.endswith(".wo") for name in t5) and any(name.endswith(".wi_1") for name in t5)
    # PEFT matches a string of target modules against each module's full name with re.fullmatch.
    assert {name for name in linears if re.fullmatch(peft_config.target_modules, name)} == t5
    assert "multi_modal_projector" in peft_config.modules_to_save


@pytest.mark.parametrize("stage", [1, 2])
def test_the_default_model_card_names_the_stage_from_what_trains(base, data, tmp_path, stage):
    model, processor = fresh(base, stage)
    trainer = make_trainer(model, processor, data["stage2"], data["image_folder"], tmp_path)
    assert trainer.card_info["stage"] == stage


def test_stage1_outputs_are_self_contained_and_feed_stage2(bases, data, tmp_path):
    text_folder, vision_folder = bases
    model, processor = build_model_from_base_checkpoints(text_folder, vision_folder, do_pad=False)
    set_trainable_parameters(model, 1)
    stage1_data, _ = load_llava_dataset(
        write_synthetic_dataset(tmp_path / "captions", num_train_images=6, num_eval_images=0, captions_only=True)[
            "train"
        ],
        "t5_plain_split_text",
        tmp_path / "captions",
    )
    output = tmp_path / "stage1"
    trainer = make_trainer(
        model,
        processor,
        stage1_data,
        tmp_path / "captions",
        output,
        template="t5_plain_split_text",
        save_strategy="steps",
        save_steps=1,
        learning_rate=1e-2,
        trainer_kwargs={
            "save_projector": True,
            "card_info": {
                "stage": 1,
                "base_text_model": str(text_folder),
                "base_vision_model": str(vision_folder),
                "dataset": "captions.json",
                "hyperparameters": {"learning rate": 1e-2},
            },
        },
    )
    trainer.train()
    trainer.save_model(str(output))
    trained = model.state_dict()
    for folder in (output / "checkpoint-1", output / "checkpoint-2", output):
        files = {path.name for path in folder.iterdir()}
        assert {"model.safetensors", "config.json", "processor_config.json", "chat_template.jinja", "README.md",
                "projector.safetensors", "projector_config.json", "modeling_clip_flant5.py"} <= files  # fmt: skip
        readme = (folder / "README.md").read_text()
        assert "stage-1" in readme and "trl-lib" not in readme and "text-generation" not in readme
        assert "auto_map" in json.loads((folder / "config.json").read_text())
    reloaded = AutoModelForImageTextToText.from_pretrained(output)
    for key, tensor in reloaded.state_dict().items():
        assert torch.equal(tensor, trained[key]), key
    assert AutoProcessor.from_pretrained(output).image_processor.do_pad is False

    # Stage 2 from the base checkpoints + this projector.
    stage2, _ = build_model_from_base_checkpoints(text_folder, vision_folder, do_pad=True)
    load_projector(stage2, output)
    for key, tensor in stage2.model.multi_modal_projector.state_dict().items():
        assert torch.equal(tensor, trained[f"model.multi_modal_projector.{key}"])


def test_resume_from_checkpoint_is_exact(base, data, tmp_path):
    def run(output, max_steps, resume=None):
        model, processor = fresh(base)
        trainer = make_trainer(
            model,
            processor,
            data["stage2"],
            data["image_folder"],
            output,
            max_steps=max_steps,
            save_strategy="steps",
            save_steps=2,
            trainer_kwargs={"group_by_modality_length": True},
        )
        trainer.train(resume_from_checkpoint=resume)
        return model, trainer

    straight, _ = run(tmp_path / "straight", 4)
    # A new process picks the run up from its step-2 checkpoint (optimizer, scheduler, RNG and data position).
    resumed, trainer = run(tmp_path / "resumed", 4, resume=str(tmp_path / "straight" / "checkpoint-2"))
    assert trainer.state.global_step == 4
    for (name, a), b in zip(straight.named_parameters(), resumed.parameters()):
        assert torch.allclose(a, b, atol=1e-6), name
    # The checkpoint folder scores as the resumed model in memory does.
    images, texts = [data["paths"]["image_folder"] / "images/train_00000.png"] * 2, ["a red circle", "a blue cross"]
    scores = VQAScore.from_pretrained(tmp_path / "resumed" / "checkpoint-4", dtype="float32", device="cpu")(
        images, texts
    )
    expected = forward_vqascores(resumed.eval(), trainer.processing_class, images, texts)
    torch.testing.assert_close(scores, expected, rtol=0, atol=1e-5)
    # ... and not as the step-2 checkpoint, which it would resemble if the last steps had not been saved.
    earlier = VQAScore.from_pretrained(tmp_path / "straight" / "checkpoint-2", dtype="float32", device="cpu")
    assert (earlier(images, texts) - scores).abs().min() > 1e-5, (earlier(images, texts), scores)


def test_push_to_hub_goes_through_the_trainer_in_one_commit_without_pickles(base, data, tmp_path, monkeypatch):
    # --push_to_hub / trainer.push_to_hub(), intercepted at HfApi.create_repo / create_commit (upload_folder, which
    # may split a large folder into several commits, is refused by the fake hub).
    hub = FakeHub(tmp_path / "remote")
    hub.install(monkeypatch)
    model, processor = fresh(base)
    output = tmp_path / "out"
    trainer = make_trainer(
        model, processor, data["stage2"], data["image_folder"], output, push_to_hub=True,
        hub_model_id="someone/clip-flant5-test", max_steps=1,
    )  # fmt: skip
    trainer.train()
    trainer.push_to_hub()
    assert {repo["repo_id"] for repo in hub.repos} == {"someone/clip-flant5-test"}  # init_hf_repo, then exist_ok
    assert len(hub.commits) == 1 and hub.commits[0]["repo_id"] == "someone/clip-flant5-test"
    uploaded = set(hub.commits[0]["files"])
    assert uploaded == {path.name for path in output.iterdir()}, "the whole output folder, nothing else"
    assert {"model.safetensors", "config.json", "processor_config.json", "README.md", "training_args.json"} <= uploaded
    assert {name for name in uploaded if name.endswith("_clip_flant5.py")}, "the remote code travels with the weights"
    pickles = {name for name in uploaded if name.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle"))}
    assert not pickles and "training_args.bin" not in uploaded
    remote = hub.remote("someone/clip-flant5-test")
    assert "someone/clip-flant5-test" in (remote / "README.md").read_text()
    assert ModelCard.load(remote / "README.md").data.library_name == "transformers"
    # The uploaded folder loads with the Auto classes and scores exactly like the model that was trained.
    reloaded = AutoModelForImageTextToText.from_pretrained(remote).eval()
    trained = trainer.model.eval()
    image = data["image_folder"] / next(name for name in data["stage2"]["image_file"] if name)
    texts = ["a red circle", "a blue cross on the left"]
    scores = [
        VQAScore(candidate, AutoProcessor.from_pretrained(remote))([image] * len(texts), texts)
        for candidate in (trained, reloaded)
    ]
    torch.testing.assert_close(scores[0], scores[1], rtol=0, atol=1e-6)


def test_lora_trains_the_adapters_and_the_projector(base, data, tmp_path):
    model, processor = fresh(base)
    peft_config = default_peft_config(ModelConfig(use_peft=True, lora_r=4, lora_alpha=8, lora_dropout=0.0), stage=2)
    trainer = make_trainer(
        model, processor, data["stage2"], data["image_folder"], tmp_path / "lora", max_steps=2,
        trainer_kwargs={"peft_config": peft_config},
    )  # fmt: skip
    batch = batches(data["stage2"], trainer.data_collator)["mixed"]
    trainer.model.zero_grad(set_to_none=True)
    trainer.training_step(trainer.model, dict(batch), num_items_in_batch=label_tokens(batch))
    reached = {n for n, p in trainer.model.named_parameters() if p.grad is not None}
    assert reached and all("lora_" in n or "multi_modal_projector.modules_to_save" in n for n in reached)
    assert any("language_model.encoder" in n for n in reached) and any("language_model.decoder" in n for n in reached)
    assert not any("vision_tower" in n for n in reached)
    trainer.train()
    trainer.save_model(str(tmp_path / "lora"))
    # The trained model with its adapters unmerged, before merge_lora_and_save folds them in place.
    trainer.model.eval()
    with torch.no_grad():
        expected = trainer.model(**batch).logits.clone()
        untrained = fresh(base)[0].eval()(**batch).logits
    assert (expected - untrained).abs().max() > 1e-3, "training must change the logits for the comparison to mean much"
    lora_tensors = {n for n in trainer.model.state_dict() if "lora_" in n or "modules_to_save" in n}
    merge_lora_and_save(trainer, tmp_path / "lora")
    merged = AutoModelForImageTextToText.from_pretrained(tmp_path / "lora").eval()
    with torch.no_grad():
        torch.testing.assert_close(merged(**batch).logits, expected, rtol=0, atol=1e-5)
    # The final adapter holds every trained tensor, and on the base model it gives the unmerged model back.
    adapter = tmp_path / "lora" / "adapter"
    assert len(load_file(adapter / "adapter_model.safetensors")) == len(lora_tensors) > 0
    reloaded = PeftModel.from_pretrained(fresh(base)[0], adapter).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, expected, rtol=0, atol=1e-5)


def test_the_trainable_line_counts_what_trains_after_lora(base):
    from peft import get_peft_model

    from transformers_clipflant5.training.model import describe_trainable

    model, _ = fresh(base, stage=2)
    full = [name for name, param in model.named_parameters() if param.requires_grad]
    assert describe_trainable(model).startswith(
        f"Trainable: {sum(p.numel() for p in model.parameters() if p.requires_grad):,} parameters in {len(full)} "
        "tensors (projector + FlanT5)"
    )
    lora = get_peft_model(model, default_peft_config(ModelConfig(use_peft=True), stage=2))
    trained = [(name, param) for name, param in lora.named_parameters() if param.requires_grad]
    line = describe_trainable(lora)
    # The count the LoRA run trains (adapters and the projector), not the full FlanT5's from before LoRA.
    assert f"in {len(trained)} tensors (projector + LoRA adapters on FlanT5)" in line
    assert len(trained) != len(full) and f"{sum(param.numel() for _, param in trained):,} parameters" in line
