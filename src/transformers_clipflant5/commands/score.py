"""`clip-flant5 score`: VQAScore of one (image, text) pair, or of a file of pairs, resumably and on several GPUs.

Pairs files:
- JSONL: one object per line with `image` (a path) and `text`, optionally `id`; blank lines are ignored.
- CSV: a header row naming the columns `image`, `text` and optionally `id`.
Relative image paths are resolved against `--image-root` (default: the pairs file's folder).

The output is JSONL, one object per scored row: `{"row": <0-based row of the pairs file>, "id": <its id or null>,
"image": <as written in the pairs file>, "text": ..., "score": ...}`, in the pairs file's order once the run ends.
Scores are appended (and flushed to disk) as they are computed; a re-run with the same `--output` skips every row it
already holds, so nothing is scored twice or lost. Rows that cannot be scored (unreadable image, missing field, empty
text, a text too long for the tokenizer) are reported on stderr as they happen and in a summary at the end, and the
command then exits with status 1; they are not written, so a re-run retries them.

Everything that can be checked without the model is checked before it loads: the arguments, the pairs file, that
--output can be written, that --model exists, and every text's length (refused when its prompt exceeds the
tokenizer's model_max_length, 512 for FlanT5, unless --truncate-texts cuts it to fit).

Under `accelerate launch -m transformers_clipflant5 score ...` (GPUs) or `torchrun --nproc_per_node N -m
transformers_clipflant5 score ...` (also CPU-only machines, where accelerate launch starts a single process) the rows
still to score are split across the processes; each appends to its own `<output>.part-<rank>` file and the main
process merges them into `--output`, in input order. Across several machines (`torchrun --nnodes N ...`, one launch
per node, as `examples/slurm/score.sbatch` does) `--output` must be on a filesystem all of them share: the main process
decides which rows are left, every process appends to its part file there, and the main process merges them (and
stops with an error if some process's rows are not there, e.g. an output folder local to each node).

Exit status (the same with --image/--text and with --pairs):
  0  every pair was scored
  1  some pairs could not be scored (unreadable image, missing/empty/too long text); the others were
  2  nothing could be done: bad arguments, an unusable --pairs or --output file, or a --model that cannot be loaded
Under a multi-process launcher (torchrun, accelerate launch) skipped rows end with status 0 instead of 1, as the
launchers report any other status as a crash with a long traceback; the summary on stderr still lists the rows.
"""

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..json_rows import json_lines
from . import add_command
from .pairs_file import PairRow, read_pairs
from .score_checks import ScoreFileError, check_output_path, load_processor, load_scorer, text_problem
from .score_processes import main_process_answer, report_lost_rows


PART_SUFFIX = ".part-"
EXIT_ROWS_SKIPPED = 1
EXIT_USAGE = 2


def register(subparsers) -> None:
    parser = add_command(
        subparsers, "score", run, help="VQAScore of an (image, text) pair or of a file of pairs", description=__doc__
    )
    parser.add_argument("--model", required=True, help="Hub repo or folder, original layout or ours")
    single = parser.add_argument_group("one pair (or several, as repeated --image/--text in matching order)")
    single.add_argument("--image", action="append", help="image file to score")
    single.add_argument("--text", action="append", help="text to score the image with")
    many = parser.add_argument_group("a file of pairs")
    many.add_argument("--pairs", type=Path, help="JSONL or CSV file of rows with image, text and optionally id")
    many.add_argument("--output", type=Path, help="JSONL file the scores are appended to (required with --pairs)")
    many.add_argument(
        "--image-root", type=Path, help="folder relative image paths start from (default: the pairs file's folder)"
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
        choices=("int8", "int4"),
        help="quantize the T5 weights as they load: int8 (torchao) or int4 (bitsandbytes NF4), CPU or CUDA; needs "
        'pip install -e ".[quant]"',
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


def run(args: argparse.Namespace) -> int:
    from ..scoring.prompts import check_answer_template, check_question_template

    if args.question_template is not None or args.answer_template is not None:
        try:
            check_question_template(args.question_template or "{}")
            check_answer_template(args.answer_template or "Yes")
        except (TypeError, ValueError) as error:
            return _usage_error(str(error))
    from transformers_clipflant5.hub.model_source import ModelSourceError, check_model_source

    if args.pairs is not None:
        if args.image or args.text:
            return _usage_error("Pass either --pairs or --image/--text, not both.")
        if args.output is None:
            return _usage_error("--pairs needs --output, the JSONL file the scores go to.")
    elif not args.image or not args.text:
        return _usage_error("Pass --image and --text (one pair), or --pairs and --output (a file of pairs).")
    elif len(args.image) != len(args.text):
        return _usage_error(f"Got {len(args.image)} --image but {len(args.text)} --text; pass them in pairs.")
    if args.no_progress:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    try:
        if args.output is not None:
            check_output_path(args.output)
        check_model_source(args.model)
        if args.pairs is not None:
            return score_pairs_file(args)
        return score_single(args)
    except (ScoreFileError, ModelSourceError, OSError) as error:
        # A pairs/output file that cannot be used or written (the merge too), or a --model that cannot be loaded.
        return _usage_error(str(error))


def _usage_error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


def score_single(args: argparse.Namespace) -> int:
    from transformers_clipflant5.scoring.vqascore import check_text

    processor = load_processor(args)
    for index, text in enumerate(args.text):
        try:
            check_text(text, f"--text {index + 1}", processor.image_token)
        except ValueError as error:
            return _row_error(str(error))
        problem = text_problem(processor, text, f"--text {index + 1}", args)
        if problem is not None:
            return _row_error(problem)
    scorer = load_scorer(args)
    try:
        scores = scorer(args.image, args.text, truncate_texts=args.truncate_texts)
    except (OSError, ValueError, TypeError) as error:
        return _row_error(str(error))
    for score in scores.tolist():
        print(f"{score:.6g}")
    return 0


def _row_error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_ROWS_SKIPPED


# --------------------------------------------------------------------------------------------------------------------
# Files


def part_files(output: Path) -> list[Path]:
    return sorted(output.parent.glob(output.name + PART_SUFFIX + "*"))


def read_results(path: Path) -> dict[int, dict[str, Any]]:
    """Scored rows of an output (or part) file by row; an unfinished last line (a crash mid-write) is ignored."""
    results: dict[int, dict[str, Any]] = {}
    if not path.is_file():
        return results
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    # Everything before the last newline was written whole; what follows it is an unfinished line or nothing.
    for line_number, record in json_lines(lines[:-1]):
        try:
            if isinstance(record, json.JSONDecodeError):
                raise record
            results[int(record["row"])] = record
            float(record["score"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise ScoreFileError(
                f"{path} line {line_number} is not a score record ({error!r}): is --output a file this command "
                "wrote? Pass another --output."
            ) from error
    return results


def drop_unfinished_line(path: Path) -> None:
    """Cut what follows the last newline (an interrupted write), so that appended records start on a fresh line."""
    if not path.is_file():
        return
    with open(path, "rb+") as handle:
        data = handle.read()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            handle.truncate(end)


def check_results_match(results: dict[int, dict[str, Any]], rows: list[PairRow], output: Path) -> None:
    for index, record in results.items():
        row = rows[index] if 0 <= index < len(rows) else None
        if row is None or (record.get("id"), record.get("image"), record.get("text")) != (row.id, row.image, row.text):
            raise ScoreFileError(
                f"{output} holds a score for row {index} that does not match the pairs file (stored id/image/text "
                f"{record.get('id')!r}/{record.get('image')!r}/{record.get('text')!r}). It was written for other "
                "pairs: pass another --output, or delete it to start over."
            )


def merge_results(output: Path) -> set[int]:
    """Merge part files into `output`, in row order, atomically; returns the rows it holds."""
    parts = part_files(output)
    results = read_results(output)
    in_order = list(results) == sorted(results)
    for part in parts:
        results.update(read_results(part))
    if parts or not in_order:
        temporary = output.with_name(output.name + ".merging")
        with open(temporary, "w", encoding="utf-8") as handle:
            for index in sorted(results):
                handle.write(json.dumps(results[index], ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, output)
        for part in parts:
            part.unlink()
    return set(results)


# --------------------------------------------------------------------------------------------------------------------
# Scoring a pairs file


def score_pairs_file(args: argparse.Namespace) -> int:
    import torch
    from accelerate import PartialState
    from accelerate.utils import gather_object

    # Without `cpu=True` accelerate ignores a torchrun / mpirun launch on a machine without GPUs.
    on_cpu = (args.device or "").startswith("cpu") or not torch.cuda.is_available()
    state = PartialState(cpu=on_cpu)
    output: Path = args.output
    rows = read_pairs(args.pairs)
    processor = load_processor(args)
    for row in rows:
        if row.problem is None:
            row.problem = text_problem(processor, row.text, "its text", args)
    image_root = args.image_root if args.image_root is not None else args.pairs.parent

    def read_finished() -> list[int]:
        finished: dict[int, dict[str, Any]] = {}
        for path in [output, *part_files(output)]:
            finished.update(read_results(path))
        check_results_match(finished, rows, output)
        return sorted(finished)

    finished = set(main_process_answer(state, read_finished))

    problems: list[tuple[int, str]] = []
    if state.is_main_process:
        for row in rows:
            if row.problem is not None and row.index not in finished:
                problems.append((row.index, f"{args.pairs} row {row.index} (line {row.line}): {row.problem}"))
                print(f"skipped: {problems[-1][1]}", file=sys.stderr)
    pending = [row for row in rows if row.problem is None and row.index not in finished]

    with state.split_between_processes(pending) as mine:
        if state.num_processes > 1:
            print(
                f"process {state.process_index} of {state.num_processes}: {len(mine)} rows to score", file=sys.stderr
            )
        target = (
            output
            if state.num_processes == 1
            else output.with_name(f"{output.name}{PART_SUFFIX}{state.process_index:05d}")
        )
        written, problems_here = _score_rows(args, state, mine, target, image_root)
        problems += problems_here

    # (process, rows it wrote, rows it could not score) of every process
    reports = [(state.process_index, written, problems)]
    if state.num_processes > 1:
        reports = gather_object(reports)
    state.wait_for_everyone()
    all_problems = problems
    lost = False
    if state.is_main_process:
        all_problems = sorted(problem for _, _, process_problems in reports for problem in process_problems)
        merged = merge_results(output)
        lost = report_lost_rows(reports, merged, output, PART_SUFFIX)
        scored_now = len(pending) - sum(1 for index, _ in all_problems if rows[index].problem is None)
        print(
            f"{output}: {len(merged)} of {len(rows)} rows scored ({scored_now} in this run, {len(finished)} before).",
            file=sys.stderr,
        )
        if all_problems:
            print(f"{len(all_problems)} row(s) could not be scored and were skipped:", file=sys.stderr)
            for _, message in all_problems:
                print(f"  {message}", file=sys.stderr)
            print(
                "Fix them and run the same command again: finished rows are kept, only these are retried.",
                file=sys.stderr,
            )
    # Launchers stop every process once one exits with an error: nobody leaves before the merge is done.
    state.wait_for_everyone()
    if state.num_processes > 1:
        state.destroy_process_group()
    if lost:
        return EXIT_USAGE
    if all_problems and state.num_processes > 1:
        if state.is_main_process:
            print(
                "(Exit status 0 under a multi-process launcher, which would report status 1 as a crash.)",
                file=sys.stderr,
            )
        return 0
    return EXIT_ROWS_SKIPPED if all_problems else 0


def _score_rows(
    args: argparse.Namespace, state, rows: list[PairRow], target: Path, image_root: Path
) -> tuple[list[int], list[tuple[int, str]]]:
    """Score `rows` in input-order windows, appending each window's records to `target`; returns the rows written
    and the problems."""
    problems: list[tuple[int, str]] = []
    written: list[int] = []
    if not rows:
        return written, problems
    # One device per process: a plain "cuda" would put every process on the first GPU.
    device = args.device
    if device is None or (state.num_processes > 1 and device == "cuda"):
        device = state.device
    scorer = load_scorer(args, device=device)
    by_index = {row.index: row for row in rows}
    window = args.batch_size * 8
    drop_unfinished_line(target)
    bar = tqdm(
        total=len(rows),
        disable=args.no_progress or not state.is_local_main_process,
        unit="pair",
        desc="scoring"
        if state.num_processes == 1
        else f"scoring (process {state.process_index} of {state.num_processes})",
        dynamic_ncols=True,
    )

    def on_image_error(position: int, error: Exception) -> None:
        row = window_rows[position]
        message = f"{args.pairs} row {row.index} (line {row.line}), image {row.image!r}: {error}"
        problems.append((row.index, message))
        tqdm.write(f"skipped: {message}", file=sys.stderr)
        bar.update(1)

    with open(target, "a", encoding="utf-8") as handle:
        for start in range(0, len(rows), window):
            window_rows = rows[start : start + window]
            images = [_resolve(row.image, image_root) for row in window_rows]
            scores: dict[int, float] = {}
            for positions, batch_scores in scorer.iter_scores(
                images,
                [row.text for row in window_rows],
                on_image_error=on_image_error,
                truncate_texts=args.truncate_texts,
            ):
                for position, score in zip(positions, batch_scores.tolist()):
                    scores[window_rows[position].index] = score
                bar.update(len(positions))
            # Written in input order, a window at a time, and forced to disk: a crash loses at most this window.
            for index in sorted(scores):
                handle.write(json.dumps(by_index[index].record(scores[index]), ensure_ascii=False) + "\n")
                written.append(index)
            handle.flush()
            os.fsync(handle.fileno())
    bar.close()
    return written, problems


def _resolve(image: str, image_root: Path) -> str:
    path = Path(image).expanduser()
    return str(path if path.is_absolute() else image_root / path)
