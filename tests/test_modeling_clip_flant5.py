"""The model as a transformers citizen: Auto classes, save/load, remote code, the Hub cache, generation (greedy, beam,
sampling, assisted, continued from a cache), attention backends, gradient checkpointing, dtypes, device maps,
transformers' output conventions, weight initialisation, and errors on bad input."""

import copy
import json
import os
import re
import stat
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch
from PIL import Image
from transformers import (
    AutoModelForImageTextToText,
    AutoModelForSeq2SeqLM,
    DynamicCache,
    EncoderDecoderCache,
    set_seed,
)
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.auto import AutoConfig, AutoImageProcessor, AutoModel, AutoProcessor

from tests.support.hub import hub_cache
from tests.support.images import make_images
from tests.support.original_reference import vqa_prompt
from transformers_clipflant5 import (
    CLIPFlanT5Config,
    CLIPFlanT5ForConditionalGeneration,
    CLIPFlanT5ImageProcessor,
    CLIPFlanT5Model,
    CLIPFlanT5Processor,
)
from transformers_clipflant5.hub.folder_checks import REMOTE_CODE_FILES
from transformers_clipflant5.projector import save_projector


PROMPTS = [vqa_prompt("a red circle"), vqa_prompt("a much longer caption about a purple star at the top"), "<image>"]


@pytest.fixture(scope="module")
def batch(tiny, images):
    _, processor = tiny
    return processor(images=images[:3], text=PROMPTS, text_target=["Yes", "No", "a red circle"])


@pytest.fixture(scope="module")
def inputs(batch):
    """The batch without labels: what `generate` takes."""
    return {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values")}


@pytest.fixture(scope="module")
def saved(tiny, tmp_path_factory):
    model, processor = tiny
    folder = tmp_path_factory.mktemp("ours")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


# ---------------------------------------------------------------------------------------------------------------------
# Loading, saving, remote code


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
    assert isinstance(processor.image_processor, CLIPFlanT5ImageProcessor)
    assert isinstance(AutoImageProcessor.from_pretrained(saved), CLIPFlanT5ImageProcessor)
    assert processor.image_seq_length == model.config.image_seq_length
    assert processor.chat_template == tiny[1].chat_template


def test_saved_folder_is_self_contained(saved):
    files = {path.name for path in saved.iterdir()}
    assert set(REMOTE_CODE_FILES) <= files
    assert "model.safetensors" in files and not any(name.endswith(".bin") for name in files)
    auto_map = json.loads((saved / "config.json").read_text())["auto_map"]
    assert auto_map == {
        "AutoConfig": "configuration_clip_flant5.CLIPFlanT5Config",
        "AutoModel": "modeling_clip_flant5.CLIPFlanT5Model",
        "AutoModelForImageTextToText": "modeling_clip_flant5.CLIPFlanT5ForConditionalGeneration",
        "AutoModelForSeq2SeqLM": "modeling_clip_flant5.CLIPFlanT5ForConditionalGeneration",
    }
    processor_config = json.loads((saved / "processor_config.json").read_text())
    assert processor_config["auto_map"]["AutoProcessor"].endswith("CLIPFlanT5Processor")
    image_config = processor_config.get("image_processor") or json.loads(
        (saved / "preprocessor_config.json").read_text()
    )
    assert image_config["auto_map"]["AutoImageProcessor"].endswith("CLIPFlanT5ImageProcessor")
    # Remote-code files import only torch, transformers, their usual helpers and each other.
    for name in REMOTE_CODE_FILES:
        imports = re.findall(r"^(?:from|import) (\S+)", (saved / name).read_text(), flags=re.MULTILINE)
        allowed = {"torch", "transformers", "huggingface_hub", "PIL", "numpy", "os", "dataclasses", "typing"}
        allowed |= {"collections", "pathlib", ""}
        assert {module.split(".")[0] for module in imports} <= allowed, (name, imports)
        # ...and know nothing of the original checkpoints' format.
        assert not re.search(r"mm_vision|mm_projector|weights_only|pickle", (saved / name).read_text()), name


def test_remote_code_loads_every_auto_class_without_the_package(saved, batch, tiny, tmp_path):
    """A fresh interpreter where `import transformers_clipflant5` fails loads the folder through trust_remote_code,
    with every Auto class the package registers, and the pipeline runs on it."""
    model, processor = tiny
    torch.save(dict(batch), tmp_path / "batch.pt")
    with torch.no_grad():
        torch.save(model(**batch).logits, tmp_path / "expected.pt")
    # The pipeline's answer, computed here by the package (not the remote code): generate on the processor's inputs.
    messages = [
        {
            "role": "user",
            "content": [{"type": "image", "image": Image.new("RGB", (40, 30))}, {"type": "text", "text": "Hi"}],
        }
    ]
    chat_inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
    with torch.no_grad():
        generated = model.generate(**chat_inputs, max_new_tokens=3)
    expected_answer = processor.batch_decode(generated, skip_special_tokens=True)[0]
    assert expected_answer.strip()
    script = textwrap.dedent(
        f"""
        import sys, importlib.abc
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] == "transformers_clipflant5":
                    raise ImportError("transformers_clipflant5 is blocked in this test")
        sys.meta_path.insert(0, Block())
        import torch
        from PIL import Image
        from transformers import (AutoImageProcessor, AutoModel, AutoModelForImageTextToText, AutoModelForSeq2SeqLM,
                                  AutoProcessor, pipeline)
        folder = {str(saved)!r}
        try:
            AutoModelForImageTextToText.from_pretrained(folder)
        except ValueError as error:
            print("without trust_remote_code:", type(error).__name__)
        else:
            raise SystemExit("loading must need trust_remote_code when the package is absent")
        batch = torch.load({str(tmp_path / "batch.pt")!r})
        expected = torch.load({str(tmp_path / "expected.pt")!r})
        for auto, name in ((AutoModel, "CLIPFlanT5Model"), (AutoModelForSeq2SeqLM, "CLIPFlanT5ForConditionalGeneration"),
                           (AutoModelForImageTextToText, "CLIPFlanT5ForConditionalGeneration")):
            model = auto.from_pretrained(folder, trust_remote_code=True)
            assert type(model).__name__ == name and type(model).__module__.startswith("transformers_modules"), auto
            if name != "CLIPFlanT5Model":
                with torch.no_grad():
                    assert torch.equal(model(**batch).logits, expected), auto
        processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
        image_processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
        for loaded in (processor, image_processor):
            assert type(loaded).__module__.startswith("transformers_modules"), type(loaded)
        assert type(image_processor).__name__ == "CLIPFlanT5ImageProcessor"
        prompt = processor.apply_chat_template(
            [{{"role": "user", "content": [{{"type": "image"}}, {{"type": "text", "text": "Hi"}}]}}],
            add_generation_prompt=True,
        )
        assert prompt.endswith("USER: <image>\\nHi ASSISTANT: "), prompt
        pipe = pipeline("image-text-to-text", model=folder, trust_remote_code=True)
        messages = [{{"role": "user", "content": [{{"type": "image", "image": Image.new("RGB", (40, 30))}},
                                                  {{"type": "text", "text": "Hi"}}]}}]
        out = pipe(text=messages, max_new_tokens=3, return_full_text=False)
        assert out[0]["generated_text"] == {expected_answer!r}, out
        print("remote code OK")
        """
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "remote code OK" in result.stdout


def test_load_by_repo_id_from_offline_hub_cache(tmp_path, saved, batch, tiny):
    model, _ = tiny
    cache = hub_cache(tmp_path, "clip-flant5/tiny", saved)
    loaded = AutoModelForImageTextToText.from_pretrained("clip-flant5/tiny", cache_dir=cache)
    processor = AutoProcessor.from_pretrained("clip-flant5/tiny", cache_dir=cache)
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, model(**batch).logits)
    assert isinstance(processor, CLIPFlanT5Processor)


def test_missing_weights_get_their_own_sub_models_init(tiny):
    """Weights absent from a checkpoint are initialised as CLIP and T5 initialise them (and the projector as ours),
    exactly as when the model is built from its config."""
    config = tiny[0].config
    expected, loaded = {}, {}
    for target, build in (
        (expected, lambda: CLIPFlanT5ForConditionalGeneration(copy.deepcopy(config))),
        (loaded, lambda: CLIPFlanT5ForConditionalGeneration.from_pretrained(None, config=config, state_dict={})),
    ):
        set_seed(0)
        target.update({k: v.clone() for k, v in build().state_dict().items()})
    # Two different draws from the same schemes: compare the spread of each weight, which the scheme sets.
    for name, tensor in expected.items():
        if tensor.numel() < 256 or not name.endswith("weight"):
            continue
        assert loaded[name].std().item() == pytest.approx(tensor.std().item(), rel=0.25), name
    # The CLIP attention and T5 feed-forward blocks' own schemes differ from transformers' default std of 0.02.
    q_proj = "model.vision_tower.encoder.layers.0.self_attn.q_proj.weight"
    clip_width = config.vision_config.hidden_size
    clip_std = clip_width**-0.5 * (2 * config.vision_config.num_hidden_layers) ** -0.5
    assert loaded[q_proj].std().item() == pytest.approx(clip_std * config.vision_config.initializer_factor, rel=0.25)
    shared = loaded["model.language_model.shared.weight"]
    assert shared.std().item() == pytest.approx(config.text_config.initializer_factor, rel=0.1)


def test_fresh_projector_is_lecun_normal_and_loading_keeps_saved_weights(tiny, tmp_path):
    # A fresh projector hands T5 image tokens on the scale of its text embeddings (std 0.02 would make them ~70x
    # smaller); loading never re-initialises the weights it loaded.
    model, _ = tiny
    config = copy.deepcopy(model.config)
    config.vision_config.hidden_size, config.vision_config.intermediate_size = 96, 192
    torch.manual_seed(0)
    projector = CLIPFlanT5ForConditionalGeneration(config).model.multi_modal_projector
    for linear in (projector.linear_1, projector.linear_2):
        expected = linear.in_features**-0.5
        assert abs(linear.weight.std().item() / expected - 1) < 0.1, (linear, linear.weight.std().item(), expected)
        assert torch.count_nonzero(linear.bias) == 0
    model.save_pretrained(tmp_path)
    reloaded = CLIPFlanT5ForConditionalGeneration.from_pretrained(tmp_path)
    for name, tensor in model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[name], tensor), name


# ---------------------------------------------------------------------------------------------------------------------
# transformers' output conventions


def test_get_image_features_returns_projected_features_with_the_towers_outputs(tiny, batch):
    model = copy.deepcopy(tiny[0])
    model.set_attn_implementation("eager")  # SDPA returns no attention weights
    pixel_values = batch["pixel_values"]
    with torch.no_grad():
        for owner in (model, model.model):
            outputs = owner.get_image_features(pixel_values, output_hidden_states=True, output_attentions=True)
            assert isinstance(outputs, BaseModelOutputWithPooling)
            tower = model.model.vision_tower(pixel_values, output_hidden_states=True, output_attentions=True)
            # Independently: the penultimate layer without CLS, through linear -> GELU -> linear.
            selected = tower.hidden_states[-2][:, 1:]
            projector = model.model.multi_modal_projector
            expected = projector.linear_2(torch.nn.functional.gelu(projector.linear_1(selected)))
            assert torch.allclose(outputs.pooler_output, expected, atol=1e-6)
            assert torch.equal(outputs.last_hidden_state, tower.last_hidden_state)
            assert len(outputs.hidden_states) == len(tower.hidden_states)
            assert len(outputs.attentions) == model.config.vision_config.num_hidden_layers
            as_tuple = owner.get_image_features(pixel_values, return_dict=False)
            assert isinstance(as_tuple, tuple) and torch.equal(as_tuple[1], outputs.pooler_output)


@pytest.mark.parametrize(("layer", "strategy"), [(-1, "full"), (1, "default")])
def test_vision_feature_layer_and_select_strategy_pick_the_features(tiny, batch, layer, strategy):
    """A config of other feature settings (an original `cls_patch` checkpoint keeps the CLS token, `full`) projects
    that layer, with or without CLS, and takes one placeholder per feature."""
    model, processor = tiny
    config = CLIPFlanT5Config(
        vision_config=model.config.vision_config,
        text_config=model.config.text_config,
        image_token_id=model.config.image_token_id,
        vision_feature_layer=layer,
        vision_feature_select_strategy=strategy,
    )
    patches = (config.vision_config.image_size // config.vision_config.patch_size) ** 2
    assert config.image_seq_length == patches + (strategy == "full")
    variant = CLIPFlanT5ForConditionalGeneration(config).eval()
    variant.load_state_dict(model.state_dict())
    pixel_values = batch["pixel_values"]
    with torch.no_grad():
        hidden = model.model.vision_tower(pixel_values, output_hidden_states=True).hidden_states[layer]
        selected = hidden if strategy == "full" else hidden[:, 1:]
        projector = model.model.multi_modal_projector
        expected = projector.linear_2(torch.nn.functional.gelu(projector.linear_1(selected)))
        features = variant.get_image_features(pixel_values).pooler_output
        assert features.shape == (3, config.image_seq_length, config.text_config.d_model)
        assert torch.allclose(features, expected, atol=1e-6)
        wide = CLIPFlanT5Processor(
            image_processor=processor.image_processor,
            tokenizer=processor.tokenizer,
            image_seq_length=config.image_seq_length,
        )
        outputs = variant(**wide(images=make_images([(20, 40)]), text=[PROMPTS[0]], text_target=["Yes"]))
    assert torch.isfinite(outputs.loss) and outputs.image_hidden_states.shape[1] == config.image_seq_length


def test_features_of_a_bfloat16_tower_reach_a_float32_projector(tiny, batch):
    """Parts in different dtypes (e.g. `dtype={"vision_tower": torch.bfloat16, "": torch.float32}`): the tower runs
    in its dtype, its output is cast back to the input's dtype for the projector, as the original did."""
    model = copy.deepcopy(tiny[0])
    model.model.vision_tower.to(torch.bfloat16)
    pixel_values = batch["pixel_values"]
    with torch.no_grad():
        features = model.get_image_features(pixel_values).pooler_output
        hidden = model.model.vision_tower(pixel_values.bfloat16(), output_hidden_states=True).hidden_states[-2]
        projector = model.model.multi_modal_projector
        expected = projector.linear_2(torch.nn.functional.gelu(projector.linear_1(hidden[:, 1:].float())))
        logits = model(**batch).logits
    assert features.dtype == torch.float32 and torch.allclose(features, expected, atol=1e-6)
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()


def test_resize_token_embeddings_grows_the_embedding_the_head_and_the_vocabulary(tiny, batch):
    """A token added to the tokenizer needs `resize_token_embeddings`: the T5 embedding, the LM head and the text
    config's vocabulary all grow, the existing rows are kept, and the new id works as input and as a label."""
    model = copy.deepcopy(tiny[0])
    old = model.config.text_config.vocab_size
    embedding, head = model.get_input_embeddings().weight.clone(), model.lm_head.weight.clone()
    model.resize_token_embeddings(old + 8, mean_resizing=False)
    assert model.get_input_embeddings().weight.shape[0] == old + 8
    assert model.lm_head.weight.shape[0] == old + 8
    assert model.config.text_config.vocab_size == old + 8
    assert torch.equal(model.get_input_embeddings().weight[:old], embedding)
    assert torch.equal(model.lm_head.weight[:old], head)
    input_ids, labels = batch["input_ids"].clone(), batch["labels"].clone()
    input_ids[:, -1], labels[:, 0] = old + 7, old + 7
    with torch.no_grad():
        outputs = model(**{**batch, "input_ids": input_ids, "labels": labels})
    assert outputs.logits.shape[-1] == old + 8 and torch.isfinite(outputs.loss)


def test_inputs_embeds_with_pixel_values_equal_input_ids(tiny, batch):
    model, _ = tiny
    embeds = model.get_input_embeddings()(batch["input_ids"])
    without_ids = {k: v for k, v in batch.items() if k != "input_ids"}
    with torch.no_grad():
        expected = model(**batch).logits
        assert torch.equal(model(**without_ids, inputs_embeds=embeds).logits, expected)
        assert torch.equal(model.model(**without_ids, inputs_embeds=embeds).last_hidden_state, model.model(**batch)[0])
    # A mismatch is still found without input_ids.
    with pytest.raises(ValueError, match="placeholder tokens"):
        model(**{**without_ids, "pixel_values": batch["pixel_values"][:2]}, inputs_embeds=embeds)


def test_return_dict_false_returns_tuples(tiny, batch):
    model, _ = tiny
    with torch.no_grad():
        full = model(**batch)
        head = model(**batch, return_dict=False)
        base = model.model(**batch, return_dict=False)
        base_full = model.model(**batch)
    assert isinstance(head, tuple) and isinstance(base, tuple)
    assert torch.equal(head[0], full.loss) and torch.equal(head[1], full.logits)
    assert torch.equal(base[0], base_full.last_hidden_state)


def test_loss_honours_num_items_in_batch(tiny, batch):
    """With `num_items_in_batch` the loss is the summed token cross-entropy over that count (exact gradient
    accumulation); without it, the mean over this batch's tokens. Checked against a hand-computed cross-entropy."""
    model, _ = tiny
    with torch.no_grad():
        logits = model(**batch).logits
        labels = batch["labels"]
        token_losses = torch.nn.functional.cross_entropy(
            logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100, reduction="none"
        )
        n_tokens = int(labels.ne(-100).sum())
        assert model(**batch).loss.item() == pytest.approx(token_losses.sum().item() / n_tokens, rel=1e-6)
        accumulated = model(**batch, num_items_in_batch=torch.tensor(3 * n_tokens)).loss
        assert accumulated.item() == pytest.approx(token_losses.sum().item() / (3 * n_tokens), rel=1e-6)


def test_past_key_values_name_is_deprecated(tiny, batch):
    model, _ = tiny
    step = {k: v for k, v in batch.items() if k != "labels"}
    step["decoder_input_ids"] = torch.zeros(3, 1, dtype=torch.long)
    with torch.no_grad():
        first = model(**step, use_cache=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            renamed = model(**step, past_key_values=None, use_cache=True)
    assert first.cache is not None and torch.equal(renamed.logits, first.logits)
    assert any("past_key_values" in str(w.message) and "cache" in str(w.message) for w in caught), [
        str(w.message) for w in caught
    ]


# ---------------------------------------------------------------------------------------------------------------------
# Generation


def sequence_logprob(model, inputs, sequences: torch.Tensor) -> torch.Tensor:
    """Sum of the model's token log-probabilities of each generated sequence (after the start token, up to and
    including the first EOS), computed by one teacher-forced forward: an oracle independent of `generate`."""
    eos, pad = model.config.eos_token_id, model.config.pad_token_id
    targets = sequences[:, 1:]
    keep = torch.ones_like(targets, dtype=torch.bool)
    for row in range(targets.shape[0]):
        hits = (targets[row] == eos).nonzero()
        if len(hits):
            keep[row, hits[0].item() + 1 :] = False
    with torch.no_grad():
        logits = model(**inputs, decoder_input_ids=sequences[:, :-1]).logits.float()
    logp = torch.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    assert pad is not None
    return (logp * keep).sum(1)


def test_greedy_equals_stepwise_argmax(tiny, inputs):
    model, _ = tiny
    generated = model.generate(**inputs, max_new_tokens=6, do_sample=False, num_beams=1)
    with torch.no_grad():
        for row in range(generated.shape[0]):
            decoded = torch.tensor([[model.config.decoder_start_token_id]])
            for _ in range(6):
                logits = model(
                    **{k: v[row : row + 1] for k, v in inputs.items()}, decoder_input_ids=decoded, use_cache=False
                ).logits
                decoded = torch.cat([decoded, logits[:, -1:].argmax(-1)], dim=1)
                if decoded[0, -1].item() == model.config.eos_token_id:
                    break
            assert generated[row, : decoded.shape[1]].tolist() == decoded[0].tolist()
    assert len({tuple(row.tolist()) for row in generated}) > 1


def test_batched_generation_equals_one_by_one(tiny, inputs):
    model, processor = tiny
    together = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    for row, image in enumerate(make_images([(20, 40), (50, 30), (33, 33)])):
        alone = model.generate(**processor(images=[image], text=[PROMPTS[row]]), max_new_tokens=5, do_sample=False)
        assert together[row, : alone.shape[1]].tolist() == alone[0].tolist()


def test_beam_search_finds_sequences_at_least_as_likely_as_greedy(tiny, inputs):
    model, _ = tiny
    kwargs = {"max_new_tokens": 5, "do_sample": False, "length_penalty": 0.0}
    greedy = model.generate(**inputs, **kwargs)
    beams = model.generate(**inputs, **kwargs, num_beams=4, num_return_sequences=2)
    assert beams.shape[0] == 6
    best = beams[::2]
    width = max(greedy.shape[1], best.shape[1])
    pad = model.config.pad_token_id
    greedy = torch.nn.functional.pad(greedy, (0, width - greedy.shape[1]), value=pad)
    best = torch.nn.functional.pad(best, (0, width - best.shape[1]), value=pad)
    greedy_logp, beam_logp = sequence_logprob(model, inputs, greedy), sequence_logprob(model, inputs, best)
    assert (beam_logp >= greedy_logp - 1e-4).all(), (beam_logp, greedy_logp)
    # On this random model the search matters somewhere: beam search is not greedy in disguise.
    assert (beam_logp > greedy_logp + 1e-3).any() or not torch.equal(best, greedy)


def test_sampling_is_seeded_and_differs_from_greedy(tiny, inputs):
    model, _ = tiny
    kwargs = {"max_new_tokens": 5, "do_sample": True, "top_k": 20, "temperature": 2.0}
    torch.manual_seed(0)
    first = model.generate(**inputs, **kwargs)
    torch.manual_seed(0)
    assert torch.equal(first, model.generate(**inputs, **kwargs))
    torch.manual_seed(1)
    assert not torch.equal(first, model.generate(**inputs, **kwargs))


@pytest.mark.parametrize("do_sample", [False, True])
def test_assisted_decoding_matches_plain_decoding(tiny, inputs, do_sample):
    """The assistant (the model itself) runs its own encoder on the prompt's images; the result is the main model's."""
    model, _ = tiny
    kwargs = {"max_new_tokens": 6, "do_sample": do_sample, "num_beams": 1}
    if do_sample:
        kwargs.update(top_k=1)  # deterministic sampling, so that assisted and plain must agree token for token
    for row in range(inputs["input_ids"].shape[0]):  # transformers assists one prompt at a time
        single = {k: v[row : row + 1] for k, v in inputs.items()}
        plain = model.generate(**single, **kwargs)
        assisted = model.generate(**single, **kwargs, assistant_model=model)
        assert torch.equal(plain, assisted)


def test_generation_continues_from_a_returned_cache_without_the_images(tiny, inputs):
    model, _ = tiny
    kwargs = {"do_sample": False, "return_dict_in_generate": True, "use_cache": True, "eos_token_id": -1}
    full = model.generate(**inputs, **kwargs, max_new_tokens=4)
    first = model.generate(**inputs, **kwargs, max_new_tokens=3)
    without_images = {k: v for k, v in inputs.items() if k != "pixel_values"}
    continued = model.generate(
        **without_images, **kwargs, max_new_tokens=1, cache=first.cache, decoder_input_ids=first.sequences
    )
    assert torch.equal(continued.sequences, full.sequences)
    # Without a cache, the missing images are still an error.
    with pytest.raises(ValueError, match="no pixel_values"):
        model.generate(**without_images, max_new_tokens=1)


def test_an_empty_cache_does_not_stand_for_the_images(tiny, inputs):
    """Only a cache that holds the encoder's cross-attention excuses missing images; a fresh, empty one does not."""
    model, _ = tiny
    without_images = {k: v for k, v in inputs.items() if k != "pixel_values"}
    decoder_input_ids = torch.zeros(3, 1, dtype=torch.long)
    for call in (
        lambda cache: model(**without_images, decoder_input_ids=decoder_input_ids, cache=cache, use_cache=True),
        lambda cache: model.generate(**without_images, max_new_tokens=1, cache=cache),
    ):
        with pytest.raises(ValueError, match="no pixel_values"):
            call(EncoderDecoderCache(DynamicCache(), DynamicCache()))


# ---------------------------------------------------------------------------------------------------------------------
# Backends, dtypes, devices


def test_eager_and_sdpa_agree(batch, saved):
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


def test_bf16_follows_fp32(saved, batch):
    """bf16 weights and activations: logits and answer probabilities close to fp32's (bf16 keeps 8 bits of mantissa:
    on this random model the probabilities move by less than 0.02, measured), and the same greedy answers."""
    fp32 = AutoModelForImageTextToText.from_pretrained(saved)
    bf16 = AutoModelForImageTextToText.from_pretrained(saved, dtype=torch.bfloat16)
    assert bf16.dtype == torch.bfloat16
    with torch.no_grad():
        reference, low = fp32(**batch).logits, bf16(**batch).logits
    assert low.dtype == torch.bfloat16 and torch.isfinite(low).all()
    probabilities = torch.softmax(reference, -1), torch.softmax(low.float(), -1)
    assert (probabilities[0] - probabilities[1]).abs().max().item() < 0.02
    scale = reference.abs().max().item()
    assert (low.float() - reference).abs().max().item() < 0.05 * scale
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values")}
    assert torch.equal(
        bf16.generate(**{**inputs, "pixel_values": inputs["pixel_values"].bfloat16()}, max_new_tokens=2),
        fp32.generate(**inputs, max_new_tokens=2),
    )


def test_device_map_auto_splits_on_whole_blocks(saved, batch, tiny, tmp_path):
    """With too little CPU memory, `device_map="auto"` offloads whole blocks to disk and still computes the same."""
    model, _ = tiny
    assert {"CLIPEncoderLayer", "T5Block"} <= set(model._no_split_modules)
    dispatched = AutoModelForImageTextToText.from_pretrained(
        saved, device_map="auto", max_memory={"cpu": 120_000}, offload_folder=tmp_path
    )
    assert set(dispatched.hf_device_map.values()) == {"cpu", "disk"}, dispatched.hf_device_map
    for name in dispatched.hf_device_map:
        assert not re.search(r"\.(layers|block)\.\d+\.", name), f"{name}: a no-split block was split"
    with torch.no_grad():
        assert torch.allclose(dispatched(**batch).logits, model(**batch).logits, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------------
# Images: none, precomputed, and errors


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
        features = model.get_image_features(batch["pixel_values"]).pooler_output
        assert features.shape == (3, model.config.image_seq_length, model.config.text_config.d_model)
        with_pixels = model(**batch).logits
        with_embeds = model(**{k: v for k, v in batch.items() if k != "pixel_values"}, image_embeds=features).logits
    assert torch.equal(with_pixels, with_embeds)


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


# safetensors alone writes its files 0600; the folders we write are readable like the rest of the folder.
def test_saved_weights_follow_the_umask(tiny, tmp_path):
    model, processor = tiny
    old_umask = os.umask(0o022)
    try:
        model.save_pretrained(tmp_path / "model")
        save_projector(model, tmp_path / "projector")
        os.umask(0o027)
        model.save_pretrained(tmp_path / "group-only")
    finally:
        os.umask(old_umask)
    for path in [tmp_path / "model" / "model.safetensors", tmp_path / "projector" / "projector.safetensors"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    assert stat.S_IMODE((tmp_path / "model" / "config.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "group-only" / "model.safetensors").stat().st_mode) == 0o640


def test_placeholders_that_do_not_make_whole_images_are_refused(tiny, batch):
    # masked_scatter fills placeholders in reading order: with the right total but an image's run split across two
    # rows, the model ran and showed part of one image in another prompt.
    model, _ = tiny
    input_ids = batch["input_ids"].clone()
    image_token_id = model.config.image_token_id
    moved = (input_ids[0] == image_token_id).nonzero()[:3, 0]
    text = ((input_ids[1] != image_token_id) & (batch["attention_mask"][1] == 1)).nonzero()[:3, 0]
    input_ids[0, moved] = int(input_ids[0, 0])
    input_ids[1, text] = image_token_id
    with pytest.raises(ValueError, match="Row 0 holds a run of 13 image placeholder tokens .* image_seq_length=16"):
        model(**{**batch, "input_ids": input_ids})


def test_an_attention_mask_of_another_shape_is_refused(tiny, batch, inputs):
    # T5 broadcast a mask of one row, or padded a short one, and attended to the wrong tokens without a word.
    model, _ = tiny
    mask = batch["attention_mask"]
    for wrong in (mask[:, :-3], mask[:1], torch.cat([mask, mask[:, :2]], 1)):
        with pytest.raises(ValueError, match=re.escape(f"attention_mask has shape {tuple(wrong.shape)} but")):
            model(**{**batch, "attention_mask": wrong})
    with pytest.raises(ValueError, match="attention_mask has shape"):
        model.generate(**{**inputs, "attention_mask": mask[:, :-3]}, max_new_tokens=2)


def test_image_index_must_name_rows_of_the_given_images(tiny, batch):
    model, _ = tiny
    # A negative entry used to count from the end without a word, one past the end failed as a bare IndexError.
    for index in ([0, 1, 3], [0, 1, -1]):
        with pytest.raises(ValueError, match=re.escape(f"image_index holds {index} but only images 0 to 2")):
            model(**batch, image_index=torch.tensor(index))
    with pytest.raises(ValueError, match="image_index must be a 1-D integer tensor"):
        model(**batch, image_index=torch.tensor([[0, 1, 2]]))
    assert torch.equal(model(**batch, image_index=[0, 1, 2]).logits, model(**batch).logits)


def test_inputs_of_the_wrong_shape_are_refused_by_name(tiny, batch):
    # Each used to fail deep inside torch or T5 ("expected input to have 3 channels", "tuple index out of range",
    # "mat1 and mat2 shapes cannot be multiplied", "Number of elements of source < number of ones in mask").
    model, _ = tiny
    pixel_values = batch["pixel_values"]
    for wrong in (pixel_values[:, :1], pixel_values.permute(0, 2, 3, 1), pixel_values.repeat(1, 1, 2, 2)):
        with pytest.raises(
            ValueError,
            match=re.escape(f"height = width = 32 (the vision tower's image_size), got {tuple(wrong.shape)}"),
        ):
            model(**{**batch, "pixel_values": wrong})
    labels = batch["labels"]
    for wrong in (labels[0], labels[:1], labels.float()):
        with pytest.raises(ValueError, match=re.escape("labels must be an integer tensor of shape (batch_size=3,")):
            model(**{**batch, "labels": wrong})
    with pytest.raises(ValueError, match=re.escape("input_ids must have shape (batch_size, sequence_length)")):
        model(input_ids=batch["input_ids"][2], pixel_values=pixel_values[2:])
    features = model.get_image_features(pixel_values).pooler_output
    with pytest.raises(ValueError, match=re.escape("image_embeds must have shape (num_images, image_seq_length=16")):
        model(input_ids=batch["input_ids"], image_embeds=features[..., :7])


def test_meta_tensors_for_a_model_with_weights_are_refused(tiny, batch):
    model, _ = tiny
    for name in ("pixel_values", "input_ids"):
        with pytest.raises(ValueError, match=f"{name} is on the meta device"):
            model(**{**batch, name: batch[name].to("meta")})


def test_token_ids_outside_the_vocabulary_are_refused_by_name(tiny, batch):
    # They failed in the embedding as a bare "index out of range in self" (a device-side assert on a GPU).
    model, _ = tiny
    vocab_size = model.config.text_config.vocab_size
    input_ids = batch["input_ids"].clone()
    input_ids[0, 0] = vocab_size
    with pytest.raises(ValueError, match=re.escape(f"input_ids holds ids [{vocab_size}] outside the model's vocab")):
        model(**{**batch, "input_ids": input_ids})
    labels = batch["labels"].clone()
    labels[1, 0] = -1
    with pytest.raises(ValueError, match=re.escape("labels holds ids [-1] outside the model's vocabulary")):
        model(**{**batch, "labels": labels})


def test_the_base_model_loads_a_saved_model_without_reporting_its_lm_head(saved):
    # CLIPFlanT5Model has no LM head: dropping the saved one is by design (as T5Model drops T5's), not a finding.
    model, info = AutoModel.from_pretrained(saved, output_loading_info=True)
    assert isinstance(model, CLIPFlanT5Model)
    assert not info["unexpected_keys"] and not info["missing_keys"], info
