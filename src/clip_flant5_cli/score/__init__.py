"""`clip-flant5 score`: VQAScore of one (image, text) pair, or of a file of pairs, resumably and on several GPUs.

With --image/--text the scores go to stdout, one line per pair in the order given; a pair that cannot be scored
prints nan there and its error on stderr.

Pairs files:
- JSONL: one object per line with `image` (a path) and `text`, optionally `id`; blank lines are ignored.
- JSON (`.json`): a list of such objects, as `clip-flant5 eval --write-pairs` writes (and the demo's eval.json).
- CSV (or TSV, tab-separated, for a `.tsv` file): a header row naming the columns `image`, `text` and optionally
  `id`.
A row may name a `video` (mp4, webm, mkv, mov, gif, ...) instead of an `image`: its frames are scored as
--video-mode, --num-frames and --frame-sampling say (docs/video.md; needs the `video` extra, PyAV), and its record
has `video` and `video_frames` instead of `image`. An unreadable video is a skipped row, like an unreadable image.
Relative image and video paths are resolved against `--image-root` (default: the pairs file's folder).

The output is JSONL, one object per scored row: `{"row": <0-based row of the pairs file>, "id": <its id or null>,
"image": <as written in the pairs file>, "text": ..., "score": ...}`, in the pairs file's order once the run ends.
Scores are appended (and flushed to disk) as they are computed; a re-run with the same `--output` skips every row it
already holds, so nothing is scored twice or lost. An existing --output must hold only this command's records (a
last one cut short by a crash is redone): any other file, the pairs file included, is refused and left as it is.
Rows that cannot be scored (unreadable image, missing field, empty text, a text too long for the tokenizer) are
reported on stderr as they happen and in a summary at the end, and the command then exits with status 1; they are
not written, so a re-run retries them.

One run per --output: the run holds a lock on it (a hidden `.<output name>.lock` file beside it) and a second run on
the same --output stops at once with status 2, naming the host and pid of the first. A write that fails (a full
disk) stops the run with status 2, naming the file and how many rows are safely in it; the file is left valid, and
the same command resumes once space is freed. See docs/robustness.md.

Everything that can be checked without the model is checked before it loads: the arguments, the pairs file, that
--output can be written, that --model exists, and every text's length (refused when its prompt exceeds the
tokenizer's model_max_length, 512 for FlanT5, unless --truncate-texts cuts it to fit).

Under `accelerate launch -m transformers_clipflant5 score ...` (GPUs) or `torchrun --nproc_per_node N -m
transformers_clipflant5 score ...` (also CPU-only machines, where accelerate launch starts a single process) the rows
still to score are split across the processes; each appends to its own `<output>.part-<rank>` file and the main
process merges them into `--output`, in input order. Across several machines (`torchrun --nnodes N ...`, one launch
per node, as `examples/slurm/score.sbatch` does) `--output` must be on a filesystem all of them share: the main process
decides which rows are left, every process appends to its part file there, and the main process merges them (and
stops with an error if some process's rows are not there, e.g. an output folder local to each node). If a process
dies, the main process names the processes that left rows unscored and how many; a re-run scores only those.

Exit status (the same with --image/--text and with --pairs):
  0  every pair was scored
  1  some pairs could not be scored (unreadable image, missing/empty/too long text); the others were
  2  nothing could be done: bad arguments, an unusable --pairs or --output file, or a --model that cannot be loaded;
     or the run stopped: --output is being written by another run, a write failed, a process died
Under a multi-process launcher (torchrun, accelerate launch) skipped rows end with status 0 instead of 1, as the
launchers report any other status as a crash with a long traceback; the summary on stderr still lists the rows.
"""

import argparse
from pathlib import Path

from clip_flant5_choices import QUANT_EXTRA_INSTALL, QUANTIZATION_CHOICES, VIDEO_MODES, VIDEO_SAMPLINGS


HELP = "VQAScore of an (image, text) pair or of a file of pairs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="Hub repo or folder, original layout or ours")
    single = parser.add_argument_group("one pair (or several, as repeated --image/--text in matching order)")
    single.add_argument("--image", action="append", help="image file to score")
    single.add_argument("--text", action="append", help="text to score the image with")
    many = parser.add_argument_group("a file of pairs")
    many.add_argument(
        "--pairs", type=Path, help="JSONL, JSON list, CSV or TSV file of rows with image, text and optionally id"
    )
    many.add_argument("--output", type=Path, help="JSONL file the scores are appended to (required with --pairs)")
    many.add_argument(
        "--image-root", type=Path, help="folder relative image paths start from (default: the pairs file's folder)"
    )
    videos = parser.add_argument_group("rows with a video (pairs files)")
    videos.add_argument(
        "--video-mode",
        choices=VIDEO_MODES,
        default="average",
        help="average: the mean of the frames' scores (default); concat: the frames side by side in one image",
    )
    videos.add_argument("--num-frames", type=int, default=8, help="frames sampled per video (default: 8)")
    videos.add_argument(
        "--frame-sampling",
        choices=VIDEO_SAMPLINGS,
        default="uniform",
        help="uniform (default: frames 0, s, 2s, ... with s = frames // --num-frames) or genai-bench (GenAI-Bench-Video's "
        "protocol: the first 36 frames, padded with the last; --num-frames 36, 9 or 4)",
    )
    parser.add_argument("--batch-size", type=int, default=16, help="pairs per forward pass (default: 16)")
    parser.add_argument("--question-template", help="question with {} for the text (default: the paper's)")
    parser.add_argument("--answer-template", help='answer whose probability is the score (default: "Yes")')
    parser.add_argument("--dtype", default="auto", help="auto (bf16 on CUDA, fp32 on CPU), float32, bfloat16, ...")
    parser.add_argument(
        "--device", help="cuda, cuda:1, cpu, ... (default: CUDA if available; per process under accelerate)"
    )
    parser.add_argument("--attn-implementation", help="sdpa, eager, ... (default: transformers' choice)")
    parser.add_argument(
        "--quantization",
        choices=QUANTIZATION_CHOICES,
        help="quantize the T5 weights as they load: int8 (torchao) or int4 (bitsandbytes NF4), CPU or CUDA; needs "
        + QUANT_EXTRA_INSTALL,
    )
    parser.add_argument(
        "--offload-folder",
        type=Path,
        help="load with device_map='auto', spilling what does not fit on the GPU/in RAM to this folder on disk",
    )
    parser.add_argument("--revision", help="Hub revision of --model")
    parser.add_argument(
        "--truncate-texts",
        action="store_true",
        help="cut texts too long for the tokenizer (model_max_length) to fit, instead of refusing them",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (scoring, loading weights)")
