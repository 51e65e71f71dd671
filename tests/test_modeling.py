"""The model as a transformers citizen: Auto classes, save/load, remote code, the Hub cache, generation, attention
backends, gradient checkpointing, dtypes, device maps, stage-1 projectors, and errors on bad input."""

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import hub_cache, make_images
from original_reference import vqa_prompt
from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText, AutoModelForSeq2SeqLM, AutoProcessor

from transformers_clipflant5 import (
    CLIPFlanT5ForConditionalGeneration,
    CLIPFlanT5Model,
    CLIPFlanT5Processor,
    load_original_projector,
)


PROMPTS = [vqa_prompt("a red circle"), vqa_prompt("a much longer caption about a purple star at the top"), "<image>"]


@pytest.fixture(scope="module")
def batch(tiny, images):
    _, processor = tiny
    return processor(images=images[:3], text=PROMPTS, text_target=["Yes", "No", "a red circle"])


@pytest.fixture(scope="module")
def saved(tiny, tmp_path_factory):
    model, processor = tiny
    folder = tmp_path_factory.mktemp("ours")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_auto_classes_are_registered(saved, tiny, batch):
    model, _ = tiny
    assert type(AutoConfig.from_pretrained(saved)).__name__ == "CLIPFlanT5Config"
    assert isinstance(AutoModel.from_pretrained(saved), CLIPFlanT5Model)
    for auto in (AutoModelForImageTextToText, AutoModelForSeq2SeqLM):
        loaded = auto.from_pretrained(saved)
        assert isinstance(loaded, CLIPFlanT5ForConditionalGeneration)
        with torch.no_grad():
            assert torch.equal(loaded(**batch).logits, model(**batch).logits)
    processor = AutoProcessor.from_pretrained(saved)
    assert isinstance(processor, CLIPFlanT5Processor)
    assert processor.image_seq_length == model.config.image_seq_length
    assert processor.chat_template == tiny[1].chat_template


def test_saved_folder_is_self_contained(saved):
    files = {path.name for path in saved.iterdir()}
    for name in ("configuration_clip_flant5.py", "modeling_clip_flant5.py", "processing_clip_flant5.py"):
        assert name in files
    assert "model.safetensors" in files and not any(name.endswith(".bin") for name in files)
    config = json.loads((saved / "config.json").read_text())
    assert config["auto_map"]["AutoModelForImageTextToText"].endswith("CLIPFlanT5ForConditionalGeneration")
    assert config["auto_map"]["AutoConfig"].endswith("CLIPFlanT5Config")
    processor_config = json.loads((saved / "processor_config.json").read_text())
    assert processor_config["auto_map"]["AutoProcessor"].endswith("CLIPFlanT5Processor")
    # Remote-code files import only torch, transformers and each other.
    for name in ("configuration_clip_flant5.py", "modeling_clip_flant5.py", "processing_clip_flant5.py"):
        imports = re.findall(r"^(?:from|import) (\S+)", (saved / name).read_text(), flags=re.MULTILINE)
        assert {module.split(".")[0] for module in imports} <= {
            "torch",
            "transformers",
            "huggingface_hub",
            "PIL",
            "numpy",
            "json",
            "os",
            "warnings",
            "dataclasses",
            "typing",
            "collections",
            "pathlib",
            "",
        }, imports


def test_remote_code_loads_without_the_package(saved, batch, tiny, tmp_path):
    """A fresh interpreter where `import transformers_clipflant5` fails loads the folder through trust_remote_code."""
    model, _ = tiny
    torch.save({key: value for key, value in batch.items()}, tmp_path / "batch.pt")
    with torch.no_grad():
        torch.save(model(**batch).logits, tmp_path / "expected.pt")
    script = textwrap.dedent(
        f"""
        import sys, importlib.abc
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] == "transformers_clipflant5":
                    raise ImportError("transformers_clipflant5 is blocked in this test")
        sys.meta_path.insert(0, Block())
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor
        try:
            AutoModelForImageTextToText.from_pretrained({str(saved)!r})
        except ValueError as error:
            print("without trust_remote_code:", type(error).__name__)
        else:
            raise SystemExit("loading must need trust_remote_code when the package is absent")
        model = AutoModelForImageTextToText.from_pretrained({str(saved)!r}, trust_remote_code=True)
        processor = AutoProcessor.from_pretrained({str(saved)!r}, trust_remote_code=True)
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        assert type(processor).__module__.startswith("transformers_modules"), type(processor).__module__
        batch = torch.load({str(tmp_path / "batch.pt")!r})
        with torch.no_grad():
            logits = model(**batch).logits
        assert torch.equal(logits, torch.load({str(tmp_path / "expected.pt")!r}))
        prompt = processor.apply_chat_template(
            [{{"role": "user", "content": [{{"type": "image"}}, {{"type": "text", "text": "Hi"}}]}}],
            add_generation_prompt=True,
        )
        assert prompt.endswith("USER: <image>\\nHi ASSISTANT: "), prompt
        print("remote code OK")
        """
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "remote code OK" in result.stdout


def test_load_by_repo_id_from_offline_hub_cache(tmp_path, saved, original_folder, batch, tiny):
    model, _ = tiny
    with torch.no_grad():
        expected = model(**batch).logits
    ours_cache = hub_cache(tmp_path / "a", "clip-flant5/tiny", saved)
    loaded = AutoModelForImageTextToText.from_pretrained("clip-flant5/tiny", cache_dir=ours_cache)
    processor = AutoProcessor.from_pretrained("clip-flant5/tiny", cache_dir=ours_cache)
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, expected)
    assert isinstance(processor, CLIPFlanT5Processor)
    # The original layout, by repo id, as `zhiqiulin/clip-flant5-xxl` is loaded.
    original_cache = hub_cache(tmp_path / "b", "zhiqiulin/clip-flant5-tiny", original_folder)
    original = CLIPFlanT5ForConditionalGeneration.from_pretrained(
        "zhiqiulin/clip-flant5-tiny", cache_dir=original_cache
    )
    original_processor = CLIPFlanT5Processor.from_pretrained("zhiqiulin/clip-flant5-tiny", cache_dir=original_cache)
    assert original_processor.image_token_id == processor.image_token_id
    with torch.no_grad():
        assert torch.allclose(original(**batch).logits, expected, atol=1e-6)


def test_greedy_equals_stepwise_argmax(tiny, batch):
    model, _ = tiny
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values")}
    generated = model.generate(**inputs, max_new_tokens=6, do_sample=False, num_beams=1)
    with torch.no_grad():
        for row in range(generated.shape[0]):
            decoded = torch.tensor([[model.config.decoder_start_token_id]])
            for _ in range(6):
                logits = model(
                    input_ids=inputs["input_ids"][row : row + 1],
                    attention_mask=inputs["attention_mask"][row : row + 1],
                    pixel_values=inputs["pixel_values"][row : row + 1],
                    decoder_input_ids=decoded,
                    use_cache=False,
                ).logits
                decoded = torch.cat([decoded, logits[:, -1:].argmax(-1)], dim=1)
                if decoded[0, -1].item() == model.config.eos_token_id:
                    break
            assert generated[row, : decoded.shape[1]].tolist() == decoded[0].tolist()
    assert len({tuple(row.tolist()) for row in generated}) > 1


def test_batched_generation_equals_one_by_one(tiny, batch):
    model, processor = tiny
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values")}
    together = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    for row, image in enumerate(make_images([(20, 40), (50, 30), (33, 33)])):
        single = processor(images=[image], text=[PROMPTS[row]])
        alone = model.generate(**single, max_new_tokens=5, do_sample=False)
        assert together[row, : alone.shape[1]].tolist() == alone[0].tolist()


def test_beam_search_and_sampling_run(tiny, batch):
    model, _ = tiny
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values")}
    beams = model.generate(**inputs, max_new_tokens=5, num_beams=3, num_return_sequences=2, do_sample=False)
    assert beams.shape[0] == 6
    torch.manual_seed(0)
    first = model.generate(**inputs, max_new_tokens=5, do_sample=True, top_k=20, temperature=1.5)
    torch.manual_seed(0)
    second = model.generate(**inputs, max_new_tokens=5, do_sample=True, top_k=20, temperature=1.5)
    assert torch.equal(first, second)
    # Beam search's best beam scores at least as well as greedy under the model.
    greedy = model.generate(
        **inputs, max_new_tokens=5, do_sample=False, output_scores=True, return_dict_in_generate=True
    )
    assert greedy.sequences.shape[0] == 3


def test_eager_and_sdpa_agree(tiny, batch, saved):
    eager = AutoModelForImageTextToText.from_pretrained(saved, attn_implementation="eager")
    sdpa = AutoModelForImageTextToText.from_pretrained(saved, attn_implementation="sdpa")
    assert eager.config.text_config._attn_implementation == "eager"
    assert sdpa.config.text_config._attn_implementation == "sdpa"
    with torch.no_grad():
        assert torch.allclose(eager(**batch).logits, sdpa(**batch).logits, atol=1e-4)


def test_gradient_checkpointing_gives_the_same_gradients(saved, batch):
    grads = []
    for checkpointing in (False, True):
        model = AutoModelForImageTextToText.from_pretrained(saved).train()
        if checkpointing:
            model.gradient_checkpointing_enable()
            assert model.is_gradient_checkpointing
        model(**batch).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-5), name


def test_bf16(saved, batch):
    model = AutoModelForImageTextToText.from_pretrained(saved, dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16
    with torch.no_grad():
        out = model(**batch)
    assert out.logits.dtype == torch.bfloat16 and torch.isfinite(out.logits).all()
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values")}
    assert model.generate(**inputs, max_new_tokens=3).shape[0] == 3


def test_device_map_auto_splits_on_whole_blocks(saved, batch, tiny, tmp_path):
    """With too little CPU memory, `device_map="auto"` offloads whole blocks to disk and still computes the same."""
    model, _ = tiny
    assert {"CLIPEncoderLayer", "T5Block"} <= set(model._no_split_modules)
    dispatched = AutoModelForImageTextToText.from_pretrained(
        saved, device_map="auto", max_memory={"cpu": 120_000}, offload_folder=tmp_path
    )
    placements = set(dispatched.hf_device_map.values())
    assert placements == {"cpu", "disk"}, dispatched.hf_device_map
    for name in dispatched.hf_device_map:
        assert not re.search(r"\.(layers|block)\.\d+\.", name), f"{name}: a no-split block was split"
    with torch.no_grad():
        assert torch.allclose(dispatched(**batch).logits, model(**batch).logits, atol=1e-5)


def test_text_only_batches_and_empty_image_batches(tiny):
    model, processor = tiny
    text_only = processor(text=["USER: hello ASSISTANT: ", "hi"], text_target=["Yes", "No"])
    assert "pixel_values" not in text_only
    with torch.no_grad():
        plain = model(**text_only).loss
        empty = model(**text_only, pixel_values=torch.zeros(0, 3, 32, 32)).loss
    assert torch.isfinite(plain) and torch.equal(plain, empty)
    # With zero images the projector is still in the autograd graph (zero gradient), as DeepSpeed ranks need.
    model.zero_grad()
    model(**text_only, pixel_values=torch.zeros(0, 3, 32, 32)).loss.backward()
    projector_grad = model.model.multi_modal_projector.linear_1.weight.grad
    assert projector_grad is not None and torch.count_nonzero(projector_grad) == 0
    model.zero_grad()


def test_precomputed_image_embeds_equal_pixel_values(tiny, batch):
    model, _ = tiny
    with torch.no_grad():
        features = model.get_image_features(batch["pixel_values"])
        assert features.shape == (3, model.config.image_seq_length, model.config.text_config.d_model)
        a = model(**batch).logits
        b = model(**{k: v for k, v in batch.items() if k != "pixel_values"}, image_embeds=features).logits
    assert torch.equal(a, b)


def test_fresh_projector_is_lecun_normal_and_loading_keeps_saved_weights(tiny, tmp_path):
    # transformers does not call _init_weights on the parameterless projector container; the init must still apply
    # (std 0.02 would hand T5 image tokens ~70x smaller than its text embeddings).
    model, processor = tiny
    config = copy.deepcopy(model.config)
    config.vision_config.hidden_size, config.vision_config.intermediate_size = 96, 192
    torch.manual_seed(0)
    projector = CLIPFlanT5ForConditionalGeneration(config).model.multi_modal_projector
    for linear in (projector.linear_1, projector.linear_2):
        expected = linear.in_features**-0.5
        assert abs(linear.weight.std().item() / expected - 1) < 0.1, (linear, linear.weight.std().item(), expected)
        assert torch.count_nonzero(linear.bias) == 0
    # ...and never over weights that from_pretrained loaded.
    model.save_pretrained(tmp_path)
    reloaded = CLIPFlanT5ForConditionalGeneration.from_pretrained(tmp_path)
    for name in ("linear_1", "linear_2"):
        saved = getattr(model.model.multi_modal_projector, name).weight
        assert torch.equal(getattr(reloaded.model.multi_modal_projector, name).weight, saved)


def test_stage1_projector_loading(tiny, tmp_path):
    model, _ = tiny
    projector = model.model.multi_modal_projector
    for prefix in ("model.", "", "base_model.model."):
        weights = {
            f"{prefix}mm_projector.0.weight": torch.randn_like(projector.linear_1.weight),
            f"{prefix}mm_projector.0.bias": torch.randn_like(projector.linear_1.bias),
            f"{prefix}mm_projector.2.weight": torch.randn_like(projector.linear_2.weight),
            f"{prefix}mm_projector.2.bias": torch.randn_like(projector.linear_2.bias),
        }
        torch.save(weights, tmp_path / "mm_projector.bin")
        fresh = CLIPFlanT5ForConditionalGeneration(model.config)
        load_original_projector(fresh, tmp_path)
        assert torch.equal(
            fresh.model.multi_modal_projector.linear_1.weight, weights[f"{prefix}mm_projector.0.weight"]
        )
        assert torch.equal(fresh.model.multi_modal_projector.linear_2.bias, weights[f"{prefix}mm_projector.2.bias"])
    torch.save({"mm_projector.0.weight": torch.zeros(3, 3)}, tmp_path / "bad.bin")
    with pytest.raises(ValueError, match="shape"):
        load_original_projector(CLIPFlanT5ForConditionalGeneration(model.config), tmp_path / "bad.bin")
    torch.save({"something.else": torch.zeros(3)}, tmp_path / "none.bin")
    with pytest.raises(ValueError, match="no 'mm_projector.' tensors"):
        load_original_projector(CLIPFlanT5ForConditionalGeneration(model.config), tmp_path / "none.bin")


def test_differing_duplicate_embedding_warns_and_uses_shared(original_folder, tmp_path):
    folder = tmp_path / "corrupt"
    shutil.copytree(original_folder, folder)
    shard = next(
        p
        for p in sorted(folder.glob("pytorch_model-*.bin"))
        if "encoder.embed_tokens.weight" in torch.load(p, weights_only=True)
    )
    state = torch.load(shard, weights_only=True)
    state["encoder.embed_tokens.weight"] = state["encoder.embed_tokens.weight"] + 1
    torch.save(state, shard)
    reference = CLIPFlanT5ForConditionalGeneration.from_pretrained(original_folder)
    with pytest.warns(UserWarning, match="encoder.embed_tokens.weight differs from shared.weight"):
        loaded = CLIPFlanT5ForConditionalGeneration.from_pretrained(folder)
    assert torch.equal(loaded.get_input_embeddings().weight, reference.get_input_embeddings().weight)


def test_model_errors_name_the_problem(tiny, batch):
    model, _ = tiny
    with pytest.raises(ValueError, match="placeholder tokens .* image features"):
        model(**{**batch, "pixel_values": batch["pixel_values"][:2]})
    with pytest.raises(TypeError, match="floating-point"):
        model(**{**batch, "pixel_values": (batch["pixel_values"] * 100).to(torch.uint8)})
    with pytest.raises(ValueError, match="no pixel_values"):
        model(**{k: v for k, v in batch.items() if k != "pixel_values"})
    with pytest.raises(ValueError, match="shape \\(num_images, 3, height, width\\)"):
        model(**{**batch, "pixel_values": batch["pixel_values"][0]})
    with pytest.raises(TypeError, match="integer"):
        model(**{**batch, "input_ids": batch["input_ids"].float()})


def test_processor_errors_name_the_problem(tiny, tmp_path):
    _, processor = tiny
    image = make_images([(10, 10)])[0]
    with pytest.raises(ValueError, match="1 '<image>' placeholder.* 2 image"):
        processor(images=[image, image], text=["<image> hi"])
    with pytest.raises(ValueError, match="2 '<image>' placeholder.* 1 image"):
        processor(images=[image], text=["<image> <image>"])
    with pytest.raises(ValueError, match="would cut image placeholder"):
        processor(images=[image], text=["a b c <image>"], truncation=True, max_length=5)
    truncated = processor(images=[image], text=["<image> " + "word " * 50], truncation=True, max_length=30)
    assert truncated["input_ids"].shape[1] == 30
    with pytest.raises(FileNotFoundError, match="not found"):
        processor(images=[tmp_path / "missing.png"], text=["<image>"])
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        processor(images=[tmp_path / "empty.png"], text=["<image>"])
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    with pytest.raises(ValueError, match="not a readable image"):
        processor(images=[tmp_path / "corrupt.png"], text=["<image>"])
    image.save(tmp_path / "big.png")
    strict = CLIPFlanT5Processor(
        image_processor=processor.image_processor,
        tokenizer=processor.tokenizer,
        image_seq_length=16,
        max_image_pixels=50,
    )
    with pytest.raises(ValueError, match="decompression bomb"):
        strict(images=[tmp_path / "big.png"], text=["<image>"])
    import numpy as np

    with pytest.raises(ValueError, match="empty"):
        processor(images=[np.zeros((0, 4, 3), dtype=np.uint8)], text=["<image>"])
    with pytest.raises(ValueError, match="must not contain"):
        processor(text=["<image>"], images=[image], text_target=["<image>"])


def test_chat_template_renders_the_stage2_prompt(tiny):
    _, processor = tiny
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is in the image?"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    assert prompt == (
        "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
        "detailed, and polite answers to the user's questions. USER: <image>\nWhat is in the image? ASSISTANT: "
    )
    assert prompt == vqa_prompt("x").split("<image>")[0] + "<image>\nWhat is in the image? ASSISTANT: "
    text_only = processor.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True)
    assert text_only.endswith("questions. USER: Hi ASSISTANT: ")
    multi = processor.apply_chat_template(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Q1"},
            {"role": "assistant", "content": "A1"},
            {"role": "user", "content": "Q2"},
        ],
        add_generation_prompt=True,
    )
    assert multi == "Be brief. USER: Q1 ASSISTANT: A1 USER: Q2 ASSISTANT: "


def test_cli_help_and_env(capsys):
    from transformers_clipflant5.cli import main

    result = subprocess.run(
        [sys.executable, "-m", "transformers_clipflant5", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "usage: clip-flant5" in result.stdout
    with pytest.raises(SystemExit) as exit_info:
        main(["env"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "- transformers:" in printed and "attention backends" in printed
