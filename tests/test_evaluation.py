"""Benchmark metrics on synthetic fixtures whose values are known by construction, and the `clip-flant5 eval` command."""

import itertools
import json

import numpy as np
import pytest
import torch

from tests.support.cli import run_cli
from tests.support.images import make_images
from transformers_clipflant5 import VQAScore
from transformers_clipflant5.evaluation import (
    BenchmarkError,
    benchmark_pairs,
    correlation_metrics,
    evaluate,
    pairwise_preference_metrics,
    read_score_table,
    tie_calibrated_accuracy,
    winoground_metrics,
)


# s[i][j] = score of image i with caption j; caption j describes image j.
BOTH = [[0.9, 0.1], [0.2, 0.8]]  # text and image correct
TEXT_ONLY = [[0.5, 0.4], [0.8, 0.9]]  # each image prefers its caption; image 1 wins caption 0
IMAGE_ONLY = [[0.5, 0.6], [0.1, 0.7]]  # each caption prefers its image; image 0 prefers caption 1
NEITHER = [[0.1, 0.9], [0.8, 0.2]]
TIE = [[0.5, 0.5], [0.5, 0.5]]  # equal scores are not a preference (strict inequalities)


def test_winoground_scores_by_construction():
    examples = [BOTH] * 3 + [TEXT_ONLY] * 2 + [IMAGE_ONLY] + [NEITHER] * 3 + [TIE]
    metrics = winoground_metrics(examples)
    assert metrics["num_examples"] == 10
    assert metrics["text_score"] == pytest.approx(50.0)  # BOTH + TEXT_ONLY
    assert metrics["image_score"] == pytest.approx(40.0)  # BOTH + IMAGE_ONLY
    assert metrics["group_score"] == pytest.approx(30.0)  # BOTH
    with pytest.raises(BenchmarkError, match=r"shape \(n, 2, 2\)"):
        winoground_metrics([[0.1, 0.2]])


def test_a_tie_in_one_comparison_fails_that_criterion_alone():
    """Each criterion needs both of its comparisons strict: a tie in one of them fails it, the other still counts."""
    image_tie = [[0.5, 0.1], [0.5, 0.9]]  # captions right (0.5 > 0.1, 0.9 > 0.5); caption 0 ties between images
    text_tie = [[0.5, 0.5], [0.1, 0.9]]  # images right (0.5 > 0.1, 0.9 > 0.5); image 0 ties between captions
    metrics = winoground_metrics([image_tie, text_tie])
    assert metrics["text_score"] == pytest.approx(50.0)  # image_tie
    assert metrics["image_score"] == pytest.approx(50.0)  # text_tie
    assert metrics["group_score"] == pytest.approx(0.0)
    # Reversed: the tie is in the second comparison of each criterion.
    image_tie_second = [[0.9, 0.5], [0.1, 0.5]]  # captions right (0.9 > 0.5, 0.5 > 0.1); caption 1 ties
    text_tie_second = [[0.9, 0.1], [0.5, 0.5]]  # images right (0.9 > 0.5, 0.5 > 0.1); image 1 ties
    metrics = winoground_metrics([image_tie_second, text_tie_second])
    assert (metrics["text_score"], metrics["image_score"], metrics["group_score"]) == pytest.approx((50.0, 50.0, 0.0))


def brute_force_tie_accuracy(difference, human):
    """Every epsilon in {0} U {|d|}, every pair checked one by one."""
    best = (-1.0, None)
    for epsilon in sorted({0.0, *np.abs(difference)}):
        verdicts = [0 if abs(d) <= epsilon else int(np.sign(d)) for d in difference]
        accuracy = 100.0 * np.mean([v == h for v, h in zip(verdicts, human)])
        if accuracy > best[0]:
            best = (accuracy, epsilon)
    return best


def test_tie_calibrated_accuracy_by_construction_and_against_brute_force():
    # eps 0: the three clear pairs are right (3/6); eps 0.02 also calls the two human ties right (5/6); eps 0.03
    # would turn the +0.03 pair into a (wrong) tie.
    difference = np.array([0.5, -0.4, 0.01, -0.02, 0.03, 0.3])
    human = np.array([1, -1, 0, 0, 1, 0])
    accuracy, epsilon = tie_calibrated_accuracy(difference, human)
    assert accuracy == pytest.approx(500 / 6) and epsilon == pytest.approx(0.02)
    # Exactly equal scores are a metric tie even at epsilon 0.
    assert tie_calibrated_accuracy(np.array([0.0, 0.2]), np.array([0, 1])) == (100.0, 0.0)

    rng = np.random.default_rng(0)
    for _ in range(20):
        size = int(rng.integers(1, 30))
        difference = np.round(rng.normal(size=size), 1)  # rounding makes equal gaps and zero differences
        human = rng.integers(-1, 2, size=size)
        accuracy, epsilon = tie_calibrated_accuracy(difference, human)
        expected_accuracy, expected_epsilon = brute_force_tie_accuracy(difference, human)
        assert accuracy == pytest.approx(expected_accuracy) and epsilon == pytest.approx(expected_epsilon)


def test_pairwise_preferences_by_construction():
    # Rows: a wins (metric agrees), b wins (agrees), a wins (metric disagrees), tie (metric gap 0.01), tie (gap 0.5).
    metrics = pairwise_preference_metrics(
        [0.9, 0.2, 0.3, 0.50, 0.9], [0.1, 0.7, 0.6, 0.51, 0.4], [0, 1, "a", "tie", "tie"]
    )
    assert metrics["num_pairs"] == 5 and metrics["num_human_ties"] == 2
    assert metrics["accuracy_without_ties"] == pytest.approx(200 / 3)
    # epsilon 0.01 adds the first tie (3/5); 0.3 would lose the agreeing 0.5 pair.
    assert metrics["accuracy_tie_calibrated"] == pytest.approx(60.0)
    assert metrics["tie_epsilon"] == pytest.approx(0.01)
    with pytest.raises(BenchmarkError, match="Row 0: preference"):
        pairwise_preference_metrics([0.1], [0.2], ["left"])


def test_a_human_winner_the_metric_ranks_last_or_ties_is_a_miss():
    # Human: b wins; metric: a higher, then equal scores. Both wrong, whichever side the human took.
    assert pairwise_preference_metrics([0.9], [0.1], [1])["accuracy_without_ties"] == 0.0
    assert pairwise_preference_metrics([0.5, 0.5], [0.5, 0.5], [0, 1])["accuracy_without_ties"] == 0.0


def test_rank_correlations_with_tied_scores():
    # Scores 1, 2, 2, 3 rank as 1, 2.5, 2.5, 4 against 1, 2, 3, 4: Spearman = 4.5 / sqrt(4.5 * 5) = sqrt(0.9);
    # Kendall tau-b: 5 concordant pairs, none discordant, one tied in the scores: 5 / sqrt((6 - 1) * 6).
    metrics = correlation_metrics([1.0, 2.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0])
    assert metrics["spearman"] == pytest.approx(0.9**0.5)
    assert metrics["kendall_tau_b"] == pytest.approx(5 / 30**0.5)


def test_correlations_by_construction():
    # Ranks differ by one swap: Spearman = 1 - 6 * 2 / (4 * 15) = 0.8, Kendall = (5 - 1) / 6, Pearson = 0.8 on ranks.
    metrics = correlation_metrics([1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0])
    assert metrics["spearman"] == pytest.approx(0.8)
    assert metrics["pearson"] == pytest.approx(0.8)
    assert metrics["kendall_tau_b"] == pytest.approx(4 / 6)
    assert metrics["pairwise_accuracy_tie_calibrated"] == pytest.approx(500 / 6)
    assert metrics["num_pairs"] == 6

    # A monotone transform of the ratings, human ties included: perfect agreement everywhere.
    human = np.array([1, 2, 2, 3, 5, 4, 4, 1], dtype=float)
    metrics = correlation_metrics(np.exp(human) / 1000, human)
    assert metrics["spearman"] == pytest.approx(1.0) and metrics["kendall_tau_b"] == pytest.approx(1.0)
    assert metrics["pairwise_accuracy_tie_calibrated"] == pytest.approx(100.0)
    assert metrics["pearson"] < 0.99  # not linear

    # Groups: within each group the order is right, across groups it is reversed; only within-group pairs count.
    scores, ratings = [0.8, 0.9, 0.1, 0.2], [1.0, 2.0, 3.0, 4.0]
    assert (
        correlation_metrics(scores, ratings, groups=["p1", "p1", "p2", "p2"])["pairwise_accuracy_tie_calibrated"]
        == 100.0
    )
    assert correlation_metrics(scores, ratings)["pairwise_accuracy_tie_calibrated"] == pytest.approx(200 / 6)
    with pytest.raises(BenchmarkError, match="same"):
        correlation_metrics([0.5, 0.5, 0.5], [1.0, 2.0, 3.0])


def test_evaluate_reads_inline_scores_or_a_score_table():
    rows = [
        {"id": "w0", "images": ["a.png", "b.png"], "captions": ["cat", "dog"], "scores": BOTH},
        {"id": "w1", "images": ["c.png", "d.png"], "captions": ["red", "blue"], "scores": TEXT_ONLY},
    ]
    assert evaluate("winoground", rows)["text_score"] == 100.0
    table = {
        (image, caption): rows[k]["scores"][i][j]
        for k in range(2)
        for i, image in enumerate(rows[k]["images"])
        for j, caption in enumerate(rows[k]["captions"])
    }
    stripped = [{key: value for key, value in row.items() if key != "scores"} for row in rows]
    assert evaluate("winoground", stripped, table) == evaluate("winoground", rows)
    assert benchmark_pairs("winoground", stripped) == list(table)

    del table[("d.png", "blue")]
    with pytest.raises(BenchmarkError, match=r"1 \(image, text\) pair\(s\) of the benchmark have no score"):
        evaluate("winoground", stripped, table)
    with pytest.raises(BenchmarkError, match="Row 0 .* no 'captions'"):
        evaluate("winoground", [{"images": ["a", "b"], "scores": BOTH}])
    with pytest.raises(BenchmarkError, match="'human' must be a number"):
        evaluate("correlation", [{"image": "a", "text": "t", "score": 0.1, "human": "good"}] * 2)


def test_evaluate_correlation_averages_raters_and_compares_within_groups():
    rows = [
        {"image": "a", "text": "t1", "score": 0.8, "human": [1, 3], "group": "p1"},
        {"image": "b", "text": "t1", "score": 0.9, "human": 4, "group": "p1"},
        {"image": "c", "text": "t2", "score": 0.1, "human": [5, 7], "group": "p2"},
        {"image": "d", "text": "t2", "score": 0.2, "human": 8, "group": "p2"},
    ]
    metrics = evaluate("correlation", rows)
    # The raters' means are 2, 4, 6, 8; only the two within-group pairs are compared, and both agree.
    assert metrics["pearson"] == pytest.approx(np.corrcoef([0.8, 0.9, 0.1, 0.2], [2, 4, 6, 8])[0, 1])
    assert metrics["num_pairs"] == 2 and metrics["pairwise_accuracy_tie_calibrated"] == 100.0
    # Without groups every pair counts, and the four across groups disagree.
    ungrouped = evaluate("correlation", [{k: v for k, v in row.items() if k != "group"} for row in rows])
    assert ungrouped["num_pairs"] == 6 and ungrouped["pairwise_accuracy_tie_calibrated"] == pytest.approx(200 / 6)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_eval_command_pairwise_and_correlation_files(tmp_path, capsys):
    pairwise = write_jsonl(
        tmp_path / "pairwise.jsonl",
        [
            {"text": "a cat", "images": ["x.png", "y.png"], "preference": 0},
            {"text": "a dog", "images": ["x.png", "y.png"], "preference": 1},
            {"text": "a cow", "images": ["x.png", "y.png"], "preference": "tie"},
        ],
    )
    scores = write_jsonl(
        tmp_path / "scores.jsonl",
        [
            {"row": k, "id": None, "image": image, "text": text, "score": score}
            for k, (image, text, score) in enumerate(
                [("x.png", "a cat", 0.8), ("y.png", "a cat", 0.3), ("x.png", "a dog", 0.6), ("y.png", "a dog", 0.7)]
                + [("x.png", "a cow", 0.4), ("y.png", "a cow", 0.4)]
            )
        ],
    )
    code, out, err = run_cli(
        ["eval", "--task", "pairwise", "--benchmark", str(pairwise), "--scores", str(scores)], capsys
    )
    assert code == 0, err
    metrics = json.loads(out)
    assert metrics["accuracy_without_ties"] == 100.0 and metrics["accuracy_tie_calibrated"] == 100.0

    ratings = [{"image": f"{k}.png", "text": "t", "human": [k, k + 1], "score": 0.1 * k} for k in range(5)]
    correlation = tmp_path / "ratings.json"
    correlation.write_text(json.dumps(ratings))
    output = tmp_path / "metrics.json"
    code, out, _ = run_cli(
        ["eval", "--task", "correlation", "--benchmark", str(correlation), "--output", str(output)], capsys
    )
    assert code == 0
    assert json.loads(output.read_text())["pearson"] == pytest.approx(1.0)

    code, _, err = run_cli(["eval", "--task", "correlation", "--benchmark", str(tmp_path / "none.jsonl")], capsys)
    assert code == 2 and "File not found" in err


@pytest.mark.parametrize("option", ["--write-pairs", "--output"])
def test_eval_output_that_cannot_be_written_is_status_2(tmp_path, capsys, option):
    # The help promises 0 or 2; a folder given as the file to write was a traceback with status 1.
    benchmark = write_jsonl(
        tmp_path / "wino.jsonl", [{"images": ["a.png", "b.png"], "captions": ["a", "b"], "scores": BOTH}]
    )
    code, out, err = run_cli(
        ["eval", "--task", "winoground", "--benchmark", str(benchmark), option, str(tmp_path)], capsys
    )
    assert code == 2 and out == ""
    assert err.startswith("error: ") and str(tmp_path) in err and "Traceback" not in err, err


def test_a_nan_score_is_rejected_with_its_row_named(tmp_path, capsys):
    # NaN compares false with everything: unchecked, it would count as "not preferred" and move the metrics silently.
    benchmark = write_jsonl(
        tmp_path / "wino.jsonl",
        [
            {"id": "w0", "images": ["a.png", "b.png"], "captions": ["cat", "dog"]},
            {"id": "w1", "images": ["c.png", "d.png"], "captions": ["red", "blue"]},
        ],
    )
    records = [
        {"row": k, "id": None, "image": image, "text": text, "score": 0.1 * (k + 1)}
        for k, (image, text) in enumerate(benchmark_pairs("winoground", evaluation_rows(benchmark)))
    ]
    records[6]["score"] = float("nan")  # json writes NaN, as `clip-flant5 score` would for a failed pair
    scores = write_jsonl(tmp_path / "scores.jsonl", records)
    code, out, err = run_cli(
        ["eval", "--task", "winoground", "--benchmark", str(benchmark), "--scores", str(scores)], capsys
    )
    assert code == 2 and not out
    assert "row 6 (image 'd.png', text 'red') has the score nan" in err

    # Inside the rows, for each task.
    nan = float("nan")
    wino = [{"id": f"w{k}", "images": ["a", "b"], "captions": ["c", "d"], "scores": BOTH} for k in range(2)]
    wino[1]["scores"] = [[0.1, nan], [0.2, 0.3]]
    with pytest.raises(BenchmarkError, match=r"Row 1 \(id 'w1'\): 'scores' holds a non-finite score"):
        evaluate("winoground", wino)
    with pytest.raises(BenchmarkError, match=r"Row 0 \(id 'p0'\): 'scores' holds a non-finite score"):
        evaluate("pairwise", [{"id": "p0", "text": "t", "images": ["a", "b"], "scores": [nan, 0.5], "preference": 0}])
    ratings = [{"id": f"r{k}", "image": f"{k}", "text": "t", "human": k, "score": 0.1 * k} for k in range(3)]
    ratings[2]["score"] = float("inf")
    with pytest.raises(BenchmarkError, match=r"Row 2 \(id 'r2'\): 'score' holds a non-finite score"):
        evaluate("correlation", ratings)
    with pytest.raises(BenchmarkError, match=r"Row 0 \(id 'p0'\): 'scores' must be \[score_a, score_b\]"):
        evaluate("pairwise", [{"id": "p0", "text": "t", "images": ["a", "b"], "scores": [0.5], "preference": 0}])


def evaluation_rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_write_pairs_score_and_eval_end_to_end(tiny, tmp_path, capsys):
    """eval --write-pairs -> score -> eval equals the metrics computed from the API's score matrices."""
    model, processor = tiny
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    for index, image in enumerate(make_images([(20, 40), (50, 30), (33, 33), (24, 10)], seed=3)):
        image.save(tmp_path / f"{index}.png")
    captions = [["a red circle", "a blue square"], ["green", "a yellow cross"]]
    rows = [{"id": k, "images": [f"{2 * k}.png", f"{2 * k + 1}.png"], "captions": captions[k]} for k in range(2)]
    benchmark = write_jsonl(tmp_path / "wino.jsonl", rows)
    pairs, scores = tmp_path / "pairs.jsonl", tmp_path / "scores.jsonl"

    assert (
        run_cli(["eval", "--task", "winoground", "--benchmark", str(benchmark), "--write-pairs", str(pairs)], capsys)[
            0
        ]
        == 0
    )
    assert len(pairs.read_text().splitlines()) == 8
    code, _, err = run_cli(
        ["score", "--model", str(tmp_path / "model"), "--pairs", str(pairs), "--output", str(scores)], capsys
    )
    assert code == 0, err
    code, out, _ = run_cli(
        ["eval", "--task", "winoground", "--benchmark", str(benchmark), "--scores", str(scores)], capsys
    )
    assert code == 0

    scorer = VQAScore(model=model, processor=processor)
    matrices = [
        scorer.score_matrix([str(tmp_path / image) for image in row["images"]], row["captions"]) for row in rows
    ]
    expected = winoground_metrics(torch.stack(matrices).numpy())
    reported = json.loads(out)
    for name in ("text_score", "image_score", "group_score"):
        assert reported[name] == pytest.approx(expected[name])
    # The joined scores are the API's.
    table = {
        (record["image"], record["text"]): record["score"]
        for record in map(json.loads, scores.read_text().splitlines())
    }
    for row, matrix in zip(rows, matrices):
        for (i, image), (j, caption) in itertools.product(enumerate(row["images"]), enumerate(row["captions"])):
            assert table[(image, caption)] == pytest.approx(float(matrix[i, j]), rel=1e-5)


def test_a_pair_scored_twice_must_agree_with_itself(tmp_path):
    # Two score files concatenated (e.g. runs of different models) would otherwise silently keep the last score.
    rows = [{"image": "a.png", "text": "cat", "score": 0.25}, {"image": "b.png", "text": "cat", "score": 0.5}]
    assert read_score_table(write_jsonl(tmp_path / "same.jsonl", rows + rows[:1])) == {
        ("a.png", "cat"): 0.25,
        ("b.png", "cat"): 0.5,
    }
    conflicting = [*rows, {"image": "a.png", "text": "cat", "score": 0.75}]
    with pytest.raises(BenchmarkError, match=r"scores the pair \('a.png', 'cat'\) twice with different values"):
        read_score_table(write_jsonl(tmp_path / "conflict.jsonl", conflicting))
