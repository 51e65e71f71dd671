"""Reading the original release's checkpoints as they are: by folder and by repo id from the Hub cache, stage-1
projector pickles, duplicated embeddings, and incomplete or foreign checkpoints refused with the keys named."""

import json
import re
import shutil

import pytest
import torch
from transformers import AutoProcessor

from tests.support.cli import run_convert
from tests.support.hub import hub_cache
from tests.support.paths import REPO_ROOT
from transformers_clipflant5 import CLIPFlanT5ForConditionalGeneration, CLIPFlanT5Processor, load_original_projector
from transformers_clipflant5.original import config_from_original
from transformers_clipflant5.original.checkpoint import original_image_processor


def shard_holding(folder, key: str):
    """The `.bin` shard of an original checkpoint that stores `key`."""
    return next(p for p in sorted(folder.glob("pytorch_model*.bin")) if key in torch.load(p, weights_only=True))


def test_load_by_repo_id_from_offline_hub_cache(tmp_path, original_folder, tiny, images):
    """The original layout by repo id, as `zhiqiulin/clip-flant5-xxl` is loaded, gives our model's logits."""
    model, processor = tiny
    batch = processor(images=images[:2], text=["<image> a", "<image> b c"], text_target=["Yes", "No"])
    cache = hub_cache(tmp_path, "zhiqiulin/clip-flant5-tiny", original_folder)
    loaded = CLIPFlanT5ForConditionalGeneration.from_pretrained("zhiqiulin/clip-flant5-tiny", cache_dir=cache)
    loaded_processor = CLIPFlanT5Processor.from_pretrained("zhiqiulin/clip-flant5-tiny", cache_dir=cache)
    assert loaded_processor.image_token_id == processor.image_token_id
    assert loaded_processor.image_processor.do_pad is True
    with torch.no_grad():
        assert torch.allclose(loaded(**batch).logits, model(**batch).logits, atol=1e-6)


def edited_copy(original_folder, folder, key: str, edit):
    """A copy of the original checkpoint in `folder`, with `edit(state)` applied to the shard that stores `key`."""
    shutil.copytree(original_folder, folder)
    shard = shard_holding(folder, key)
    state = torch.load(shard, weights_only=True)
    edit(state)
    torch.save(state, shard)
    return folder


def test_missing_weight_is_an_error_naming_it(original_folder, tmp_path):
    key = "encoder.block.0.layer.0.SelfAttention.q.weight"
    folder = edited_copy(original_folder, tmp_path / "incomplete", key, lambda state: state.pop(key))
    with pytest.raises(
        ValueError, match=r"missing from the checkpoint.*encoder\.block\.0\.layer\.0\.SelfAttention\.q"
    ):
        CLIPFlanT5ForConditionalGeneration.from_pretrained(folder)
    # An explicit opt-out for a key known to be harmless loads, leaving that one weight freshly initialised.
    ours = "model.language_model.encoder.block.0.layer.0.SelfAttention.q.weight"
    loaded = CLIPFlanT5ForConditionalGeneration.from_pretrained(folder, allowed_unmatched_keys=[ours])
    reference = CLIPFlanT5ForConditionalGeneration.from_pretrained(original_folder)
    assert not torch.equal(loaded.state_dict()[ours], reference.state_dict()[ours])
    other = "model.language_model.encoder.block.0.layer.0.SelfAttention.k.weight"
    assert torch.equal(loaded.state_dict()[other], reference.state_dict()[other])


def test_unexpected_weight_is_an_error_naming_it(original_folder, tmp_path):
    # A key the original's mapping would route to the projector, which has no such layer.
    foreign = {"mm_projector.4.weight": torch.zeros(2, 2)}
    folder = edited_copy(original_folder, tmp_path / "foreign", "shared.weight", lambda state: state.update(foreign))
    with pytest.raises(ValueError, match=r"not in the model.*mm_projector\.4\.weight"):
        CLIPFlanT5ForConditionalGeneration.from_pretrained(folder)


def test_mismatched_shape_is_an_error_naming_it(original_folder, tmp_path):
    """transformers' own report of the mismatch is muted with its other loading messages: ours lists the keys."""
    key = "encoder.block.0.layer.0.SelfAttention.q.weight"
    shape = []

    def widen(state):
        shape.extend(state[key].shape)
        state[key] = torch.zeros(shape[0] + 1, shape[1])

    folder = edited_copy(original_folder, tmp_path / "mismatched", key, widen)
    rows, columns = shape
    ours = "model.language_model.encoder.block.0.layer.0.SelfAttention.q.weight"
    with pytest.raises(
        ValueError, match=rf"shapes that differ.*{re.escape(ours)} \(checkpoint \({rows + 1}, {columns}\)"
    ):
        CLIPFlanT5ForConditionalGeneration.from_pretrained(folder)
    # transformers' explicit opt-in still loads, leaving that weight freshly initialised.
    loaded = CLIPFlanT5ForConditionalGeneration.from_pretrained(folder, ignore_mismatched_sizes=True)
    assert loaded.state_dict()[ours].shape == (rows, columns)


class NotATensor:
    """Any object a checkpoint should not hold; `weights_only=True` refuses to unpickle it."""


def _refused_pickle(shard):
    state = torch.load(shard, weights_only=True)
    torch.save({**state, "extra": NotATensor()}, shard)


def _cut_off(shard):
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])


# A damaged shard of a sharded checkpoint is named, and a refused pickle is said to hold objects other than tensors,
# never with torch's advice to load it with weights_only=False; the command line gets the same one line.
@pytest.mark.parametrize(
    "damage,message",
    [
        (_refused_pickle, "holds Python objects other than tensors"),
        (_cut_off, "cannot be read as a PyTorch checkpoint, perhaps cut off or damaged"),
    ],
)
def test_a_damaged_shard_is_named(original_folder, tmp_path, capsys, damage, message):
    folder = tmp_path / "damaged"
    shutil.copytree(original_folder, folder)
    shards = sorted(folder.glob("pytorch_model-*.bin"))
    assert len(shards) == 2
    damage(shards[1])
    with pytest.raises(ValueError, match=f"{re.escape(str(shards[1]))} {message}") as raised:
        CLIPFlanT5ForConditionalGeneration.from_pretrained(folder)
    assert "weights_only" not in str(raised.value) and shards[0].name not in str(raised.value)
    assert run_convert([str(folder), str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert str(shards[1]) in error and message in error and "weights_only" not in error
    assert error.strip().splitlines()[-1].startswith("error:")


def test_differing_duplicate_embedding_warns_and_uses_shared(original_folder, tmp_path):
    folder = tmp_path / "corrupt"
    shutil.copytree(original_folder, folder)
    shard = shard_holding(folder, "encoder.embed_tokens.weight")
    state = torch.load(shard, weights_only=True)
    state["encoder.embed_tokens.weight"] = state["encoder.embed_tokens.weight"] + 1
    torch.save(state, shard)
    reference = CLIPFlanT5ForConditionalGeneration.from_pretrained(original_folder)
    with pytest.warns(UserWarning, match="encoder.embed_tokens.weight differs from shared.weight"):
        loaded = CLIPFlanT5ForConditionalGeneration.from_pretrained(folder)
    assert torch.equal(loaded.get_input_embeddings().weight, reference.get_input_embeddings().weight)


def test_original_repo_is_not_an_auto_processor_folder(original_folder):
    """transformers' Auto classes read the original repos as plain T5 ones: our classes are the way in."""
    assert not isinstance(AutoProcessor.from_pretrained(original_folder), CLIPFlanT5Processor)
    assert isinstance(CLIPFlanT5Processor.from_pretrained(original_folder), CLIPFlanT5Processor)


def test_stage1_projector_pickles(tiny, tmp_path):
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
        loaded = fresh.model.multi_modal_projector
        assert torch.equal(loaded.linear_1.weight, weights[f"{prefix}mm_projector.0.weight"])
        assert torch.equal(loaded.linear_2.bias, weights[f"{prefix}mm_projector.2.bias"])
    # A whole projector, for another width than the model's.
    other_width = {
        f"mm_projector.{i}.{p}": torch.zeros((3, 3) if p == "weight" else (3,))
        for i in (0, 2)
        for p in ("weight", "bias")
    }
    torch.save(other_width, tmp_path / "bad.bin")
    with pytest.raises(ValueError, match="shape"):
        load_original_projector(CLIPFlanT5ForConditionalGeneration(model.config), tmp_path / "bad.bin")
    torch.save({"something.else": torch.zeros(3)}, tmp_path / "none.bin")
    with pytest.raises(ValueError, match="no 'mm_projector.' tensors"):
        load_original_projector(CLIPFlanT5ForConditionalGeneration(model.config), tmp_path / "none.bin")


@pytest.mark.parametrize("config", [{"mm_vision_tower": "openai/clip-vit-large-patch14-336"}, {}])
@pytest.mark.parametrize("aspect_ratio", ["pad", "square"])
def test_the_released_tower_gets_its_preprocessing_offline(config, aspect_ratio):
    """Every released checkpoint names openai/clip-vit-large-patch14-336 (the tests' checkpoints name a local tower
    folder instead): its preprocessing is known without the Hub, and the checkpoint's image_aspect_ratio decides the
    padding. The values are those of that repo's preprocessor_config.json."""
    processor = original_image_processor({**config, "image_aspect_ratio": aspect_ratio})
    assert processor.do_pad is (aspect_ratio == "pad")
    assert processor.do_resize and processor.size.shortest_edge == 336
    assert processor.do_center_crop and (processor.crop_size.height, processor.crop_size.width) == (336, 336)
    assert processor.resample == 3  # bicubic
    assert processor.do_rescale and processor.rescale_factor == pytest.approx(1 / 255)
    assert processor.do_normalize
    assert tuple(processor.image_mean) == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    assert tuple(processor.image_std) == pytest.approx((0.26862954, 0.26130258, 0.27577711))


@pytest.mark.parametrize(
    "fields,layer,strategy",
    [
        # Absent: the released checkpoints' values (the second-to-last layer, patch tokens only).
        ({}, -2, "default"),
        ({"mm_vision_select_layer": -2, "mm_vision_select_feature": "patch"}, -2, "default"),
        # LLaVA's "cls_patch" keeps the CLS token beside the patches (transformers' "full").
        ({"mm_vision_select_layer": -1, "mm_vision_select_feature": "cls_patch"}, -1, "full"),
        ({"mm_vision_select_layer": 5}, 5, "default"),
    ],
)
def test_the_vision_feature_fields_of_an_original_config_are_translated(fields, layer, strategy):
    original = json.loads((REPO_ROOT / "tests" / "fixtures" / "clip-flant5-xl-config.json").read_text())
    del original["mm_vision_select_layer"], original["mm_vision_select_feature"]
    config = config_from_original({**original, **fields})
    assert (config.vision_feature_layer, config.vision_feature_select_strategy) == (layer, strategy)
    # ViT-L/14 at 336 pixels: 24 x 24 patches, and the CLS token when it is kept.
    assert config.image_seq_length == (336 // 14) ** 2 + (strategy == "full")
