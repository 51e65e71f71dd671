"""`clip-flant5 convert`: original-layout checkpoints to self-contained Hub folders (tiny models, offline)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForImageTextToText, AutoProcessor, T5Tokenizer

from tests.support.cli import run_convert
from tests.support.folders import EXPECTED_FILES, files_in
from tests.support.hub import hub_cache
from tests.support.images import make_images
from tests.support.models import save_model_folder
from tests.support.original_reference import save_original_checkpoint, vqa_prompt, write_original_projector
from tests.support.paths import REPO_ROOT
from transformers_clipflant5 import CLIPFlanT5ForConditionalGeneration, CLIPFlanT5Processor
from transformers_clipflant5.hub.convert_original import convert
from transformers_clipflant5.hub.folder_checks import (
    REMOTE_CODE_FILES,
    check_model_folder,
    check_projector_folder,
    safetensors_keys,
)
from transformers_clipflant5.original import load_original_projector
from transformers_clipflant5.projector import load_projector
from transformers_clipflant5.testing.tiny import build_tiny_model, train_tiny_sentencepiece


def tensor_bytes(folder: Path) -> int:
    total = 0
    for name in safetensors_keys(folder):
        with safe_open(folder / name, framework="pt") as handle:
            total += sum(handle.get_tensor(key).nbytes for key in handle.keys())
    return total


def model_inputs(processor, images, texts):
    return processor(images=images, text=[vqa_prompt(text) for text in texts], text_target=["Yes"] * len(texts))


@pytest.fixture(scope="module")
def batch_images():
    return make_images([(20, 40), (50, 30), (33, 33)], seed=3)


@pytest.fixture(scope="module")
def converted(original_folder, tmp_path_factory):
    output = tmp_path_factory.mktemp("converted") / "clip-flant5-tiny"
    assert run_convert([str(original_folder), str(output), "--repo-id", "my-org/clip-flant5-tiny"]) == 0
    return output


@pytest.fixture(scope="module")
def reference_logits(original_folder, batch_images):
    """Logits of the original-layout folder loaded directly (the conversion must not change them)."""
    model = CLIPFlanT5ForConditionalGeneration.from_pretrained(original_folder).eval()
    processor = CLIPFlanT5Processor.from_pretrained(original_folder)
    inputs = model_inputs(processor, batch_images, ["a red circle", "a blue square on the left", "two crosses"])
    with torch.no_grad():
        return model(**inputs).logits, inputs


def test_converted_folder_is_complete_and_self_contained(converted):
    assert files_in(converted) == EXPECTED_FILES
    check_model_folder(converted)
    config = json.loads((converted / "config.json").read_text())
    assert config["model_type"] == "clip_flant5"
    assert config["auto_map"] == {
        "AutoConfig": "configuration_clip_flant5.CLIPFlanT5Config",
        "AutoModel": "modeling_clip_flant5.CLIPFlanT5Model",
        "AutoModelForImageTextToText": "modeling_clip_flant5.CLIPFlanT5ForConditionalGeneration",
        "AutoModelForSeq2SeqLM": "modeling_clip_flant5.CLIPFlanT5ForConditionalGeneration",
    }
    processor_config = json.loads((converted / "processor_config.json").read_text())
    assert processor_config["auto_map"] == {"AutoProcessor": "processing_clip_flant5.CLIPFlanT5Processor"}
    # The remote code is the package's own, byte for byte.
    package = REPO_ROOT / "src" / "transformers_clipflant5"
    for name in REMOTE_CODE_FILES:
        assert (converted / name).read_bytes() == (package / name).read_bytes()
    assert "ASSISTANT" in (converted / "chat_template.jinja").read_text()


def test_each_tensor_is_stored_once(converted, original_folder):
    (keys,) = safetensors_keys(converted).values()
    assert len(keys) == len(set(keys))
    embedding_like = sorted(
        key for key in keys if key.endswith(("shared.weight", "embed_tokens.weight", "lm_head.weight"))
    )
    # One shared embedding (no encoder/decoder/top-level copies) and FlanT5's separate LM head.
    assert embedding_like == ["lm_head.weight", "model.language_model.shared.weight"]
    assert any(key.startswith("model.vision_tower.encoder.layers.") for key in keys)
    assert {key for key in keys if "projector" in key} == {
        f"model.multi_modal_projector.linear_{i}.{p}" for i in (1, 2) for p in ("weight", "bias")
    }
    # Every tensor of the original checkpoint is there, with its value (the three embedding copies excepted).
    original = {}
    for path in sorted(original_folder.glob("pytorch_model*.bin")):
        original.update(torch.load(path, map_location="cpu", weights_only=True))
    assert len(keys) == len(original) - 3
    with safe_open(converted / "model.safetensors", framework="pt") as handle:
        assert torch.equal(handle.get_tensor("model.language_model.shared.weight"), original["shared.weight"])
        assert torch.equal(handle.get_tensor("lm_head.weight"), original["lm_head.weight"])
        assert torch.equal(
            handle.get_tensor("model.multi_modal_projector.linear_2.bias"), original["mm_projector.2.bias"]
        )
        # The real repos say vision_tower.vision_tower.vision_model.*; transformers 5's CLIP drops "vision_model.".
        tower_key = next(key for key in original if key.endswith("pre_layrnorm.weight"))
        assert torch.equal(handle.get_tensor("model.vision_tower.pre_layrnorm.weight"), original[tower_key])


def test_auto_classes_give_identical_logits(converted, reference_logits, batch_images):
    expected, reference_inputs = reference_logits
    model = AutoModelForImageTextToText.from_pretrained(converted).eval()
    processor = AutoProcessor.from_pretrained(converted)
    assert isinstance(model, CLIPFlanT5ForConditionalGeneration)
    assert isinstance(processor, CLIPFlanT5Processor)
    inputs = model_inputs(processor, batch_images, ["a red circle", "a blue square on the left", "two crosses"])
    for key in ("input_ids", "attention_mask", "labels", "pixel_values"):
        assert torch.equal(inputs[key], reference_inputs[key]), key
    with torch.no_grad():
        logits = model(**inputs).logits
    assert torch.equal(logits, expected)


def test_dtype_bfloat16_halves_the_weights(original_folder, converted, reference_logits, batch_images, tmp_path):
    output = tmp_path / "bf16"
    assert run_convert([str(original_folder), str(output), "--dtype", "bfloat16"]) == 0
    check_model_folder(output)
    with safe_open(output / "model.safetensors", framework="pt") as handle:
        assert {handle.get_tensor(key).dtype for key in handle.keys()} == {torch.bfloat16}
    assert tensor_bytes(output) * 2 == tensor_bytes(converted)
    assert (output / "model.safetensors").stat().st_size < 0.52 * (converted / "model.safetensors").stat().st_size
    assert json.loads((output / "config.json").read_text())["dtype"] == "bfloat16"
    model = AutoModelForImageTextToText.from_pretrained(output)
    assert model.dtype == torch.bfloat16
    expected, inputs = reference_logits
    with torch.no_grad():
        logits = model(**inputs).logits.float()
    assert (logits - expected).abs().max() < 0.1 * expected.abs().max()
    assert "| Weights dtype | bfloat16 |" in (output / "README.md").read_text()


def test_bfloat16_checkpoint_stays_bfloat16_by_default(tmp_path):
    model, _ = build_tiny_model(seed=1)
    source = save_original_checkpoint(model.to(torch.bfloat16), train_tiny_sentencepiece(), tmp_path / "src")
    T5Tokenizer.from_pretrained(source, extra_ids=100).save_pretrained(source)
    convert(str(source), tmp_path / "out")
    with safe_open(tmp_path / "out" / "model.safetensors", framework="pt") as handle:
        assert {handle.get_tensor(key).dtype for key in handle.keys()} == {torch.bfloat16}


def test_max_shard_size_writes_several_shards(original_folder, reference_logits, tmp_path):
    output = tmp_path / "sharded"
    assert run_convert([str(original_folder), str(output), "--max-shard-size", "100KB"]) == 0
    check_model_folder(output)
    shards = safetensors_keys(output)
    assert len(shards) >= 3
    index = json.loads((output / "model.safetensors.index.json").read_text())
    all_keys = [key for keys in shards.values() for key in keys]
    assert len(all_keys) == len(set(all_keys)) == len(index["weight_map"])
    assert not (output / "model.safetensors").exists()
    expected, inputs = reference_logits
    with torch.no_grad():
        assert torch.equal(AutoModelForImageTextToText.from_pretrained(output)(**inputs).logits, expected)


def test_save_pretrained_after_original_load_writes_our_layout(original_folder, reference_logits, tmp_path):
    """Loading an original checkpoint must not make save_pretrained write original key names beside our config."""
    CLIPFlanT5ForConditionalGeneration.from_pretrained(original_folder).save_pretrained(tmp_path)
    (keys,) = safetensors_keys(tmp_path).values()
    assert "model.language_model.shared.weight" in keys and not any(key.startswith("mm_projector") for key in keys)
    expected, inputs = reference_logits
    with torch.no_grad():
        assert torch.equal(CLIPFlanT5ForConditionalGeneration.from_pretrained(tmp_path)(**inputs).logits, expected)


def test_output_folder_safety(original_folder, converted, tmp_path, capsys):
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("keep me")
    assert run_convert([str(original_folder), str(occupied)]) == 2
    assert "not empty" in capsys.readouterr().err
    # --overwrite only ever deletes a previous conversion.
    assert run_convert([str(original_folder), str(occupied), "--overwrite"]) == 2
    assert "refusing to delete" in capsys.readouterr().err
    assert (occupied / "notes.txt").read_text() == "keep me"
    previous = tmp_path / "previous"
    assert run_convert([str(converted), str(previous)]) == 0  # a folder of ours converts too (re-shard / re-cast)
    (previous / "stale.bin").write_bytes(b"old")
    assert run_convert([str(original_folder), str(previous), "--overwrite"]) == 0
    assert files_in(previous) == EXPECTED_FILES
    # Writing into, or around, the source folder is refused.
    assert run_convert([str(original_folder), str(original_folder / "out")]) == 2
    assert "is inside the source" in capsys.readouterr().err
    assert run_convert([str(original_folder), str(original_folder.parent), "--overwrite"]) == 2
    assert "contains the source" in capsys.readouterr().err
    assert (original_folder / "config.json").is_file()


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in files_in(folder)}


def test_overwrite_that_fails_midway_leaves_the_previous_conversion_intact(
    original_folder, converted, tmp_path, monkeypatch, capsys
):
    previous = tmp_path / "previous"
    assert run_convert([str(converted), str(previous), "--repo-id", "my-org/previous"]) == 0
    before = folder_bytes(previous)

    # The new conversion dies after the weights are written (a full disk, a crash), before the processor files.
    def disk_full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(CLIPFlanT5Processor, "save_pretrained", disk_full)
        assert run_convert([str(original_folder), str(previous), "--overwrite"]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert folder_bytes(previous) == before
    # Nothing half-written is left behind; the hidden lock file is kept (see output_lock).
    assert sorted(path.name for path in tmp_path.iterdir()) == [".previous.lock", "previous"]

    # A conversion that succeeds replaces the folder whole: nothing of the previous one stays.
    (previous / "stale.txt").write_text("from an older conversion")
    assert run_convert([str(original_folder), str(previous), "--overwrite"]) == 0
    assert files_in(previous) == EXPECTED_FILES
    assert "my-org/previous" not in (previous / "README.md").read_text()
    assert sorted(path.name for path in tmp_path.iterdir()) == [".previous.lock", "previous"]


def test_an_incomplete_original_checkpoint_is_refused(tiny, tmp_path, capsys):
    model, _ = tiny
    source = save_original_checkpoint(model, train_tiny_sentencepiece(), tmp_path / "incomplete")
    T5Tokenizer.from_pretrained(source, extra_ids=100).save_pretrained(source)
    state = torch.load(source / "pytorch_model.bin", weights_only=True)
    del state["encoder.block.0.layer.0.SelfAttention.q.weight"]
    torch.save(state, source / "pytorch_model.bin")
    assert run_convert([str(source), str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "model.language_model.encoder.block.0.layer.0.SelfAttention.q.weight" in error and "missing" in error
    assert not (tmp_path / "out").exists()


# Each of the two settings the processor and the model must share, made inconsistent in a folder of ours (the
# re-shard / re-cast source): a processor expanding each image to another number of placeholders, or a model
# expecting another image token, would score wrongly without an error.
@pytest.mark.parametrize(
    "file,key,value,message",
    [
        ("processor_config.json", "image_seq_length", 17, "image_seq_length: model 16, processor 17"),
        ("config.json", "image_token_id", 255, "image_token_id: model 255, processor 256"),
    ],
)
def test_a_processor_that_disagrees_with_the_model_is_refused(tiny, tmp_path, file, key, value, message):
    source = tmp_path / "ours"
    save_model_folder(tiny, source)
    settings = json.loads((source / file).read_text(encoding="utf-8"))
    assert settings[key] != value
    settings[key] = value
    (source / file).write_text(json.dumps(settings), encoding="utf-8")
    with pytest.raises(ValueError, match=rf"The processor and the model read from .* disagree \({message}\)"):
        convert(str(source), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_source_without_a_checkpoint_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert run_convert([str(tmp_path / "empty"), str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "holds no checkpoint" in error and "mm_projector.bin" in error
    assert not (tmp_path / "out").exists()
    assert run_convert([str(tmp_path / "empty"), str(tmp_path / "out"), "--max-shard-size", "lots"]) == 2
    assert run_convert([]) == 2


def test_projector_conversion_and_loading(tmp_path, capsys):
    trained, _ = build_tiny_model(seed=5)
    source = write_original_projector(trained, tmp_path / "clip-flant5-xl-stage-1")
    output = tmp_path / "converted-projector"
    assert run_convert([str(source), str(output)]) == 0
    assert "(projector)" in capsys.readouterr().out
    assert files_in(output) == {"README.md", "projector.safetensors", "projector_config.json"}
    check_projector_folder(output)
    projector_config = json.loads((output / "projector_config.json").read_text())
    assert projector_config["text_model"] == "google/flan-t5-xl"
    assert projector_config["vision_model"] == "openai/clip-vit-large-patch14-336"
    assert projector_config["dtype"] == "float32"
    expected = trained.model.multi_modal_projector.state_dict()

    # Ours and the original file load to the same weights, through a folder or a file.
    for path in (output, output / "projector.safetensors", source, source / "mm_projector.bin"):
        fresh, _ = build_tiny_model(seed=6)
        assert not torch.equal(fresh.model.multi_modal_projector.linear_1.weight, expected["linear_1.weight"])
        load_projector(fresh, path)
        loaded = fresh.model.multi_modal_projector.state_dict()
        assert all(torch.equal(loaded[name], expected[name]) for name in expected), path

    # A projector for another text width is refused with the reason.
    wider, _ = build_tiny_model(seed=0, d_model=48)
    with pytest.raises(ValueError, match="trained for another vision tower or text model"):
        load_projector(wider, output)
    with pytest.raises(OSError, match="holds neither"):
        load_projector(wider, tmp_path)

    # --dtype applies to projectors too.
    assert run_convert([str(source), str(tmp_path / "bf16-projector"), "--dtype", "bfloat16"]) == 0
    with safe_open(tmp_path / "bf16-projector" / "projector.safetensors", framework="pt") as handle:
        assert {handle.get_tensor(key).dtype for key in handle.keys()} == {torch.bfloat16}


def test_convert_by_repo_id_from_the_hf_cache(original_folder, reference_logits, tmp_path):
    """`clip-flant5 convert zhiqiulin/clip-flant5-xl DST` offline, reading the repo from HF_HUB_CACHE."""
    cache = tmp_path / "hub"
    hub_cache(cache, "zhiqiulin/clip-flant5-xl", original_folder)
    output = tmp_path / "clip-flant5-xl"
    env = dict(os.environ, HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "home"))
    result = subprocess.run(
        [sys.executable, "-m", "transformers_clipflant5", "convert", "zhiqiulin/clip-flant5-xl", str(output)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Converted zhiqiulin/clip-flant5-xl (model)" in result.stdout
    assert files_in(output) == EXPECTED_FILES
    expected, inputs = reference_logits
    with torch.no_grad():
        assert torch.equal(AutoModelForImageTextToText.from_pretrained(output)(**inputs).logits, expected)
    card = (output / "README.md").read_text()
    # The source is known: the card is the XL's, linked to its Hub repo, with the published results.
    assert "# CLIP-FlanT5-XL" in card
    assert "(https://huggingface.co/zhiqiulin/clip-flant5-xl)" in card
    assert "model-index" in card and "| Winoground | Group score |" in card


def test_dry_run_reads_and_writes_nothing(tmp_path, capsys):
    assert run_convert(["zhiqiulin/clip-flant5-xxl", str(tmp_path / "out"), "--dry-run"]) == 0
    assert "would convert zhiqiulin/clip-flant5-xxl" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()


# Each setting the model path refuses (config_from_original) is refused for a stage-1 projector too, instead of a
# projector_config.json that silently says something else ("cls" written as "default", layer 99 copied).
@pytest.mark.parametrize(
    "setting,value,message",
    [
        ("mm_vision_select_feature", "cls", "mm_vision_select_feature 'cls' is not one of"),
        ("mm_use_im_start_end", True, "mm_use_im_start_end"),
        ("mm_vision_select_layer", 99, "mm_vision_select_layer=99 is outside .* from -25 to 24"),
        ("mm_projector_type", None, "without mm_projector_type"),
    ],
)
def test_projector_settings_the_model_path_refuses_are_refused(tmp_path, capsys, setting, value, message):
    trained, _ = build_tiny_model(seed=5)
    source = write_original_projector(trained, tmp_path / "stage-1")
    flat = json.loads((source / "config.json").read_text())
    if value is None:
        del flat[setting]
    else:
        flat[setting] = value
    (source / "config.json").write_text(json.dumps(flat))
    assert run_convert([str(source), str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert str(source / "config.json") in error and len(error.strip().splitlines()) == 1
    assert re.search(message, error), error
    assert not (tmp_path / "out").exists()


def _projector_tensor_only(path: Path) -> None:
    torch.save(torch.zeros(3), path)


def _projector_second_layer_only(path: Path) -> None:
    state = torch.load(path, weights_only=True)
    torch.save({key: value for key, value in state.items() if "mm_projector.2." in key}, path)


def _projector_int_weight(path: Path) -> None:
    state = torch.load(path, weights_only=True)
    state["model.mm_projector.0.weight"] = state["model.mm_projector.0.weight"].to(torch.int64)
    torch.save(state, path)


def _projector_wrong_shape(path: Path) -> None:
    state = torch.load(path, weights_only=True)
    state["model.mm_projector.2.weight"] = state["model.mm_projector.2.weight"][:, :-1].clone()
    torch.save(state, path)


def _projector_cut_off(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# A malformed mm_projector.bin is refused in one line naming it and what is wrong, by `convert` and by
# `load_original_projector` alike, instead of an AttributeError / KeyError / TypeError traceback.
@pytest.mark.parametrize(
    "damage,message",
    [
        (_projector_tensor_only, "holds a Tensor, not a dict of tensors"),
        (
            _projector_second_layer_only,
            r"lacks the projector tensors \['mm_projector.0.bias', 'mm_projector.0.weight'\]",
        ),
        (_projector_int_weight, "model.mm_projector.0.weight .* is torch.int64, not a floating-point tensor"),
        (_projector_wrong_shape, "do not make one mlp2x_gelu projector"),
        (_projector_cut_off, "cannot be read as a PyTorch checkpoint, perhaps cut off or damaged"),
    ],
)
def test_a_malformed_mm_projector_bin_is_named_with_what_is_wrong(tmp_path, capsys, damage, message):
    trained, _ = build_tiny_model(seed=5)
    source = write_original_projector(trained, tmp_path / "stage-1")
    damage(source / "mm_projector.bin")
    assert run_convert([str(source), str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {source / 'mm_projector.bin'}") or f"in {source / 'mm_projector.bin'}" in error
    assert len(error.strip().splitlines()) == 1 and re.search(message, error), error
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match=message):
        load_original_projector(trained, source)
