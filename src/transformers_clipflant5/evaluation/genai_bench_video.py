# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""GenAI-Bench-Video (`clip-flant5 eval --task genai-bench-video`): its metadata file, the (video, prompt) pairs to
score, and the settings the scores were made with.

The benchmark folder holds `genai_video.json` and one folder of videos per generator:

    genai_video.json           {"<prompt id>": {"prompt": "<text>", "models": {"<generator>": [ratings], ...}, ...},
                                ...}
    <generator>/<prompt id>.mp4

(the published release has 800 prompts, or the 527 of the VQAScore paper, and the generators Floor33, Gen2, Pika_v1
and Modelscope; other keys of an entry, such as skill tags, are ignored). Each (prompt, generator) is one row: the
video `<generator>/<prompt id>.mp4` (relative to the metadata file's folder), the prompt, and the human ratings whose
mean the scores are compared with. The metrics are those of the `correlation` task over every video, ungrouped, as
the paper reports them: Pearson, Kendall tau-b and the tie-calibrated pairwise accuracy (and Spearman).

The paper's protocol scores each video with `--frame-sampling genai-bench --num-frames 36` (every frame of the first
36, the last repeated up to 36, scores averaged); `--num-frames 9` and `4` are its 9- and 4-frame variants.
"""

import json
import math
from pathlib import Path
from typing import Any

from . import BenchmarkError, read_rows


TASK = "genai-bench-video"
VIDEO_SUFFIX = ".mp4"


def read_genai_bench_video(path: str | Path) -> list[dict[str, Any]]:
    """
    The rows of a GenAI-Bench-Video metadata file: one per (prompt, generator), as
    `{"id": "<generator>/<prompt id>", "video": "<generator>/<prompt id>.mp4", "text": prompt, "human": [ratings],
    "model": generator}`. A file that is not in this layout raises [`BenchmarkError`] naming the entry.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise BenchmarkError(f"Benchmark file not found: {path}") from error
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BenchmarkError(f"{path} is not a JSON file ({error}).") from error
    if not isinstance(data, dict) or not data:
        raise BenchmarkError(
            f"{path} is not GenAI-Bench-Video metadata: expected a JSON object of prompt ids, each "
            '{"prompt": ..., "models": {generator: [ratings]}} (the genai_video.json of the release).'
        )
    rows = []
    for prompt_id, entry in data.items():
        where = f"{path} entry {prompt_id!r}"
        if not isinstance(entry, dict) or not isinstance(entry.get("prompt"), str):
            raise BenchmarkError(f"{where} has no 'prompt' text.")
        models = entry.get("models")
        if not isinstance(models, dict) or not models:
            raise BenchmarkError(f"{where} has no 'models' object of generator -> human ratings.")
        for model, ratings in models.items():
            values = ratings if isinstance(ratings, list) else [ratings]
            if not values or not all(_is_number(value) for value in values):
                raise BenchmarkError(f"{where}: the ratings of {model!r} must be a number or a list of numbers.")
            rows.append(
                {
                    "id": f"{model}/{prompt_id}",
                    "video": f"{model}/{prompt_id}{VIDEO_SUFFIX}",
                    "text": entry["prompt"],
                    "human": values,
                    "model": model,
                }
            )
    return rows


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def score_settings(path: str | Path) -> str | None:
    """How the videos of a `clip-flant5 score` output were scored (its records' `video_frames`); an output mixing
    several settings raises [`BenchmarkError`]."""
    settings = {row.get("video_frames") for row in read_rows(path) if "video" in row}
    if len(settings) > 1:
        raise BenchmarkError(
            f"{path} mixes videos scored in different ways ({sorted(map(str, settings))}): score them again with one "
            "set of --video-mode/--num-frames/--frame-sampling options."
        )
    return settings.pop() if settings else None


__all__ = ["TASK", "read_genai_bench_video", "score_settings"]
