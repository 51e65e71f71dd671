"""Model cards: metadata round trips through `ModelCard.load`, and the cards' code examples run."""

import ast
import re
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

from tests.support.images import make_images
from tests.support.original_reference import NaiveOriginal, vqa_prompt
from tests.support.paths import REPO_ROOT
from transformers_clipflant5 import CLIPFlanT5Config
from transformers_clipflant5.hub.model_card import (
    published_results,
    render_example_cards,
    render_model_card,
    render_projector_card,
    render_training_card,
)
from transformers_clipflant5.original.release import ORIGINAL_CHECKPOINTS, find_original_checkpoint
from transformers_clipflant5.projector import save_projector


BENCHMARKS = [
    "Winoground",
    "EqBen-Mini",
    "DrawBench",
    "EditBench",
    "COCO-T2I",
    "TIFA160",
    "Pick-a-Pic",
    "GenAI-Bench-Image",
    "GenAI-Bench-Video",
]


# The authors' published results (the original project's docs/MODEL_ZOO.md), copied by hand from the table under
# "Published results (model cards)" in the project's reference notes (shared/reference/original-format.md), so that
# a wrong number in the package's published_results.json (which both the card and `published_results()` read) shows.
MODEL_ZOO = {
    "clip-flant5-xxl": [46.0, 47.9, 85.3, 77.0, 85.0, 71.2, 84.0, 64.1, 63.2],
    "clip-flant5-xl": [34.8, 39.3, 82.8, 74.5, 80.7, 68.8, 84.0, 61.8, 60.2],
}


def round_trip(card: ModelCard, tmp_path: Path) -> ModelCard:
    path = tmp_path / "README.md"
    card.save(path)
    return ModelCard.load(path)


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


@pytest.mark.parametrize("name", ["clip-flant5-xxl", "clip-flant5-xl", "clip-flant5-xxl-no-split-text", "clip-t5-xxl"])
def test_stage2_card_metadata_round_trip(name, tmp_path):
    checkpoint = find_original_checkpoint(f"zhiqiulin/{name}")
    card = render_model_card(
        CLIPFlanT5Config(),
        repo_id=f"my-org/{name}",
        source=f"zhiqiulin/{name}",
        dtype="bfloat16",
        num_parameters=10**9,
    )
    loaded = round_trip(card, tmp_path)
    data = loaded.data
    assert data.license == "other" and data.license_name == "clip-flant5-research-only"
    assert data.license_link == "https://github.com/linzhiqiu/CLIP-FlanT5"
    assert data.library_name == "transformers"
    assert data.pipeline_tag == "image-text-to-text"
    assert data.base_model == [checkpoint.text_model, "openai/clip-vit-large-patch14-336"]
    assert data.datasets == ["liuhaotian/LLaVA-Pretrain", "liuhaotian/LLaVA-Instruct-150K"]
    assert {"vqascore", "clip-flant5", "custom_code", "arxiv:2404.01291"} <= set(data.tags)
    assert data.model_name == name

    published = published_results(name)
    if name in ("clip-flant5-xxl", "clip-flant5-xl"):
        assert [row["name"] for row in published] == BENCHMARKS
        results = {(result.dataset_type, result.dataset_config): result for result in data.eval_results}
        assert len(results) == len(BENCHMARKS)
        for row in published:
            result = results[(row["dataset_type"], row.get("dataset_config"))]
            assert result.metric_value == row["value"] and result.metric_type == row["metric_type"]
            assert result.task_type == "image-text-to-text"
            assert f"| {row['name']} | {row['metric_name']} | {row['value']} |" in loaded.text
        # The card's numbers are the Model Zoo's, benchmark by benchmark, not only the JSON's.
        assert [row["value"] for row in published] == MODEL_ZOO[name]
        for row, value in zip(published, MODEL_ZOO[name]):
            assert results[(row["dataset_type"], row.get("dataset_config"))].metric_value == value, row["name"]
    else:
        assert published == [] and data.eval_results is None and "## Results" not in loaded.text
        assert "ablation" in loaded.text

    text = loaded.text
    assert f"# {checkpoint.title}" in text
    assert "Research use only" in text and "CC BY-NC 4.0" in text and "Apache-2.0" in text
    assert "@article{lin2024evaluating," in text and "arXiv:2404.01291" in text
    assert f'VQAScore.from_pretrained("my-org/{name}")' in text
    assert f'AutoModelForImageTextToText.from_pretrained("my-org/{name}", trust_remote_code=True' in text
    assert f"clip-flant5 score --model my-org/{name}" in text
    assert "Global batch / learning rate | 256 / 1e-2 | 96 / 2e-5" in text
    assert f"[`zhiqiulin/{name}`](https://huggingface.co/zhiqiulin/{name})" in text


def test_published_results_cover_both_models_identically():
    for name in ("clip-flant5-xxl", "clip-flant5-xl"):
        rows = published_results(name)
        assert [row["name"] for row in rows] == BENCHMARKS
        assert all(0 < row["value"] <= 100 for row in rows)
    # The XXL is the better model on every benchmark but Pick-a-Pic, where the two tie (as published).
    xxl, xl = (published_results(name) for name in ("clip-flant5-xxl", "clip-flant5-xl"))
    assert all(big["value"] >= small["value"] for big, small in zip(xxl, xl))


def test_local_sources_are_not_published_nor_matched(tmp_path):
    source = tmp_path / "private" / "clip-flant5-xxl"
    card = render_model_card(CLIPFlanT5Config(), repo_id="me/model", source=str(source))
    assert str(tmp_path) not in str(card)
    assert "a local checkpoint (`clip-flant5-xxl`)" in card.text
    # A folder's name proves nothing about its weights: no published results are claimed for it.
    assert card.data.eval_results is None and card.data.base_model == ["openai/clip-vit-large-patch14-336"]
    assert (
        find_original_checkpoint(str(source)) is None and find_original_checkpoint("someone/clip-flant5-xxl") is None
    )


def test_projector_card_metadata_round_trip(tmp_path):
    card = render_projector_card(
        repo_id="my-org/clip-flant5-xxl-stage-1",
        vision_hidden_size=1024,
        text_hidden_size=4096,
        dtype="bfloat16",
        source="zhiqiulin/clip-flant5-xxl-stage-1",
    )
    loaded = round_trip(card, tmp_path)
    assert loaded.data.base_model == ["google/flan-t5-xxl", "openai/clip-vit-large-patch14-336"]
    assert loaded.data.datasets == ["liuhaotian/LLaVA-Pretrain"]
    assert loaded.data.license == "other" and loaded.data.library_name == "transformers"
    assert {"vqascore", "projector", "arxiv:2404.01291"} <= set(loaded.data.tags)
    assert loaded.data.eval_results is None
    # Linear(1024 -> 4096) + Linear(4096 -> 4096) with biases: the XXL projector's 20,979,712 parameters.
    assert f"{1024 * 4096 + 4096 + 4096 * 4096 + 4096:,} parameters" in loaded.text
    assert 'load_projector(model, "my-org/clip-flant5-xxl-stage-1")' in loaded.text
    with pytest.raises(ValueError, match="use render_model_card"):
        render_projector_card(
            repo_id="x/y", vision_hidden_size=1, text_hidden_size=1, source="zhiqiulin/clip-flant5-xl"
        )


def test_training_card_metadata_round_trip(tmp_path):
    hyperparameters = {"learning_rate": 2e-5, "global_batch_size": 96, "epochs": 1, "lr_scheduler": "cosine"}
    card = render_training_card(
        stage=2,
        base_text_model="google/flan-t5-xl",
        base_vision_model="openai/clip-vit-large-patch14-336",
        dataset="my-org/vqa-mix",
        hyperparameters=hyperparameters,
        results={"heldout_roc_auc": 0.97},
        repo_id="my-org/clip-flant5-xl-run",
    )
    loaded = round_trip(card, tmp_path)
    assert loaded.data.base_model == ["google/flan-t5-xl", "openai/clip-vit-large-patch14-336"]
    assert loaded.data.datasets == ["my-org/vqa-mix"]
    assert loaded.data.pipeline_tag == "image-text-to-text" and loaded.data.library_name == "transformers"
    assert {"stage-2", "trl", "vqascore", "arxiv:2404.01291"} <= set(loaded.data.tags)
    (result,) = loaded.data.eval_results
    assert (result.metric_type, result.metric_value, result.dataset_type) == (
        "heldout_roc_auc",
        0.97,
        "my-org/vqa-mix",
    )
    for name, value in hyperparameters.items():
        assert f"| {name} | {value} |" in loaded.text
    assert "stage-2 (VQA fine-tuning)" in loaded.text and "Research use only" in loaded.text

    local_data = tmp_path / "secret" / "llava.json"
    local_data.parent.mkdir()
    local_data.write_text("[]")
    stage1 = render_training_card(
        1, str(tmp_path / "t5"), "openai/clip-vit-large-patch14-336", str(local_data), {"lr": 1e-2}, license="mit"
    )
    assert str(tmp_path) not in str(stage1)
    assert stage1.data.datasets is None and stage1.data.eval_results is None
    assert stage1.data.license == "mit" and stage1.data.base_model == ["openai/clip-vit-large-patch14-336"]
    assert "stage-1 (feature alignment)" in stage1.text and "local data (`llava.json`)" in stage1.text
    with pytest.raises(ValueError, match="stage must be 1 or 2"):
        render_training_card(3, "a/b", "c/d", None, {})


def test_example_cards_in_the_repository_are_current(tmp_path):
    written = render_example_cards(tmp_path)
    assert {path.parent.name for path in written} == {
        "clip-flant5-xxl",
        "clip-flant5-xl",
        "clip-flant5-xxl-stage-1",
        "clip-flant5-xl-stage-1",
    }
    for path in written:
        committed = REPO_ROOT / "model_cards" / path.parent.name / "README.md"
        assert committed.read_text() == path.read_text(), (
            f"{committed} is stale: run `python -m transformers_clipflant5.hub.model_card model_cards`"
        )
    # The example stage-2 cards state the real models' sizes, counted from their architecture.
    xxl = ModelCard.load(tmp_path / "clip-flant5-xxl" / "README.md")
    assert "| Parameters | 11.46B (11,459,819,520) |" in xxl.text
    assert len(xxl.data.eval_results) == len(BENCHMARKS)
    assert {entry.name for entry in ORIGINAL_CHECKPOINTS} >= {path.parent.name for path in written}


def test_card_code_examples_run(tiny, original_folder, tmp_path, monkeypatch, capsys):
    """Execute every Python example of the cards against a tiny model saved in our format."""
    model, processor = tiny
    repo = tmp_path / "repo"
    model.save_pretrained(repo)
    processor.save_pretrained(repo)
    projector_repo = save_projector(model, tmp_path / "projector-repo")
    save_projector(model, repo)  # a stage-1 training output carries its projector alone too
    make_images([(30, 48)], seed=2)[0].save(tmp_path / "image.png")
    monkeypatch.chdir(tmp_path)

    stage2_card = render_model_card(model.config, repo_id=str(repo), source="zhiqiulin/clip-flant5-xl")
    bases = ("google/flan-t5-xl", "openai/clip-vit-large-patch14-336")
    training_cards = [render_training_card(stage, *bases, None, {}, repo_id=str(repo)) for stage in (2, 1)]
    projector_card = render_projector_card(repo_id=str(projector_repo), vision_hidden_size=1, text_hidden_size=1)
    blocks = [block for card in (stage2_card, *training_cards, projector_card) for block in python_blocks(card.text)]
    assert len(blocks) == 3 + 2 + 2 + 1
    fresh = type(model)(model.config).eval()
    torch.set_printoptions(precision=10)  # so that the printed tensors can be compared closely
    printed = []
    try:
        for block in blocks:
            # Each example runs on its own; `model` is only used by the projector examples, which expect one.
            exec(compile(block, "<model card>", "exec"), {"model": fresh})
            printed.append(capsys.readouterr().out)
    finally:
        torch.set_printoptions(profile="default")
    out = "".join(printed)
    # The two transformers-only examples and the two VQAScore examples print the same score.
    transformers_scores = [float(value) for value in re.findall(r"VQAScore: ([0-9.e+-]+)", out)]
    api_scores = [float(value) for value in re.findall(r"tensor\(\[([0-9.e+-]+)\]\)", out)]
    assert len(transformers_scores) == 2 and len(api_scores) == 2
    # ... the score the naive original procedure gives the same weights (printed to 10 digits: 1e-6 is room enough).
    naive = NaiveOriginal(original_folder)
    expected = float(naive.score([tmp_path / "image.png"], [vqa_prompt("a red circle on the left")], ["Yes"])[0])
    assert (
        transformers_scores[0] == pytest.approx(expected, abs=1e-5)
        and transformers_scores[0] == transformers_scores[1]
    )
    assert all(abs(score - transformers_scores[0]) <= 1e-6 for score in api_scores)
    # The stage-2 card's image-text-to-text pipeline answers what its generate() answers on the chat template's
    # inputs (blocks 2 and 3 of that card).
    generated = ast.literal_eval(printed[1].strip().splitlines()[-1])
    assert printed[2].strip() == generated[0].strip() != ""
    # The projector examples loaded the tiny projector into the fresh model.
    loaded = fresh.model.multi_modal_projector.linear_1.weight
    assert torch.equal(loaded, model.model.multi_modal_projector.linear_1.weight)


def test_training_card_shows_the_run_pictures_by_relative_path(tmp_path):
    figures = {"Training loss": "training_loss.png", "Held-out ROC curve": "plots/heldout_roc.png"}
    card = render_training_card(2, "google/flan-t5-xl", "openai/clip-vit-large-patch14-336", None, {}, figures=figures)
    loaded = round_trip(card, tmp_path)
    assert "## Pictures" in loaded.text
    for caption, name in figures.items():
        assert f"![{caption}]({name})" in loaded.text
    assert "## Pictures" not in render_training_card(2, "a/b", "c/d", None, {}).text
    for name in (str(tmp_path / "loss.png"), "../loss.png", "https://example.com/loss.png"):
        with pytest.raises(ValueError, match="relative to the folder"):
            render_training_card(2, "a/b", "c/d", None, {}, figures={"Loss": name})
