# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Tiny CLIP-FlanT5 models and tokenizers built in code, for tests, the demo and benchmarks (no Hub access).

The tokenizer is a real sentencepiece unigram model (trained in about a second on a small built-in corpus, with T5's
special ids: pad 0, eos 1, unk 2) converted to transformers' `T5Tokenizer` with 100 sentinel tokens and `<image>`,
so it has the same structure as FlanT5's.
"""

import io
import random
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import CLIPVisionConfig, T5Config, T5Tokenizer

from ..configuration_clip_flant5 import CLIPFlanT5Config
from ..image_processing_clip_flant5 import CLIPFlanT5ImageProcessor
from ..modeling_clip_flant5 import CLIPFlanT5ForConditionalGeneration
from ..processing_clip_flant5 import SYSTEM_MESSAGE, CLIPFlanT5Processor
from ..scoring.prompts import DEFAULT_QUESTION_TEMPLATE


COLORS = ("red", "green", "blue", "yellow", "purple", "orange", "white", "black")
SHAPES = ("circle", "square", "triangle", "cross")
POSITIONS = ("left", "right", "top", "bottom")


def tiny_corpus(seed: int = 0) -> list[str]:
    """Sentences covering the prompts, templates and synthetic captions the tiny models see."""
    rng = random.Random(seed)
    lines = [
        SYSTEM_MESSAGE,
        DEFAULT_QUESTION_TEMPLATE.format("a photo of a dog"),
        "USER: ASSISTANT: Yes No yes no. What is in the image? Describe the image. What color is the shape?",
        "What shape is it? Where is the shape? Is there a cat on the mat? A cat sat on the mat.",
        "0 1 2 3 4 5 6 7 8 9 , . ! ? ' \" : ; ( ) - _ / < > [ ] { } = + * & % $ # @",
        "The quick brown fox jumps over the lazy dog. abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    ]
    for _ in range(400):
        color, shape, position = rng.choice(COLORS), rng.choice(SHAPES), rng.choice(POSITIONS)
        lines.append(f"a {color} {shape} on the {position}.")
        lines.append(f"Is the {shape} {color}? Is the {shape} on the {position}? The {shape} is {color}.")
    return lines


def train_tiny_sentencepiece(
    vocab_size: int = 160, seed: int = 0, model_type: str = "unigram", extra_sentences: Sequence[str] = ()
) -> bytes:
    """A sentencepiece model with T5's special ids (pad 0, eos 1, unk 2, no bos), as `spiece.model` bytes, trained on
    `tiny_corpus(seed)` followed by `extra_sentences`."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([*tiny_corpus(seed), *extra_sentences]),
        model_writer=model,
        vocab_size=vocab_size,
        model_type=model_type,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        character_coverage=1.0,
        normalization_rule_name="nmt_nfkc",
        hard_vocab_limit=False,
        num_threads=1,
        minloglevel=2,
    )
    return model.getvalue()


def build_tiny_tokenizer(
    vocab_size: int = 160,
    seed: int = 0,
    model_type: str = "unigram",
    extra_sentences: Sequence[str] = (),
    model_max_length: int | None = None,
) -> T5Tokenizer:
    """A FlanT5-structured tokenizer (sentencepiece + 100 sentinels + `<image>`) trained in code; `model_max_length`
    as FlanT5's 512 if given, else none declared (transformers' placeholder)."""
    with tempfile.TemporaryDirectory() as folder:
        spiece = train_tiny_sentencepiece(vocab_size, seed, model_type, extra_sentences)
        (Path(folder) / "spiece.model").write_bytes(spiece)
        kwargs = {} if model_max_length is None else {"model_max_length": model_max_length}
        tokenizer = T5Tokenizer.from_pretrained(folder, extra_ids=100, **kwargs)
    tokenizer.add_tokens(["<image>"], special_tokens=True)
    return tokenizer


def flant5_config(
    tokenizer: T5Tokenizer, vision_config: CLIPVisionConfig, vocab_size: int | None = None, **text_sizes
) -> CLIPFlanT5Config:
    """
    A CLIP-FlanT5 config of any size with FlanT5's settings (gated GELU, an LM head of its own, no dropout):
    `text_sizes` are `T5Config` sizes (`d_model`, `d_ff`, `d_kv`, `num_layers`, `num_heads`, ...). The vocabulary fits
    `tokenizer`, rounded up like FlanT5's 32128 rows, unless `vocab_size` is given.
    """
    text = T5Config(
        vocab_size=vocab_size or (len(tokenizer) + 7) // 8 * 8 + 8,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        dropout_rate=0.0,
        decoder_start_token_id=0,
        **text_sizes,
    )
    return CLIPFlanT5Config(
        vision_config=vision_config, text_config=text, image_token_id=tokenizer.convert_tokens_to_ids("<image>")
    )


def tiny_config(
    tokenizer: T5Tokenizer,
    image_size: int = 32,
    patch_size: int = 8,
    vision_hidden: int = 32,
    d_model: int = 32,
    num_layers: int = 2,
    num_heads: int = 4,
) -> CLIPFlanT5Config:
    """A tiny CLIP-FlanT5 config whose vocabulary fits `tokenizer`."""
    vision = CLIPVisionConfig(
        hidden_size=vision_hidden,
        intermediate_size=vision_hidden * 2,
        num_hidden_layers=2,
        num_attention_heads=2,
        patch_size=patch_size,
        image_size=image_size,
        projection_dim=vision_hidden,
        hidden_act="quick_gelu",
    )
    return flant5_config(
        tokenizer,
        vision,
        d_model=d_model,
        d_kv=8,
        d_ff=d_model * 2,
        num_layers=num_layers,
        num_decoder_layers=num_layers,
        num_heads=num_heads,
    )


def tiny_processor(tokenizer: T5Tokenizer, config: CLIPFlanT5Config, do_pad: bool = True) -> CLIPFlanT5Processor:
    """The processor of a tiny model: CLIP preprocessing at the tower's size, padded to square unless `do_pad=False`."""
    size = config.vision_config.image_size
    image_processor = CLIPFlanT5ImageProcessor(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size}, do_pad=do_pad
    )
    return CLIPFlanT5Processor(
        image_processor=image_processor, tokenizer=tokenizer, image_seq_length=config.image_seq_length
    )


def build_tiny_model(
    seed: int = 0, do_pad: bool = True, **config_kwargs
) -> tuple[CLIPFlanT5ForConditionalGeneration, CLIPFlanT5Processor]:
    """A random tiny CLIP-FlanT5 and its processor; the same seed gives the same weights."""
    tokenizer = build_tiny_tokenizer(seed=seed)
    config = tiny_config(tokenizer, **config_kwargs)
    torch.manual_seed(seed)
    model = CLIPFlanT5ForConditionalGeneration(config).eval()
    return model, tiny_processor(tokenizer, config, do_pad=do_pad)
