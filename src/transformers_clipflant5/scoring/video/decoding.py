# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Reading the sampled frames of a video, in memory, as 8-bit RGB PIL images.

A video is a file (anything FFmpeg demuxes: mp4, webm, mkv, mov, gif, ...), a `(T, H, W, C)` or `(T, C, H, W)` array
or tensor (each frame read by the image rules: uint8, uint16 or float in [0, 1]), or a list of frames (PIL images,
arrays or image paths).

Files are read with PyAV (the `video` extra). Only the needed frames are decoded: the container is demuxed once
without decoding (its packets give the frame count, each frame's timestamp and the keyframes), then for each needed
frame the decoder seeks to the keyframe before it, unless it is already past that keyframe, and decodes up to the
frame. Nothing is written to disk. A stream whose packets carry no timestamps cannot be seeked: it is decoded from
the start up to the last needed frame.
"""

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image

from ...image_processing_clip_flant5 import ImageInput, load_image


VideoInput = Union[str, os.PathLike, np.ndarray, torch.Tensor, Sequence[ImageInput]]
# Given a video's frame count, the indices of the frames to read (see `sampling.frame_indices`).
IndexRule = Callable[[int], list[int]]
VIDEO_INSTALL = 'pip install "transformers-clipflant5[video]" (PyAV)'


def video_key(video: VideoInput) -> tuple[str, object]:
    """What identifies a video within a call: a path by its absolute name, anything else by identity."""
    if isinstance(video, (str, os.PathLike)):
        return ("path", os.path.abspath(os.fspath(video)))
    return ("object", id(video))


def read_frames(video: VideoInput, indices: IndexRule, max_pixels: int | None) -> list[Image.Image]:
    """
    The frames `indices(frame count)` of `video` as RGB PIL images, one per index (the same object for a repeated
    index). Raises FileNotFoundError, IsADirectoryError, ValueError or TypeError with the reason (and the file's
    name) when the video cannot be read. `max_pixels` bounds the pixels of the distinct frames of a file together,
    checked from its header before anything is decoded.
    """
    if isinstance(video, (str, os.PathLike)):
        return _read_file(Path(os.fspath(video)), indices, max_pixels)
    if isinstance(video, Image.Image):
        raise TypeError(
            "Got a single image where a video was expected: a video given as frames is a list of frames ([[frame, "
            "...]] for a list of one video)."
        )
    if isinstance(video, (np.ndarray, torch.Tensor)):
        if video.ndim != 4:
            raise ValueError(
                f"A video array must be 4-D, (T, H, W, C) or (T, C, H, W), got shape {tuple(video.shape)}."
            )
        frames = video
    elif isinstance(video, (list, tuple)):
        frames = video
    else:
        raise TypeError(
            f"Unsupported video type {type(video).__name__}: pass a file path, a (T, H, W, C) or (T, C, H, W) array "
            "or tensor, or a list of frames."
        )
    if len(frames) == 0:
        raise ValueError("The video has no frames.")
    loaded: dict[int, Image.Image] = {}
    wanted = indices(len(frames))
    for index in wanted:
        if index not in loaded:
            try:
                loaded[index] = load_image(frames[index], max_pixels)
            except (OSError, ValueError, TypeError) as error:
                raise type(error)(f"frame {index}: {error}") from error
    return [loaded[index] for index in wanted]


def _import_av():
    try:
        import av
    except ImportError as error:
        raise ImportError(f"Reading video files needs PyAV: {VIDEO_INSTALL}") from error
    return av


def _read_file(path: Path, indices: IndexRule, max_pixels: int | None) -> list[Image.Image]:
    if path.is_dir():
        raise IsADirectoryError(f"Video path is a folder, not a video file: {path}")
    if not path.exists():
        raise FileNotFoundError(f"Video file not found: {path}")
    if not path.is_file():
        raise ValueError(f"Video path is not a regular file (a device, a pipe or a socket): {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"Video file is empty (0 bytes): {path}")
    av = _import_av()
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.error.EOFError as error:
        raise ValueError(f"Video {path} ends before its first frame: it has no frames, or it is truncated.") from error
    except av.FFmpegError as error:
        raise ValueError(f"{path} is not a readable video ({error}).") from error
    with container:
        if not container.streams.video:
            raise ValueError(f"{path} has no video frames (no video stream: an empty video, or an audio file?).")
        stream = container.streams.video[0]
        try:
            packets = [
                (packet.pts, packet.is_keyframe, packet.duration) for packet in container.demux(stream) if packet.size
            ]
        except av.FFmpegError as error:
            raise ValueError(
                f"Video {path} is truncated or corrupt: its container cannot be read ({error})."
            ) from error
        if not packets:
            raise ValueError(f"Video {path} has no frames.")
        _check_complete(container, stream, packets, path)
        wanted = indices(len(packets))
        width, height = stream.codec_context.width, stream.codec_context.height
        if width <= 0 or height <= 0:
            raise ValueError(f"Video {path} declares no frame size ({width}x{height}): it is corrupt.")
        distinct = len(set(wanted))
        if max_pixels is not None and distinct * width * height > max_pixels:
            raise ValueError(
                f"Video {path}: {distinct} frames of {width}x{height} are {distinct * width * height} pixels, more "
                f"than the limit of {max_pixels} (max_image_pixels); refusing to decode them. Score fewer frames, or "
                "raise max_image_pixels if the memory is there."
            )
        try:
            if any(pts is None for pts, _, _ in packets):
                decoded = _decode_in_order(container, stream, sorted(set(wanted)))
            else:
                decoded = _decode_by_seeking(container, stream, packets, sorted(set(wanted)))
        except av.FFmpegError as error:
            raise ValueError(f"Video {path} is truncated or corrupt: a frame cannot be decoded ({error}).") from error
        missing = sorted(set(wanted) - set(decoded))
        if missing:
            raise ValueError(
                f"Video {path} is truncated or corrupt: its container lists {len(packets)} frames but frame "
                f"{missing[0]} cannot be decoded."
            )
    return [decoded[index] for index in wanted]


def _check_complete(container, stream, packets: list, path: Path) -> None:
    """Refuse a file cut short: fewer frames than its header counts (mp4, mov), or frames ending well before the
    duration its header declares (Matroska, WebM: a margin of 10% and 0.1 s, for timestamps that are not exact)."""
    if stream.frames and len(packets) < stream.frames:
        raise ValueError(
            f"Video {path} is truncated: its header counts {stream.frames} frames but only {len(packets)} are there."
        )
    if stream.time_base is None or any(pts is None for pts, _, _ in packets):
        return
    if stream.duration:
        declared = float(stream.duration * stream.time_base)
    elif container.duration and len(container.streams) == 1:
        declared = container.duration / 1_000_000
    else:
        return
    start = stream.start_time or 0
    last_pts, _, last_duration = max(packets, key=lambda packet: packet[0])
    present = float((last_pts - start + (last_duration or 0)) * stream.time_base)
    if present < 0.9 * declared - 0.1:
        raise ValueError(
            f"Video {path} is truncated: its header declares {declared:.3g} s but its {len(packets)} frames end at "
            f"{present:.3g} s."
        )


def _decode_by_seeking(container, stream, packets, wanted: list[int]) -> dict[int, Image.Image]:
    """Frames `wanted` (sorted), found by their presentation timestamps, seeking to the keyframe before each one
    unless the decoder is already past that keyframe."""
    timestamps = sorted(pts for pts, _, _ in packets)
    keyframes = sorted(pts for pts, keyframe, _ in packets if keyframe) or timestamps[:1]
    decoded: dict[int, Image.Image] = {}
    frames, position = None, None
    for index in wanted:
        target = timestamps[index]
        keyframe = max((pts for pts in keyframes if pts <= target), default=keyframes[0])
        if frames is None or position is None or keyframe > position:
            container.seek(keyframe, stream=stream, backward=True, any_frame=False)
            frames = container.decode(stream)
        for frame in frames:
            if frame.pts is None:
                continue
            position = frame.pts
            if frame.pts >= target:
                break
        else:
            frames = None
            continue
        if position == target:
            decoded[index] = frame.to_image()
        # Past the target without seeing it: the frame was lost, which the caller reports.
    return decoded


def _decode_in_order(container, stream, wanted: list[int]) -> dict[int, Image.Image]:
    """Frames `wanted` (sorted) of a stream without timestamps, decoded from its start."""
    container.seek(0)
    wanted_set, last = set(wanted), wanted[-1]
    decoded: dict[int, Image.Image] = {}
    for index, frame in enumerate(container.decode(stream)):
        if index in wanted_set:
            decoded[index] = frame.to_image()
        if index >= last:
            break
    return decoded


__all__ = ["VIDEO_INSTALL", "VideoInput", "read_frames", "video_key"]
