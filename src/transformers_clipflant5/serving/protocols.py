# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""The three request formats the server speaks, read into pairs to score, and their answers.

- Flow-Factory (`POST /compute`, JSON): `{"prompt": [str], "image": [base64] | null, "video": [[base64 frame]] | null,
  "condition_images": null, "condition_videos": null}` -> `{"rewards": [float]}`, as its `RemotePointwiseRewardModel`
  sends and reads them.
- Flow-GRPO (`POST /`, pickle): `{"images": [JPEG bytes], "prompts": list or numpy array of str}` ->
  `{"outputs": [float], "scores": [float]}`, as its `*_score_remote` rewards (after ddpo-pytorch) send them.
- Ours (`POST /score`, JSON): `{"images": [base64], "texts": [str], "matrix": false, "question_template": str}`.

Both trainers' protocols answer all or nothing: a request with an item that cannot be scored is refused (422), its
message naming each such item by index. Ours answers per pair.
"""

from collections.abc import Sequence

import numpy as np

from ..scoring.video.sampling import frame_indices


class RequestError(Exception):
    """A request the server refuses: `status` (400 malformed, 413 too large, 422 unscorable) and a one-line
    message for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def item_problems(problems: Sequence[tuple[int, str]], what: str = "item") -> str:
    """One line naming the first few `(index, problem)` of a request."""
    shown = "; ".join(f"{what} {index}: {problem}" for index, problem in problems[:5])
    more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
    return f"{len(problems)} {what}(s) cannot be scored: {shown}{more}"


def string_list(value: object, field: str, allow_array: bool = False) -> list[str]:
    """`value` as a list of str (a numpy array of str too when `allow_array`); 400 otherwise."""
    if allow_array and isinstance(value, np.ndarray):
        if value.ndim != 1:
            raise RequestError(400, f'"{field}" must be a 1-D array of strings, got shape {value.shape}')
        value = value.tolist()
    if not isinstance(value, list | tuple):
        raise RequestError(400, f'"{field}" must be a list of strings, got {type(value).__name__}')
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise RequestError(400, f'"{field}"[{index}] must be a string, got {type(item).__name__}')
    return [str(item) for item in value]  # numpy's str_ is a str subclass: plain str from here on


def require_list(value: object, field: str) -> list:
    if not isinstance(value, list | tuple):
        raise RequestError(400, f'"{field}" must be a list, got {type(value).__name__}')
    return list(value)


def require_dict(payload: object, protocol: str) -> dict:
    if not isinstance(payload, dict):
        raise RequestError(400, f"the {protocol} body must be an object (a dict), got {type(payload).__name__}")
    return payload


def check_count(count: int, limit: int, what: str = "pairs") -> None:
    if count > limit:
        raise RequestError(413, f"the request holds {count} {what}, more than this server's limit of {limit} per "
                           "request (--max-items): split it")  # fmt: skip
    if count == 0:
        raise RequestError(422, f"the request holds no {what}")


# --------------------------------------------------------------------------------------------------------------------
# Flow-Factory


def read_flow_factory(payload: object, limit: int) -> tuple[list[str], list[object], dict[int, list]]:
    """`(prompts, images, videos)` of a `/compute` body: one image (base64 text, None where the item is a video)
    per prompt, and the frames of the items that are videos, by index."""
    payload = require_dict(payload, "/compute")
    if "prompt" not in payload:
        raise RequestError(
            400, 'the /compute body has no "prompt" list (Flow-Factory sends "prompt", "image", "video")'
        )
    prompts = string_list(payload["prompt"], "prompt")
    check_count(len(prompts), limit)
    for field in ("condition_images", "condition_videos"):
        if payload.get(field):
            raise RequestError(422, f'"{field}" is not used by VQAScore, which scores each image against its prompt: '
                               "leave it out of the reward's required_fields")  # fmt: skip
    images: list[object] = [None] * len(prompts)
    if payload.get("image") is not None:
        images = require_list(payload["image"], "image")
        if len(images) != len(prompts):
            raise RequestError(
                422, f'got {len(prompts)} prompts but {len(images)} images; send one "image" per prompt'
            )
    videos: dict[int, list] = {}
    if payload.get("video") is not None:
        video_list = require_list(payload["video"], "video")
        if len(video_list) != len(prompts):
            raise RequestError(
                422, f'got {len(prompts)} prompts but {len(video_list)} videos; send one "video" per prompt'
            )
        for index, frames in enumerate(video_list):
            if frames:
                videos[index] = require_list(frames, f"video[{index}]")
    return prompts, images, videos


def video_frame_items(videos: dict[int, list], num_frames: int) -> list[tuple[int, object]]:
    """The frames scored of each `/compute` video item, as `(item index, frame)`: `num_frames` sampled uniformly in
    time order as `VQAScore.score_videos` samples them (`scoring.video.frame_indices`), every frame of a shorter
    video. A video's reward is the mean of its frames' scores (`score_videos`' `"average"` mode)."""
    items = []
    for index in sorted(videos):
        frames = videos[index]
        if not frames:
            raise RequestError(422, f"item {index}: the video has no frames")
        items.extend((index, frames[position]) for position in frame_indices(len(frames), num_frames, "uniform"))
    return items


# --------------------------------------------------------------------------------------------------------------------
# Flow-GRPO


def read_flow_grpo(payload: object, limit: int) -> tuple[list[bytes], list[str]]:
    """`(JPEG bytes, prompts)` of an unpickled `POST /` body."""
    payload = require_dict(payload, "pickled")
    for field in ("images", "prompts"):
        if field not in payload:
            raise RequestError(400, f'the pickled body has no "{field}" (Flow-GRPO sends {{"images": [JPEG bytes], '
                               '"prompts": [str]}})')  # fmt: skip
    images = require_list(payload["images"], "images")
    prompts = string_list(payload["prompts"], "prompts", allow_array=True)
    if len(images) != len(prompts):
        raise RequestError(422, f"got {len(images)} images but {len(prompts)} prompts; send one prompt per image")
    check_count(len(images), limit)
    return images, prompts


# --------------------------------------------------------------------------------------------------------------------
# Ours


def read_score_request(payload: object, limit: int) -> tuple[list[object], list[str], bool, object]:
    """`(base64 images, texts, matrix, question_template)` of a `/score` body."""
    payload = require_dict(payload, "/score")
    unknown = sorted(set(payload) - {"images", "texts", "matrix", "question_template"})
    if unknown:
        raise RequestError(400, f"unknown field(s) {', '.join(unknown)}; /score takes images, texts, matrix and "
                           "question_template")  # fmt: skip
    for field in ("images", "texts"):
        if field not in payload:
            raise RequestError(400, f'the /score body has no "{field}" list')
    images = require_list(payload["images"], "images")
    texts = string_list(payload["texts"], "texts")
    matrix = payload.get("matrix", False)
    if not isinstance(matrix, bool):
        raise RequestError(400, f'"matrix" must be true or false, got {matrix!r}')
    if matrix:
        check_count(len(images) * len(texts), limit, "pairs (images x texts)")
    else:
        if len(images) != len(texts):
            raise RequestError(422, f"got {len(images)} images but {len(texts)} texts; /score pairs images[i] with "
                               'texts[i] (pass "matrix": true for every combination)')  # fmt: skip
        check_count(len(images), limit)
    return images, texts, matrix, payload.get("question_template")


__all__ = [
    "RequestError",
    "item_problems",
    "read_flow_factory",
    "read_flow_grpo",
    "read_score_request",
    "video_frame_items",
]
