"""Video VQAScore: the sampled frames (against an independent computation, decoded exactly from a lossless file),
average and concat modes against scoring the frames and the rebuilt strip as images, frame order, the inputs a video
may be, bad videos, and the differentiable pixel path."""

import copy
from functools import partial

import numpy as np
import pytest
import torch
from PIL import Image

from tests.support.videos import LOSSY, random_frames, reference_indices, reference_strip, write_video
from transformers_clipflant5 import VQAScore
from transformers_clipflant5.scoring.video import build_strip, frame_indices, read_frames
from transformers_clipflant5.scoring.video.sampling import GENAI_BENCH_POSITIONS
from transformers_clipflant5.testing.tiny import tiny_processor


pytest.importorskip("av")

TEXT = "a red circle"


@pytest.fixture(scope="module")
def scorer(tiny):
    model, processor = tiny
    return VQAScore(model=model, processor=processor)


@pytest.fixture(scope="module")
def frames():
    return random_frames(20, height=24, width=40, seed=3)


@pytest.fixture(scope="module")
def lossless(tmp_path_factory, frames):
    return write_video(tmp_path_factory.mktemp("videos") / "lossless.mkv", frames)


def rule(num_frames, sampling="uniform"):
    return partial(frame_indices, num_frames=num_frames, sampling=sampling)


# --------------------------------------------------------------------------------------------------------------------
# Sampling and decoding


@pytest.mark.parametrize("count", [1, 3, 4, 8, 9, 36])
def test_uniform_indices_match_an_independent_computation(count):
    for total in range(1, 120):
        indices = frame_indices(total, count)
        assert indices == reference_indices(total, count)
        assert indices == sorted(indices) and len(indices) == min(total, count)


@pytest.mark.parametrize("count", [36, 9, 4])
def test_genai_bench_pads_or_cuts_to_36_frames_then_samples_its_positions(count):
    for total in (1, 5, 35, 36, 37, 100):
        # The protocol as described: a list of 36 frames (cut, or padded with the last), then fixed positions.
        clip = list(range(total))[:36]
        clip += [clip[-1]] * (36 - len(clip))
        positions = {36: range(36), 9: range(0, 33, 4), 4: range(0, 25, 8)}[count]
        assert frame_indices(total, count, "genai-bench") == [clip[position] for position in positions]
    assert len(GENAI_BENCH_POSITIONS[count]) == count


def test_bad_sampling_options_are_refused():
    with pytest.raises(ValueError, match="36, 9, 4 frames, not 8"):
        frame_indices(100, 8, "genai-bench")
    with pytest.raises(ValueError, match="sampling must be one of"):
        frame_indices(100, 8, "random")
    with pytest.raises(ValueError, match="positive integer"):
        frame_indices(100, 0)


@pytest.mark.parametrize("count", [1, 4, 8, 20, 25])
def test_a_lossless_file_decodes_exactly_the_sampled_frames(lossless, frames, count):
    decoded = read_frames(str(lossless), rule(count), None)
    expected = reference_indices(len(frames), count)
    assert len(decoded) == len(expected)
    for image, index in zip(decoded, expected):
        assert image.mode == "RGB" and np.array_equal(np.asarray(image), frames[index])


def test_genai_bench_protocol_repeats_the_last_frame_of_a_short_file(lossless, frames):
    decoded = read_frames(str(lossless), rule(9, "genai-bench"), None)
    expected = [min(position, len(frames) - 1) for position in range(0, 33, 4)]
    assert [np.array_equal(np.asarray(image), frames[index]) for image, index in zip(decoded, expected)] == [True] * 9
    # A repeated index is one decoded frame.
    assert decoded[-1] is decoded[-2]


@pytest.mark.parametrize("suffix,codec,options", [(".mp4", LOSSY, {"g": 6, "bf": 2}), (".webm", ("libvpx-vp9", "yuv420p"), {}), (".gif", ("gif", "rgb8"), {}), (".mov", ("mpeg4", "yuv420p"), {})])  # fmt: skip
def test_lossy_files_decode_the_sampled_frames_by_seeking(tmp_path, suffix, codec, options):
    # Flat frames of well-separated grey levels: after lossy coding each decoded frame is nearest its own level,
    # whichever keyframe the decoder seeked to.
    levels = np.arange(30) * 8
    flat = np.broadcast_to(levels[:, None, None, None], (30, 16, 16, 3)).astype(np.uint8)
    path = write_video(tmp_path / f"flat{suffix}", flat, codec, **options)
    decoded = read_frames(str(path), rule(8), None)
    found = [int(np.abs(levels - np.asarray(image, dtype=float).mean()).argmin()) for image in decoded]
    assert found == reference_indices(30, 8)


# --------------------------------------------------------------------------------------------------------------------
# Scores


def test_a_constant_video_scores_exactly_its_frame(scorer, tmp_path, frames):
    constant = np.repeat(frames[:1], 12, axis=0)
    path = write_video(tmp_path / "constant.mkv", constant)
    image_score = scorer([Image.fromarray(frames[0])], [TEXT])
    for sampling, count in (("uniform", 8), ("genai-bench", 36)):
        video_score = scorer.score_videos([str(path)], [TEXT], num_frames=count, sampling=sampling)
        assert torch.equal(video_score, image_score)


def test_average_is_the_mean_of_the_frames_image_scores(scorer, lossless, frames):
    texts = [TEXT, "a blue square on the left"]
    matrix = scorer.score_videos_matrix([str(lossless)], texts, num_frames=5)
    chosen = [Image.fromarray(frames[index]) for index in reference_indices(len(frames), 5)]
    image_scores = scorer.score_matrix(chosen, texts)
    torch.testing.assert_close(matrix[0], image_scores.double().mean(0).float(), rtol=0, atol=1e-6)
    assert (matrix[0, 0] - matrix[0, 1]).abs() > 1e-5  # the text matters, beyond the tolerance
    # The pair form agrees with the matrix form.
    pairs = scorer.score_videos([str(lossless), str(lossless)], texts, num_frames=5)
    torch.testing.assert_close(pairs, matrix[0], rtol=0, atol=1e-7)


def test_concat_scores_the_strip_rebuilt_independently(scorer, lossless, frames):
    indices = reference_indices(len(frames), 8)
    strip = reference_strip([frames[index] for index in indices])
    assert np.array_equal(np.asarray(build_strip([Image.fromarray(frames[index]) for index in indices])), strip)
    expected = scorer([Image.fromarray(strip)], [TEXT])
    assert torch.equal(scorer.score_videos([str(lossless)], [TEXT], mode="concat"), expected)


def test_frame_order_matters_in_concat_not_in_average(scorer, frames):
    video = frames[:8]  # as many frames as sampled: the video and its reverse sample the same frames
    reverse = video[::-1].copy()
    average = scorer.score_videos([video, reverse], [TEXT, TEXT])
    concat = scorer.score_videos([video, reverse], [TEXT, TEXT], mode="concat")
    torch.testing.assert_close(average[0], average[1], rtol=0, atol=1e-7)
    assert (concat[0] - concat[1]).abs() > 1e-5


def test_arrays_tensors_and_frame_lists_score_as_the_file(scorer, lossless, frames):
    from_file = scorer.score_videos([str(lossless)], [TEXT])
    tensor_chw = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    inputs = [frames, tensor_chw, [Image.fromarray(frame) for frame in frames], list(frames)]
    scores = scorer.score_videos(inputs, [TEXT] * len(inputs))
    assert torch.equal(scores, from_file.expand(len(inputs)))
    # A 5-D array is a batch of videos.
    assert torch.equal(scorer.score_videos(np.stack([frames, frames]), [TEXT, TEXT]), from_file.expand(2))


def test_each_distinct_frame_is_encoded_once_per_call(scorer, lossless, frames):
    seen = []
    hook = scorer.model.model.vision_tower.register_forward_hook(
        lambda module, args, output: seen.append(len(args[0]))
    )
    try:
        scorer.score_videos_matrix([str(lossless), frames[:8]], ["a", "b", "c"], num_frames=8)
    finally:
        hook.remove()
    assert sum(seen) == 16  # 8 frames of each video, whatever the number of texts


def test_a_single_image_is_not_a_video(scorer, frames):
    with pytest.raises(TypeError, match=r"videos\[0\]: .*single image"):
        scorer.score_videos([Image.fromarray(frames[0])], [TEXT])
    with pytest.raises(ValueError, match="same length"):
        scorer.score_videos([frames], [TEXT, TEXT])
    with pytest.raises(ValueError, match="mode must be one of"):
        scorer.score_videos([frames], [TEXT], mode="grid")


# --------------------------------------------------------------------------------------------------------------------
# Bad videos


def _empty_video(path):
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "bgr0"
        container.start_encoding()
    return path


def _corrupt(path):
    """Overwrite 2000 bytes a third into the file with noise: FFV1 frames there no longer decode (FFmpeg conceals
    damage in the middle of a frame, so the noise covers the start of one)."""
    data = bytearray(path.read_bytes())
    start = int(len(data) * 0.3)
    data[start : start + 2000] = np.random.default_rng(1).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


def test_bad_video_files_get_errors_naming_them(scorer, tmp_path, frames, lossless):
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("not a video at all")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.mkv"
    truncated.write_bytes(lossless.read_bytes()[: lossless.stat().st_size // 3])
    corrupt = _corrupt(write_video(tmp_path / "corrupt.mkv", frames))
    cases = [
        (tmp_path / "missing.mp4", FileNotFoundError, "not found"),
        (tmp_path, IsADirectoryError, "folder"),
        (empty, ValueError, "empty"),
        (not_video, ValueError, "not a readable video"),
        (_empty_video(tmp_path / "zero.mkv"), ValueError, "no frames"),
        (truncated, ValueError, "truncated"),
        (corrupt, ValueError, "truncated or corrupt: a frame cannot be decoded"),
    ]
    for path, error_type, message in cases:
        with pytest.raises(error_type, match=message) as raised:
            scorer.score_videos([str(lossless), str(path)], [TEXT, TEXT])
        assert str(path) in str(raised.value) and "videos[1]" in str(raised.value)


def test_skipped_rows_are_reported_and_the_others_scored(scorer, tmp_path, lossless):
    from transformers_clipflant5.scoring.video import iter_video_scores

    errors, scores = {}, {}
    videos = [str(lossless), str(tmp_path / "missing.webm"), str(lossless)]
    for rows, batch in iter_video_scores(
        scorer, videos, [TEXT, TEXT, "a dog"], on_video_error=lambda row, error: errors.setdefault(row, error)
    ):
        scores.update(zip(rows, batch.tolist()))
    assert sorted(scores) == [0, 2] and list(errors) == [1] and isinstance(errors[1], FileNotFoundError)


def test_frames_beyond_the_pixel_limit_are_refused_before_decoding(tiny, lossless):
    model, processor = tiny
    limited = tiny_processor(processor.tokenizer, model.config)
    limited.image_processor.max_image_pixels = 8 * 24 * 40 - 1  # one pixel short of 8 frames of 40x24
    scorer = VQAScore(model=model, processor=limited)
    with pytest.raises(ValueError, match=r"8 frames of 40x24 are 7680 pixels, more than the limit of 7679"):
        scorer.score_videos([str(lossless)], [TEXT])
    assert scorer.score_videos([str(lossless)], [TEXT], num_frames=7).isfinite().all()
    # The concat strip is refused when padding it to a square would pass the limit.
    limited.image_processor.max_image_pixels = 10**5
    with pytest.raises(ValueError, match="concat strip would be 390x24"):
        scorer.score_videos([str(lossless)], [TEXT], mode="concat")


# --------------------------------------------------------------------------------------------------------------------
# Differentiable


def test_video_pixels_are_differentiable_and_average_the_frames(tiny, frames):
    model, processor = tiny
    # A copy: prepare_for_reward freezes the weights, which the other tests' shared model must keep.
    scorer = VQAScore(model=copy.deepcopy(model), processor=processor).prepare_for_reward()
    videos = (torch.from_numpy(frames[:8]).permute(0, 3, 1, 2).float() / 255).reshape(2, 4, 3, 24, 40)
    videos.requires_grad_(True)
    texts = [TEXT, "a dog"]
    scores = scorer.score_video_pixels(videos, texts)
    scores.sum().backward()
    assert videos.grad is not None and videos.grad.abs().sum() > 0
    assert videos.grad[0].abs().sum() > 0 and videos.grad[1].abs().sum() > 0
    with torch.no_grad():
        per_frame = scorer.score_pixels(videos.detach().reshape(8, 3, 24, 40), [TEXT] * 4 + ["a dog"] * 4)
    torch.testing.assert_close(scores.detach(), per_frame.view(2, 4).mean(1), rtol=0, atol=1e-6)
    # Sampling two frames of each: frames 0 and 2.
    sampled = scorer.score_video_pixels(videos.detach(), texts, num_frames=2)
    torch.testing.assert_close(sampled, per_frame.view(2, 4)[:, [0, 2]].mean(1), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match=r"\(N, T, 3, H, W\)"):
        scorer.score_video_pixels(videos.detach()[0], texts)
