"""`clip-flant5 score` rows with a video, and `clip-flant5 eval --task genai-bench-video` end to end on a synthetic
benchmark in the release's layout."""

import json

import numpy as np
import pytest
import torch

from tests.support.cli import run_cli
from tests.support.videos import LOSSY, random_frames, write_video
from transformers_clipflant5 import VQAScore
from transformers_clipflant5.evaluation import correlation_metrics


pytest.importorskip("av")

TEXTS = ["a red circle", "a blue square on the left", "green"]


@pytest.fixture(scope="module")
def workdir(tiny, tmp_path_factory):
    folder = tmp_path_factory.mktemp("video-cli")
    model, processor = tiny
    model.save_pretrained(folder / "model")
    processor.save_pretrained(folder / "model")
    (folder / "videos").mkdir()
    for index in range(2):
        write_video(folder / "videos" / f"{index}.mkv", random_frames(12 + 5 * index, seed=index))
    (folder / "videos" / "broken.mp4").write_text("not a video")
    return folder


@pytest.fixture(scope="module")
def scorer(tiny):
    model, processor = tiny
    return VQAScore(model=model, processor=processor)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_video_rows_score_as_the_api_with_bad_videos_skipped(workdir, scorer, capsys):
    rows = [
        {"id": "a", "video": "videos/0.mkv", "text": TEXTS[0]},
        {"id": "b", "image": "videos/none.png", "text": TEXTS[1]},
        {"id": "c", "video": "videos/broken.mp4", "text": TEXTS[1]},
        {"id": "d", "video": "videos/1.mkv", "text": TEXTS[2]},
        {"id": "e", "video": "videos/missing.webm", "text": TEXTS[0]},
        {"id": "f", "video": "videos/1.mkv", "image": "videos/0.png", "text": TEXTS[0]},
    ]
    pairs = write_jsonl(workdir / "pairs.jsonl", rows)
    output = workdir / "scores.jsonl"
    options = ["--video-mode", "concat", "--num-frames", "4"]
    command = ["score", "--model", str(workdir / "model"), "--pairs", str(pairs), "--output", str(output), *options]
    code, _, err = run_cli([*command, "--no-progress"], capsys)
    assert code == 1
    records = read_jsonl(output)
    assert [record["id"] for record in records] == ["a", "d"]
    videos = [str(workdir / "videos/0.mkv"), str(workdir / "videos/1.mkv")]
    expected = scorer.score_videos(videos, [TEXTS[0], TEXTS[2]], num_frames=4, mode="concat")
    torch.testing.assert_close(torch.tensor([record["score"] for record in records]), expected, rtol=1e-5, atol=0)
    assert records[0]["video"] == "videos/0.mkv" and "image" not in records[0]
    assert records[0]["video_frames"] == "concat, 4 frames, uniform"
    assert "row 2 (line 3), video 'videos/broken.mp4'" in err and "not a readable video" in err
    assert "row 4 (line 5), video 'videos/missing.webm'" in err and "Video file not found" in err
    assert "both 'image' and 'video'" in err and "row 1 (line 2), image 'videos/none.png'" in err

    # A re-run with other frame options would mix two protocols in one file: refused.
    code, _, err = run_cli([*command[:-4], "--num-frames", "8", "--no-progress"], capsys)
    assert code == 2 and "other video options" in err
    assert read_jsonl(output) == records


def test_csv_pairs_files_may_have_a_video_column(tmp_path):
    from clip_flant5_cli.score.pairs_file import read_pairs

    pairs = tmp_path / "pairs.csv"
    pairs.write_text("id,image,video,text\na,,clip.mp4,a cat\nb,cat.png,,a cat\nc,cat.png,clip.mp4,a cat\nd,,,a cat\n")
    rows = read_pairs(pairs)
    assert [(row.image, row.video, row.problem) for row in rows[:2]] == [
        (None, "clip.mp4", None),
        ("cat.png", None, None),
    ]
    assert "both 'image' and 'video'" in rows[2].problem and "no 'image' field" in rows[3].problem
    only_videos = tmp_path / "videos.tsv"
    only_videos.write_text("video\ttext\nclip.webm\ta dog\n")
    assert [(row.video, row.text, row.problem) for row in read_pairs(only_videos)] == [("clip.webm", "a dog", None)]


def test_bad_frame_options_stop_before_the_model_loads(workdir, capsys):
    pairs = write_jsonl(workdir / "one.jsonl", [{"video": "videos/0.mkv", "text": "x"}])
    command = ["score", "--model", str(workdir / "missing-model"), "--pairs", str(pairs)]
    code, _, err = run_cli(
        [*command, "--output", str(workdir / "o.jsonl"), "--frame-sampling", "genai-bench", "--num-frames", "8"],
        capsys,
    )
    assert code == 2 and "--num-frames/--frame-sampling" in err and "36, 9, 4 frames" in err


def test_genai_bench_video_eval_end_to_end(tiny, scorer, tmp_path, capsys):
    # The release's layout: genai_video.json and <generator>/<prompt id>.mp4, videos of different lengths (some
    # shorter than 36 frames, padded; one longer, cut).
    generators, prompts = ["Gen2", "Floor33"], {"0": TEXTS[0], "1": TEXTS[1], "2": TEXTS[2]}
    rng = np.random.default_rng(0)
    metadata = {}
    for prompt_id, prompt in prompts.items():
        ratings = {}
        for number, generator in enumerate(generators):
            (tmp_path / generator).mkdir(exist_ok=True)
            count = 5 + 10 * int(prompt_id) + 7 * number
            write_video(tmp_path / generator / f"{prompt_id}.mp4", random_frames(count, 32, 32, seed=count), LOSSY)
            ratings[generator] = rng.integers(1, 6, size=3).tolist()
        metadata[prompt_id] = {"prompt": prompt, "models": ratings, "skills": ["ignored"]}
    benchmark = tmp_path / "genai_video.json"
    benchmark.write_text(json.dumps(metadata))
    pairs, scores, metrics_file = tmp_path / "pairs.jsonl", tmp_path / "scores.jsonl", tmp_path / "metrics.json"

    eval_command = ["eval", "--task", "genai-bench-video", "--benchmark", str(benchmark)]
    assert run_cli([*eval_command, "--write-pairs", str(pairs)], capsys)[0] == 0
    written = read_jsonl(pairs)
    assert len(written) == 6 and {"video", "text"} == set(written[0]) and written[0]["video"] == "Gen2/0.mp4"

    model, processor = tiny
    model_folder = tmp_path / "model"
    model.save_pretrained(model_folder)
    processor.save_pretrained(model_folder)
    protocol = ["--frame-sampling", "genai-bench", "--num-frames", "9"]
    command = ["score", "--model", str(model_folder), "--pairs", str(pairs), "--output", str(scores), *protocol]
    assert run_cli([*command, "--no-progress"], capsys)[0] == 0

    code, out, _ = run_cli([*eval_command, "--scores", str(scores), "--output", str(metrics_file)], capsys)
    assert code == 0
    metrics = json.loads(out)
    assert metrics == json.loads(metrics_file.read_text())
    videos = [str(tmp_path / row["video"]) for row in written]
    api_scores = scorer.score_videos(videos, [row["text"] for row in written], num_frames=9, sampling="genai-bench")
    mean_rating = {
        f"{generator}/{prompt_id}.mp4": float(np.mean(ratings))
        for prompt_id, entry in metadata.items()
        for generator, ratings in entry["models"].items()
    }
    human = [mean_rating[row["video"]] for row in written]
    expected = correlation_metrics(api_scores.tolist(), human)
    for name in ("pearson", "kendall_tau_b", "pairwise_accuracy_tie_calibrated", "num_rows"):
        assert metrics[name] == pytest.approx(expected[name], rel=1e-4)
    assert metrics["video_frames"] == "average, 9 frames, genai-bench"

    # Scores are required, and a layout that is not GenAI-Bench-Video's is named as such.
    code, _, err = run_cli(eval_command, capsys)
    assert code == 2 and "--scores" in err
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps([{"image": "a.png", "text": "x"}]))
    code, _, err = run_cli(["eval", "--task", "genai-bench-video", "--benchmark", str(wrong)], capsys)
    assert code == 2 and "not GenAI-Bench-Video metadata" in err


def test_genai_bench_video_eval_refuses_scores_made_with_mixed_settings(tmp_path, capsys):
    metadata = {"0": {"prompt": "a cat", "models": {"A": [1, 2], "B": [4, 5]}}}
    benchmark = tmp_path / "genai_video.json"
    benchmark.write_text(json.dumps(metadata))
    records = [
        {"row": 0, "id": None, "video": "A/0.mp4", "text": "a cat", "score": 0.2, "video_frames": "average, 36 frames, genai-bench"},
        {"row": 1, "id": None, "video": "B/0.mp4", "text": "a cat", "score": 0.7, "video_frames": "average, 4 frames, genai-bench"},
    ]  # fmt: skip
    scores = write_jsonl(tmp_path / "scores.jsonl", records)
    command = ["eval", "--task", "genai-bench-video", "--benchmark", str(benchmark), "--scores", str(scores)]
    code, _, err = run_cli(command, capsys)
    assert code == 2 and "mixes videos scored in different ways" in err
    records[1]["video_frames"] = records[0]["video_frames"]
    write_jsonl(scores, records)
    code, out, _ = run_cli(command, capsys)
    assert code == 0 and json.loads(out)["pairwise_accuracy_tie_calibrated"] == 100.0
