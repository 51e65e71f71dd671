# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Model cards for CLIP-FlanT5 repos: converted stage-2 models, stage-1 projectors and training outputs.

Cards are rendered with `huggingface_hub`'s `ModelCard.from_template` from the Jinja templates in
`transformers_clipflant5/model_cards/`, with the metadata (licence, library, pipeline tag, base models, datasets,
tags, and the published results as `model-index` evaluation results) built as a `ModelCardData`. The published
numbers live in `model_cards/published_results.json`; the table of the original checkpoints is
`original.release.ORIGINAL_CHECKPOINTS`.
"""

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..original.release import (
    ORIGINAL_CHECKPOINTS,
    ORIGINAL_ORG,
    STAGE1_SPLIT_TEXT,
    OriginalCheckpoint,
    find_original_checkpoint,
    original_config,
)
from ..version import __version__


TEMPLATES_DIR = Path(__file__).parent / "model_cards"
ARXIV_ID = "2404.01291"
CITATION = """@article{lin2024evaluating,
  title={Evaluating Text-to-Visual Generation with Image-to-Text Generation},
  author={Lin, Zhiqiu and Pathak, Deepak and Li, Baiqi and Li, Jiayao and Xia, Xide and Neubig, Graham and Zhang, Pengchuan and Ramanan, Deva},
  journal={arXiv preprint arXiv:2404.01291},
  year={2024}
}"""
ORIGINAL_CODE_URL = "https://github.com/linzhiqiu/CLIP-FlanT5"
VISION_MODEL = "openai/clip-vit-large-patch14-336"
STAGE1_DATASET = "liuhaotian/LLaVA-Pretrain"
STAGE2_DATASET = "liuhaotian/LLaVA-Instruct-150K"  # holds llava_v1_5_mix665k.json
# The released weights are for research use only (see the cards): not an SPDX licence, so "other" with a link.
RESEARCH_LICENSE = {"license": "other", "license_name": "clip-flant5-research-only", "license_link": ORIGINAL_CODE_URL}
TAGS = [
    "vqascore",
    "clip-flant5",
    "text-to-image-evaluation",
    "image-text-matching",
    "custom_code",
    f"arxiv:{ARXIV_ID}",
]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@cache
def _published() -> dict[str, Any]:
    return json.loads((TEMPLATES_DIR / "published_results.json").read_text(encoding="utf-8"))


def published_results(name: str) -> list[dict[str, Any]]:
    """The authors' published results for checkpoint `name` (e.g. "clip-flant5-xxl"): one dict per benchmark."""
    data = _published()
    scores = data["results"].get(name, {})
    return [
        dict(benchmark, value=scores[benchmark["name"]])
        for benchmark in data["benchmarks"]
        if benchmark["name"] in scores
    ]


def published_eval_results(name: str) -> list[EvalResult]:
    """[`published_results`] as `model-index` evaluation results."""
    data = _published()
    return [
        EvalResult(
            task_type="image-text-to-text",
            task_name="Image-text alignment (VQAScore)",
            dataset_type=row["dataset_type"],
            dataset_name=row["dataset_name"],
            dataset_config=row.get("dataset_config"),
            metric_type=row["metric_type"],
            metric_name=row["metric_name"],
            metric_value=row["value"],
            source_name=data["source_name"],
            source_url=data["source_url"],
        )
        for row in published_results(name)
    ]


def is_hub_id(value: str | None) -> bool:
    """Whether `value` looks like a Hub repo id (`org/name`) rather than a local path."""
    return bool(value) and _HUB_ID.match(str(value)) is not None and not Path(str(value)).exists()


def _hub_link(repo_id: str | None, fallback: str) -> str:
    return f"[`{repo_id}`](https://huggingface.co/{repo_id})" if is_hub_id(repo_id) else fallback


def _format_count(count: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= size:
            return f"{count / size:.2f}{unit} ({count:,})"
    return f"{count:,}"


def _provenance(source: str | None, source_revision: str | None, what: str) -> str:
    if source is None:
        return ""
    if is_hub_id(source):
        revision = f" (revision `{source_revision}`)" if source_revision else ""
        origin = f"[`{source}`](https://huggingface.co/{source}){revision}"
    else:
        # Never publish a local path: name the folder only.
        origin = f"a local checkpoint (`{Path(source).name}`)"
    return f"Converted from {origin} with `clip-flant5 convert` (transformers-clipflant5 {__version__}). {what}"


def render_model_card(
    config,
    *,
    repo_id: str,
    source: str | None = None,
    source_revision: str | None = None,
    checkpoint: OriginalCheckpoint | None = None,
    text_model: str | None = None,
    dtype: str | None = None,
    num_parameters: int | None = None,
    do_pad: bool = True,
) -> ModelCard:
    """
    The card of a stage-2 CLIP-FlanT5 repo (a converted original checkpoint, or any model in our format).

    Args:
        config (`CLIPFlanT5Config`): the model's configuration (sizes for the card).
        repo_id: where the repo lives (or will), used in the usage snippets.
        source, source_revision: what it was converted from (a Hub id is linked; a local path is reduced to its name).
        checkpoint: the entry of the original release it corresponds to, if any (title, notes, published results).
            Found from `source` when not given.
        text_model: the base text model's Hub id when `checkpoint` does not say.
        dtype: the stored weights' dtype; num_parameters: unique parameter count.
        do_pad: whether the processor pads images to square (the image processor's `do_pad`; stage-2 models do).
    """
    checkpoint = checkpoint or find_original_checkpoint(source)
    if checkpoint is not None and checkpoint.kind != "model":
        raise ValueError(f"{checkpoint.name} is a stage-1 projector repo: use render_projector_card.")
    text_model = text_model or (checkpoint.text_model if checkpoint else None)
    name = repo_id.rsplit("/", 1)[-1]
    eval_results = published_eval_results(checkpoint.name) if checkpoint else []
    card_data = ModelCardData(
        language="en",
        library_name="transformers",
        pipeline_tag="image-text-to-text",
        base_model=[model for model in (text_model, VISION_MODEL) if is_hub_id(model)],
        datasets=[STAGE1_DATASET, STAGE2_DATASET],
        tags=list(TAGS),
        model_name=name,
        eval_results=eval_results or None,
        **RESEARCH_LICENSE,
    )
    title = checkpoint.title if checkpoint else name
    text_title = checkpoint.text_model_title if checkpoint else "T5"
    summary = (
        f"{title} in the `transformers` format: safetensors weights with the vision tower inside, a processor that "
        "reproduces the original prompt tokenization, a chat template, and the modelling code (for "
        "`trust_remote_code=True`)."
    )
    provenance = _provenance(
        source,
        source_revision,
        "The weights are the authors'; only their layout changed (transformers key names, no duplicated tensors, "
        "no pickles). transformers-clipflant5's tests check its outputs against a re-implementation of the "
        "original procedure.",
    )
    data = _published()
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATES_DIR / "clip_flant5.md"),
        title=title,
        summary=summary,
        note=checkpoint.note if checkpoint else "",
        repo_id=repo_id,
        arxiv_id=ARXIV_ID,
        text_model=text_model or "T5 (base checkpoint not recorded)",
        text_model_link=_hub_link(text_model, "a T5 encoder-decoder (base checkpoint not recorded)"),
        text_model_title=text_title,
        vision_model=VISION_MODEL,
        vision_model_link=_hub_link(VISION_MODEL, VISION_MODEL),
        parameters=_format_count(num_parameters) if num_parameters else "see `config.json`",
        vision_hidden_size=config.vision_config.hidden_size,
        d_model=config.text_config.d_model,
        num_layers=config.text_config.num_layers,
        image_seq_length=config.image_seq_length,
        do_pad=do_pad,
        dtype=dtype or "as saved",
        provenance=provenance,
        results=published_results(checkpoint.name) if checkpoint else [],
        results_source=f"[{data['source_name']}]({data['source_url']})",
        results_note=data["note"],
        training_summary=(
            f"Trained by the authors in two stages on 8×A100 with their LLaVA-1.5-based code ({ORIGINAL_CODE_URL})."
        ),
        stage1_template=checkpoint.stage1_template if checkpoint else STAGE1_SPLIT_TEXT,
        stage2_hours=checkpoint.stage2_hours if checkpoint else "about 80 h (XXL)",
        citation=CITATION,
    )


def render_projector_card(
    *,
    repo_id: str,
    vision_hidden_size: int,
    text_hidden_size: int,
    text_model: str | None = None,
    vision_model: str | None = VISION_MODEL,
    dtype: str | None = None,
    source: str | None = None,
    source_revision: str | None = None,
    checkpoint: OriginalCheckpoint | None = None,
) -> ModelCard:
    """The card of a stage-1 projector repo (`projector.safetensors` + `projector_config.json`)."""
    checkpoint = checkpoint or find_original_checkpoint(source)
    if checkpoint is not None and checkpoint.kind != "projector":
        raise ValueError(f"{checkpoint.name} is a stage-2 model repo: use render_model_card.")
    text_model = text_model or (checkpoint.text_model if checkpoint else None)
    vision_model = vision_model or VISION_MODEL
    name = repo_id.rsplit("/", 1)[-1]
    card_data = ModelCardData(
        language="en",
        library_name="transformers",
        base_model=[model for model in (text_model, vision_model) if is_hub_id(model)],
        datasets=[STAGE1_DATASET],
        tags=[*TAGS[:2], "projector", "feature-alignment", f"arxiv:{ARXIV_ID}"],
        model_name=name,
        **RESEARCH_LICENSE,
    )
    parameters = vision_hidden_size * text_hidden_size + text_hidden_size * text_hidden_size + 2 * text_hidden_size
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATES_DIR / "projector.md"),
        title=checkpoint.title if checkpoint else name,
        summary=(
            "The projector in our format: `projector.safetensors` (no pickle) and a `projector_config.json` "
            "recording its dimensions and base models."
        ),
        note=checkpoint.note if checkpoint else "",
        repo_id=repo_id,
        arxiv_id=ARXIV_ID,
        text_model=text_model or "the text model it was trained with",
        text_model_link=_hub_link(text_model, "the text model it was trained with (not recorded)"),
        vision_model=vision_model,
        vision_model_link=_hub_link(vision_model, f"`{vision_model}`"),
        vision_hidden_size=vision_hidden_size,
        text_hidden_size=text_hidden_size,
        parameters=f"{parameters:,}",
        dtype=dtype or "as saved",
        provenance=_provenance(source, source_revision, "The weights are the authors' `mm_projector.bin`, renamed."),
        stage1_template=checkpoint.stage1_template if checkpoint else STAGE1_SPLIT_TEXT,
        citation=CITATION,
    )


def render_training_card(
    stage: int,
    base_text_model: str,
    base_vision_model: str,
    dataset: str | None,
    hyperparameters: dict[str, Any],
    results: dict[str, float] | None = None,
    *,
    repo_id: str | None = None,
    license: str = "other",
    figures: dict[str, str] | None = None,
) -> ModelCard:
    """
    The card of a model trained with this package (stage 1 or 2).

    Args:
        stage: 1 (feature alignment, projector only) or 2 (VQA fine-tuning).
        base_text_model, base_vision_model: the base checkpoints (Hub ids are linked and listed as `base_model`).
        dataset: the training data (a Hub dataset id is listed in `datasets`; a local path is named only).
        hyperparameters: shown as a table (e.g. learning rate, global batch size, epochs).
        results: metrics measured after training (name -> value), e.g. a held-out ROC-AUC; shown as a table and, when
            `dataset` is a Hub id, as `model-index` results on it.
        repo_id: where the model will live, for the usage snippets (default: a placeholder).
        license: the licence identifier of the trained weights; "other" (the default) points to the research-use
            notice, which applies whenever the LLaVA data (CC BY-NC 4.0) is used.
        figures: pictures of the run in the same folder (caption -> file name, e.g. a loss curve PNG), shown in the
            card. Paths are relative to the folder, so that they show on the Hub as well as in a local copy.
    """
    if stage not in (1, 2):
        raise ValueError(f"stage must be 1 or 2, got {stage!r}.")
    repo_id = repo_id or "your-username/clip-flant5-finetuned"
    name = repo_id.rsplit("/", 1)[-1]
    hub_dataset = dataset if is_hub_id(dataset) else None
    eval_results = None
    if results and hub_dataset:
        eval_results = [
            EvalResult(
                task_type="image-text-to-text",
                dataset_type=hub_dataset,
                dataset_name=hub_dataset,
                metric_type=metric,
                metric_value=value,
            )
            for metric, value in results.items()
        ]
    license_fields = RESEARCH_LICENSE if license == "other" else {"license": license}
    card_data = ModelCardData(
        language="en",
        library_name="transformers",
        pipeline_tag="image-text-to-text",
        base_model=[model for model in (base_text_model, base_vision_model) if is_hub_id(model)],
        datasets=[hub_dataset] if hub_dataset else None,
        tags=[*TAGS[:2], "trl", "sft", f"stage-{stage}", "custom_code", f"arxiv:{ARXIV_ID}"],
        model_name=name,
        eval_results=eval_results,
        **license_fields,
    )
    if dataset is None:
        dataset_text = "not recorded"
    elif hub_dataset:
        dataset_text = f"[`{hub_dataset}`](https://huggingface.co/datasets/{hub_dataset})"
    else:
        dataset_text = f"local data (`{Path(str(dataset)).name}`)"
    license_text = (
        f"Licence of these weights: `{license}`. "
        if license != "other"
        else "**Research use only** unless the training data and base models allow more. "
    ) + (
        "They derive from the base text model (FlanT5: Apache-2.0), CLIP (MIT) and the training data; the LLaVA "
        "data of the original recipe is CC BY-NC 4.0 (non-commercial use only) and includes GPT-4 outputs subject to "
        "OpenAI's terms. The modelling code (`*.py`) comes from transformers-clipflant5 (Apache-2.0)."
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATES_DIR / "training.md"),
        title=name,
        stage=stage,
        repo_id=repo_id,
        arxiv_id=ARXIV_ID,
        base_text_model=base_text_model,
        base_vision_model=base_vision_model,
        base_text_model_link=_hub_link(base_text_model, f"`{Path(str(base_text_model)).name}` (local)"),
        base_vision_model_link=_hub_link(base_vision_model, f"`{Path(str(base_vision_model)).name}` (local)"),
        dataset_text=dataset_text,
        hyperparameters={str(key): value for key, value in hyperparameters.items()},
        results=results or {},
        figures=_relative_figures(figures),
        license_text=license_text,
        citation=CITATION,
    )


def _relative_figures(figures: dict[str, str] | None) -> dict[str, str]:
    for caption, name in (figures or {}).items():
        if Path(name).is_absolute() or ".." in Path(name).parts or "://" in name:
            raise ValueError(
                f"Figure {caption!r}: {name!r} is not a path inside the model folder; give the file name relative to "
                "the folder (the card is read on the Hub, where only the folder's files exist)."
            )
    return {caption: Path(name).as_posix() for caption, name in (figures or {}).items()}


def render_example_cards(output_dir: str | Path) -> list[Path]:
    """
    Write the cards `clip-flant5 convert` gives the stage-2 models and stage-1 projectors of the original release
    (`output_dir/<name>/README.md`, pushed to a placeholder `your-org`), as examples to read without converting.
    """
    import torch

    from ..modeling_clip_flant5 import CLIPFlanT5ForConditionalGeneration

    written = []
    for checkpoint in ORIGINAL_CHECKPOINTS:
        if checkpoint.name not in (
            "clip-flant5-xxl",
            "clip-flant5-xl",
            "clip-flant5-xxl-stage-1",
            "clip-flant5-xl-stage-1",
        ):
            continue
        repo_id, source = f"your-org/{checkpoint.name}", f"{ORIGINAL_ORG}/{checkpoint.name}"
        if checkpoint.kind == "model":
            config = original_config(checkpoint)
            with torch.device("meta"):
                num_parameters = CLIPFlanT5ForConditionalGeneration(config).num_parameters()
            card = render_model_card(
                config, repo_id=repo_id, source=source, dtype="bfloat16", num_parameters=num_parameters
            )
        else:
            d_model = original_config(find_original_checkpoint(source.removesuffix("-stage-1"))).text_config.d_model
            card = render_projector_card(
                repo_id=repo_id, vision_hidden_size=1024, text_hidden_size=d_model, dtype="bfloat16", source=source
            )
        path = Path(output_dir) / checkpoint.name / "README.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        card.save(path)
        written.append(path)
    return written


__all__ = [
    "CITATION",
    "ORIGINAL_CHECKPOINTS",
    "OriginalCheckpoint",
    "find_original_checkpoint",
    "published_eval_results",
    "published_results",
    "render_example_cards",
    "render_model_card",
    "render_projector_card",
    "render_training_card",
]


if __name__ == "__main__":
    import sys

    for written_path in render_example_cards(sys.argv[1] if len(sys.argv) > 1 else "model_cards"):
        print(f"wrote {written_path}")
