"""examples/reward_guidance.py: back-propagating VQAScore into a generator raises the score of the saved 8-bit image,
the gain survives fresh random shifts of it (the expectation over transformations at work), and the distance penalty
keeps the image nearer the start than the same run without it."""

import importlib.util

from PIL import Image

from tests.support.paths import REPO_ROOT


def load_example():
    spec = importlib.util.spec_from_file_location("reward_guidance", REPO_ROOT / "examples" / "reward_guidance.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reward_guidance_raises_the_score_near_the_start(tiny, tmp_path, capsys):
    model, processor = tiny
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    example = load_example()
    parser = example.HfArgumentParser(example.RewardGuidanceArguments)

    def run(*extra: str) -> dict[str, float]:
        argv = ["--model", str(tmp_path / "model"), "--steps", "10", "--output", str(tmp_path / "out.png"), *extra]
        (arguments,) = parser.parse_args_into_dataclasses(argv)
        return example.main(arguments)

    guided = run()  # the defaults: 4x4 edits, 8 shifted and noised views per step, distance penalty
    printed = capsys.readouterr().out
    assert printed.count("VQAScore ") >= 11  # one line per step, 0 to 10
    assert guided["after"] > guided["before"] * 1.1, printed  # on the saved 8-bit image, through the PIL path
    assert guided["shifted_after"] > guided["shifted_before"] * 1.05, printed  # free pixels: 1.047 here
    assert Image.open(tmp_path / "out.png").size == (2 * 64 + 4, 64)

    # Same seed, same views: the penalty is the only difference, and without it the image moves further.
    unpenalised = run("--distance_weight", "0")
    assert 0 < guided["rms_change"] < unpenalised["rms_change"]
