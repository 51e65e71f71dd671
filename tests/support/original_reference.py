"""The ORIGINAL CLIP-FlanT5 checkpoint layout and procedure, re-implemented naively and independently of our code.

- `save_original_checkpoint` writes a tiny model the way the original Hub repos are laid out: a flat T5 config.json
  with LLaVA `mm_*` fields, LLaVA-style state-dict keys with the shared embedding stored four times, a pickled
  `pytorch_model.bin` (optionally sharded), `spiece.model` and tokenizer files, and the vision tower named by a
  path to its own config folder (the real repos name `openai/clip-vit-large-patch14-336`).
- `NaiveOriginal` scores and generates the way the original code did: prompt split at `<image>`, each chunk
  tokenized with sentencepiece on its own plus `</s>`, a per-sample Python loop splicing the projected features
  into `T5ForConditionalGeneration(inputs_embeds=...)`, zero right-padding, per-sample cross-entropy, and the
  original image path (PIL pad-to-square with the mean colour, shortest-edge bicubic resize, centre crop,
  rescale, normalise) written with PIL and numpy.

It deliberately shares no code with `transformers_clipflant5`: only torch, transformers' plain T5/CLIP classes,
sentencepiece, PIL and numpy. Tests and `benchmarks/bench_score.py` compare our implementation against it.
"""

import json
import os
from pathlib import Path

import numpy as np
import sentencepiece as spm
import torch
from PIL import Image
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModel, T5Config, T5ForConditionalGeneration


SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
QUESTION = 'Does this figure show "{}"? Please answer yes or no.'
IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)


def stage2_prompt(question: str) -> str:
    """The original evaluation's stage-2 prompt for one question about one image."""
    return SYSTEM + " USER: <image>\n" + question + " ASSISTANT: "


def vqa_prompt(text: str) -> str:
    return stage2_prompt(QUESTION.format(text))


def original_state_dict(model) -> dict:
    """`model`'s tensors under the original checkpoint's keys (shared, not copied), embedding copies included."""
    state = {}
    for key, tensor in model.state_dict().items():
        if key.startswith("model.vision_tower."):
            # The real repos hold a transformers-4 CLIPVisionModel state dict, nested under `vision_model.`.
            state["vision_tower.vision_tower.vision_model." + key[len("model.vision_tower.") :]] = tensor
        elif key.startswith("model.multi_modal_projector.linear_1."):
            state["mm_projector.0." + key.rsplit(".", 1)[1]] = tensor
        elif key.startswith("model.multi_modal_projector.linear_2."):
            state["mm_projector.2." + key.rsplit(".", 1)[1]] = tensor
        elif key.startswith("model.language_model."):
            state[key[len("model.language_model.") :]] = tensor
        else:
            state[key] = tensor
    for copy_key in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "embed_tokens.weight"):
        state[copy_key] = state["shared.weight"]
    return state


def save_original_checkpoint(
    model,
    sentencepiece_bytes: bytes,
    folder,
    shards: int = 1,
    image_aspect_ratio="pad",
    store_lm_head: bool = True,
    weights: bool = True,
):
    """Write `model` (our CLIPFlanT5ForConditionalGeneration) in the original Hub layout. A model with tied
    embeddings is written as the T5 v1.0 checkpoints (`clip-t5-xxl`) were: its config without
    `tie_word_embeddings` (T5 v1.0 configs leave it to the default, true) and, unless `store_lm_head=False`, the
    head stored beside the embedding it is tied to. Without the weight files when `weights` is False:
    `NaiveOriginal(folder, state=original_state_dict(model))` then shares them."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = model.config
    text = config.text_config
    tower_dir = folder / "vision_tower_config"
    config.vision_config.save_pretrained(tower_dir)
    size = config.vision_config.image_size
    (tower_dir / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "image_processor_type": "CLIPImageProcessor",
                "do_resize": True,
                "size": {"shortest_edge": size},
                "resample": 3,
                "do_center_crop": True,
                "crop_size": {"height": size, "width": size},
                "do_rescale": True,
                "rescale_factor": 1 / 255,
                "do_normalize": True,
                "image_mean": list(IMAGE_MEAN),
                "image_std": list(IMAGE_STD),
                "do_convert_rgb": True,
            }
        )
    )
    flat = {
        "architectures": ["CLIPT5ForConditionalGeneration"],
        "model_type": "t5",
        "d_model": text.d_model,
        "d_ff": text.d_ff,
        "d_kv": text.d_kv,
        "num_heads": text.num_heads,
        "num_layers": text.num_layers,
        "num_decoder_layers": text.num_decoder_layers,
        "vocab_size": text.vocab_size,
        "feed_forward_proj": text.feed_forward_proj,
        "dense_act_fn": text.dense_act_fn,
        "is_gated_act": text.is_gated_act,
        "tie_word_embeddings": False,
        "decoder_start_token_id": 0,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "relative_attention_num_buckets": text.relative_attention_num_buckets,
        "relative_attention_max_distance": text.relative_attention_max_distance,
        "layer_norm_epsilon": text.layer_norm_epsilon,
        "dropout_rate": 0.1,
        "torch_dtype": "float32",
        "mm_vision_tower": str(tower_dir),
        "mm_hidden_size": config.vision_config.hidden_size,
        "mm_projector_type": "mlp2x_gelu",
        "mm_vision_select_layer": -2,
        "mm_vision_select_feature": "patch",
        "image_aspect_ratio": image_aspect_ratio,
        "mm_use_im_start_end": False,
        "mm_use_im_patch_token": False,
        "tune_mm_mlp_adapter": False,
        "freeze_mm_mlp_adapter": False,
        "use_mm_proj": True,
        "image_grid_pinpoints": None,
    }
    if config.tie_word_embeddings:
        del flat["tie_word_embeddings"]
    (folder / "config.json").write_text(json.dumps(flat, indent=2))
    (folder / "generation_config.json").write_text(
        json.dumps({"decoder_start_token_id": 0, "eos_token_id": 1, "pad_token_id": 0})
    )
    if not weights:
        (folder / "spiece.model").write_bytes(sentencepiece_bytes)
        return folder
    state = original_state_dict(model)
    if config.tie_word_embeddings and not store_lm_head:
        del state["lm_head.weight"]
    # Separate tensors, as torch.save of the original model wrote them (the embedding copies too).
    state = {key: tensor.clone().contiguous() for key, tensor in state.items()}
    if shards == 1:
        torch.save(state, folder / "pytorch_model.bin")
    else:
        keys = sorted(state)
        weight_map = {}
        for index in range(shards):
            name = f"pytorch_model-{index + 1:05d}-of-{shards:05d}.bin"
            part = {key: state[key] for key in keys[index::shards]}
            torch.save(part, folder / name)
            weight_map.update(dict.fromkeys(part, name))
        (folder / "pytorch_model.bin.index.json").write_text(
            json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map})
        )
    (folder / "spiece.model").write_bytes(sentencepiece_bytes)
    return folder


def _original_pixels(image: Image.Image, size: int, pad: bool) -> torch.Tensor:
    image = image.convert("RGB")
    if pad:
        width, height = image.size
        if width != height:
            side = max(width, height)
            canvas = Image.new("RGB", (side, side), tuple(int(m * 255) for m in IMAGE_MEAN))
            canvas.paste(image, ((side - width) // 2, (side - height) // 2))
            image = canvas
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
    image = image.resize((new_w, new_h), resample=Image.BICUBIC)
    array = np.asarray(image)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    array = array[top : top + size, left : left + size].astype(np.float32) / 255.0
    array = (array - np.array(IMAGE_MEAN, dtype=np.float32)) / np.array(IMAGE_STD, dtype=np.float32)
    return torch.from_numpy(array.transpose(2, 0, 1).copy())


class NaiveOriginal:
    """The original per-sample procedure on an original-layout folder (fp32 on CPU unless told otherwise). `state`:
    the checkpoint's tensors already in memory (`original_state_dict`), instead of reading the folder's .bin files."""

    def __init__(self, folder, state: dict | None = None, device="cpu", dtype=torch.float32):
        folder = Path(folder)
        self.device, self.dtype = torch.device(device), dtype
        flat = json.loads((folder / "config.json").read_text())
        if state is None:
            state = {}
            for file in sorted(folder.glob("pytorch_model*.bin")):
                state.update(torch.load(file, map_location="cpu", weights_only=True))
        # T5 v1.0 (clip-t5-xxl) ties its head to the embedding and rescales the decoder output by d_model^-0.5
        # before it (its config leaves tie_word_embeddings at the default, true); FlanT5 does neither.
        self.tied = flat.get("tie_word_embeddings", True)
        self.logit_scale = flat["d_model"] ** -0.5 if self.tied else 1.0
        t5_config = T5Config(
            **{k: flat[k] for k in ("d_model", "d_ff", "d_kv", "num_heads", "num_layers", "num_decoder_layers")},
            vocab_size=flat["vocab_size"],
            feed_forward_proj=flat["feed_forward_proj"],
            tie_word_embeddings=False,
            dropout_rate=0.0,
            decoder_start_token_id=0,
        )
        with torch.device(device):  # initialised where it runs: a full-size T5 takes minutes to initialise on CPU
            self.t5 = T5ForConditionalGeneration._from_config(t5_config, dtype=dtype).eval()
        skip = ("vision_tower.", "mm_projector.", "embed_tokens.", "shared.", "lm_head.")
        t5_state = {k: v for k, v in state.items() if not k.startswith(skip) and ".embed_tokens." not in k}
        missing, unexpected = self.t5.load_state_dict(t5_state, strict=False)
        assert not unexpected, unexpected
        # The original ran with one embedding shared by both stacks and a separate FlanT5 LM head. Set them by
        # hand: transformers 5 ties T5's LM head to the embedding whatever the config says.
        shared = nn.Parameter(state["shared.weight"].to(device, dtype, copy=True))
        self.t5.shared.weight = shared
        self.t5.encoder.embed_tokens.weight = shared
        self.t5.decoder.embed_tokens.weight = shared
        self.t5.lm_head.weight = (
            shared if self.tied else nn.Parameter(state["lm_head.weight"].to(device, dtype, copy=True))
        )
        # The rescale is applied by hand (`logit_scale`), as the original's T5 did it; transformers' must stay off.
        assert not self.t5.config.scale_decoder_outputs
        tower_config = CLIPVisionConfig.from_pretrained(flat["mm_vision_tower"])
        with torch.device(device):
            self.vision = CLIPVisionModel._from_config(tower_config, dtype=dtype).eval()
        prefix = "vision_tower.vision_tower.vision_model."
        self.vision.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
        hidden, d_model = tower_config.hidden_size, flat["d_model"]
        self.projector = nn.Sequential(nn.Linear(hidden, d_model), nn.GELU(), nn.Linear(d_model, d_model))
        self.projector.to(device, dtype).eval()
        self.projector.load_state_dict(
            {k[len("mm_projector.") :]: v for k, v in state.items() if k.startswith("mm_projector.")}
        )
        self.sp = spm.SentencePieceProcessor(model_file=str(folder / "spiece.model"))
        self.image_size = tower_config.image_size
        self.pad = flat.get("image_aspect_ratio") == "pad"

    def tokenize(self, text: str) -> list[int]:
        return self.sp.encode(text) + [1]

    def encode_image(self, image) -> torch.Tensor:
        if isinstance(image, (str, os.PathLike)):
            image = Image.open(image)
        pixels = _original_pixels(image, self.image_size, self.pad).unsqueeze(0).to(self.device, self.dtype)
        hidden = self.vision(pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
        return self.projector(hidden)[0]

    def encoder_inputs(self, images, prompts):
        embed = self.t5.get_input_embeddings()
        rows = []
        for image, prompt in zip(images, prompts):
            chunks = prompt.split("<image>")
            assert len(chunks) == 2, "the original supports one image per prompt"
            features = self.encode_image(image)
            before = embed(torch.tensor(self.tokenize(chunks[0]), device=self.device))
            after = embed(torch.tensor(self.tokenize(chunks[1]), device=self.device))
            rows.append(torch.cat([before, features, after]))
        width = max(row.shape[0] for row in rows)
        embeds = torch.zeros(len(rows), width, rows[0].shape[1], device=self.device, dtype=self.dtype)
        mask = torch.zeros(len(rows), width, dtype=torch.long, device=self.device)
        for index, row in enumerate(rows):
            embeds[index, : row.shape[0]] = row
            mask[index, : row.shape[0]] = 1
        return embeds, mask

    @torch.no_grad()
    def score(self, images, prompts, answers) -> torch.Tensor:
        embeds, mask = self.encoder_inputs(images, prompts)
        label_rows = [self.tokenize(answer) for answer in answers]
        width = max(len(row) for row in label_rows)
        labels = torch.full((len(label_rows), width), -100, device=self.device)
        for index, row in enumerate(label_rows):
            labels[index, : len(row)] = torch.tensor(row)
        logits = self.t5(
            inputs_embeds=embeds, attention_mask=mask, labels=labels, decoder_attention_mask=labels.ne(-100)
        ).logits
        # The head has no bias: scaling its input or its output is the same.
        logits = logits * self.logit_scale
        loss = nn.CrossEntropyLoss(reduction="mean")
        return torch.stack([(-loss(logits[k].float(), labels[k])).exp() for k in range(len(label_rows))]).cpu()

    @torch.no_grad()
    def greedy(self, images, prompts, max_new_tokens: int) -> list[list[int]]:
        """Step-by-step argmax decoding without a cache; stops a row at `</s>`."""
        embeds, mask = self.encoder_inputs(images, prompts)
        encoder_outputs = self.t5.encoder(inputs_embeds=embeds, attention_mask=mask)
        results = []
        for row in range(embeds.shape[0]):
            decoded = [0]
            for _ in range(max_new_tokens):
                logits = self.t5(
                    encoder_outputs=(encoder_outputs.last_hidden_state[row : row + 1],),
                    attention_mask=mask[row : row + 1],
                    decoder_input_ids=torch.tensor([decoded], device=self.device),
                ).logits
                token = int(logits[0, -1].argmax())
                decoded.append(token)
                if token == 1:
                    break
            results.append(decoded)
        return results


def write_original_projector(model, folder: Path, prefix: str = "model.") -> Path:
    """A stage-1 repo as the original release laid it out: flat config, mm_projector.bin, trainer_state.json."""
    folder.mkdir(parents=True)
    projector = model.model.multi_modal_projector
    state = {
        f"{prefix}mm_projector.0.weight": projector.linear_1.weight.detach().clone(),
        f"{prefix}mm_projector.0.bias": projector.linear_1.bias.detach().clone(),
        f"{prefix}mm_projector.2.weight": projector.linear_2.weight.detach().clone(),
        f"{prefix}mm_projector.2.bias": projector.linear_2.bias.detach().clone(),
    }
    torch.save(state, folder / "mm_projector.bin")
    config = model.config
    flat = {
        "_name_or_path": "google/flan-t5-xl",
        "model_type": "t5",
        "d_model": config.text_config.d_model,
        "mm_hidden_size": config.vision_config.hidden_size,
        "mm_projector_type": "mlp2x_gelu",
        "mm_vision_tower": "openai/clip-vit-large-patch14-336",
        "mm_vision_select_layer": -2,
        "mm_vision_select_feature": "patch",
        "tune_mm_mlp_adapter": True,
    }
    (folder / "config.json").write_text(json.dumps(flat))
    (folder / "trainer_state.json").write_text(json.dumps({"log_history": []}))
    return folder
