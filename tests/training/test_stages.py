"""What the stage scripts share: the collator and the model card description of a run follow its arguments."""

from trl import SFTConfig

from transformers_clipflant5.training.arguments import CLIPFlanT5ScriptArguments
from transformers_clipflant5.training.stages import stage_card_info, stage_collator


def test_card_info_and_collator_follow_the_run_arguments(tiny, tmp_path):
    _, processor = tiny
    script_args = CLIPFlanT5ScriptArguments(data_path="data.json", image_folder=str(tmp_path), template="t5_v1")
    training_args = SFTConfig(
        output_dir=str(tmp_path),
        hub_model_id="me/clip-flant5-run",
        seed=7,
        max_length=300,
        report_to="none",
        bf16=False,
    )
    sources = {"text_model": "google/flan-t5-xl", "vision_model": "openai/clip-vit-large-patch14-336"}
    info = stage_card_info(2, sources, script_args, training_args, num_rows=12)
    assert info["stage"] == 2 and info["repo_id"] == "me/clip-flant5-run" and info["dataset"] == "data.json"
    assert (info["base_text_model"], info["base_vision_model"]) == (sources["text_model"], sources["vision_model"])
    assert info["hyperparameters"]["training rows"] == 12 and info["hyperparameters"]["template"] == "t5_v1"
    collator = stage_collator(2, script_args, training_args, processor)
    # The seed fixes the stage-1 split-text cuts; a run's --seed must reach it.
    assert collator.seed == 7 and collator.max_length == 300 and collator.template == "t5_v1"
