"""Video VQAScore: how fast frames are read, and what 8-frame `average` scoring costs against scoring the same frames
as images, in one process on the same random weights.

    HF_HUB_OFFLINE=1 python benchmarks/bench_video.py                     # 4 videos, CPU fp32: minutes on a small CPU
    HF_HUB_OFFLINE=1 python benchmarks/bench_video.py --videos 16 --frames 240 --size 640x360

Decoding (synthetic H.264 videos written with PyAV into a temporary folder: `--frames` frames of `--size`, a keyframe
every `--gop` frames, B-frames): `decode all` decodes every frame of a video in order and converts it to RGB (the
decoder's full rate, frames/s); `ours` reads the 8 sampled frames with `read_frames` (seeking to the keyframe before
each); `decode all, pick 8` decodes every frame and keeps the 8 (what reading without seeking costs). Reported per
video, with the ratio to `decode all, pick 8`.

Scoring (a random CLIP-FlanT5 shape of bench_score.py, `--shape`; by default `t5-heavy`, a 224-px 6-layer ViT and a
6+6-layer T5): `images` scores the 8 sampled
frames of each video as 8 (image, text) pairs with `VQAScore.__call__` (frames already decoded, as PIL images) and
averages them; `videos, frames in memory` is `score_videos` on the same PIL frames; `videos, from files` is
`score_videos` on the files (decoding included). Pairs are (video, text) pairs per second; the ratio is against
`images`. Best of `--repeats` interleaved rounds, with the median of the rounds' ratios and process CPU times
(`--threads 1` on a shared machine: the least load-sensitive figures).
"""

import argparse
import os
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from bench_score import MODEL_SHAPES, build_config

from transformers_clipflant5 import CLIPFlanT5ForConditionalGeneration, VQAScore
from transformers_clipflant5.scoring.video import frame_indices, read_frames
from transformers_clipflant5.testing.tiny import COLORS, SHAPES, build_tiny_tokenizer, tiny_processor


def write_video(path: Path, frames: int, width: int, height: int, gop: int, seed: int) -> None:
    import av

    rng = np.random.default_rng(seed)
    # Smooth moving content (noise would make the encoder's work unrepresentative).
    y, x = np.mgrid[0:height, 0:width]
    base = rng.integers(0, 256, 3)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"g": str(gop), "bf": "2", "preset": "veryfast"}
        for number in range(frames):
            image = np.stack([(x + y + 3 * number + base[c]) % 256 for c in range(3)], -1).astype(np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def decode_all(path: Path, keep: list[int] | None = None) -> list:
    import av

    kept = []
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            image = frame.to_image()
            if keep is None or index in keep:
                kept.append(image)
    return kept


def timed(function) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    start, cpu_start = time.perf_counter(), time.process_time()
    function()
    return time.perf_counter() - start, time.process_time() - cpu_start


def report(methods: dict, baseline: str, repeats: int, units, unit: str) -> None:
    """Time `methods` in `repeats` interleaved rounds; print each one's best wall time, its rate (`units(name)` per
    second), its speed-up over `baseline` (best times, and the median of the rounds' ratios) and the same from
    process CPU time, which a loaded shared machine disturbs least."""
    rounds: dict[str, list[tuple[float, float]]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, function in methods.items():
            rounds[name].append(timed(function))
    for name, times in rounds.items():
        wall, cpu = min(t[0] for t in times), min(t[1] for t in times)
        median = float(np.median([b[0] / t[0] for b, t in zip(rounds[baseline], times)]))
        base_cpu = min(t[1] for t in rounds[baseline])
        print(
            f"  {name:<26} {wall:8.3f} s  {units(name) / wall:8.2f} {unit}/s  x{min(t[0] for t in rounds[baseline]) / wall:5.2f} "
            f"(median of rounds x{median:5.2f}; CPU {cpu:7.3f} s, x{base_cpu / cpu:5.2f})  vs {baseline}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--frames", type=int, default=120, help="frames per video")
    parser.add_argument("--size", default="320x240", help="WIDTHxHEIGHT of the videos")
    parser.add_argument("--gop", type=int, default=24, help="frames between keyframes")
    parser.add_argument("--num-frames", type=int, default=8, help="frames scored per video")
    parser.add_argument("--shape", choices=sorted(MODEL_SHAPES), default="t5-heavy")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    width, height = (int(value) for value in args.size.split("x"))

    tokenizer = build_tiny_tokenizer()
    config = build_config(tokenizer, *MODEL_SHAPES[args.shape], vocab_size=None)
    torch.manual_seed(0)
    model = CLIPFlanT5ForConditionalGeneration(config).eval()
    scorer = VQAScore(model=model, processor=tiny_processor(tokenizer, config))
    texts = [f"a {COLORS[k % len(COLORS)]} {SHAPES[k % len(SHAPES)]}" for k in range(args.videos)]

    with tempfile.TemporaryDirectory() as folder:
        paths = [Path(folder) / f"video_{k}.mp4" for k in range(args.videos)]
        for seed, path in enumerate(paths):
            write_video(path, args.frames, width, height, args.gop, seed)
        indices = frame_indices(args.frames, args.num_frames)
        rule = partial(frame_indices, num_frames=args.num_frames)
        frames = [read_frames(str(path), rule, None) for path in paths]

        print(
            f"device cpu, torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs; {args.videos} videos of "
            f"{args.frames} frames {width}x{height} (H.264, keyframe every {args.gop}, B-frames), {args.num_frames} "
            f"frames sampled: {indices}"
        )
        print("\ndecoding (per video, best of rounds)")
        decoders = {
            "decode all": lambda: decode_all(paths[0]),
            "decode all, pick 8": lambda: decode_all(paths[0], indices),
            "ours (seek)": lambda: read_frames(str(paths[0]), rule, None),
        }
        report(
            decoders,
            "decode all, pick 8",
            args.repeats,
            lambda name: args.frames if name == "decode all" else len(indices),
            "frames",
        )

        def images():
            flat = [frame for video in frames for frame in video]
            scores = scorer(flat, [text for text in texts for _ in indices])
            return scores.view(args.videos, len(indices)).mean(1)

        methods = {
            "images": images,
            "videos, frames in memory": lambda: scorer.score_videos(frames, texts, num_frames=args.num_frames),
            "videos, from files": lambda: scorer.score_videos(
                [str(p) for p in paths], texts, num_frames=args.num_frames
            ),
        }
        reference = images()
        for name, function in methods.items():
            deviation = (function() - reference).abs().max().item()  # warm-up, and the scores agree
            print(f"  check: {name}: max |score - images| = {deviation:.2e}")
        print(f"\nscoring {args.videos} (video, text) pairs, {args.num_frames}-frame average ({args.shape} shape)")
        report(methods, "images", args.repeats, lambda name: args.videos, "pairs")


if __name__ == "__main__":
    main()
