"""`clip-flant5 score`: VQAScore of one (image, text) pair, or of a file of pairs, resumably and on several GPUs.

Pairs files:
- JSONL: one object per line with `image` (a path) and `text`, optionally `id`; blank lines are ignored.
- CSV: a header row naming the columns `image`, `text` and optionally `id`.
Relative image paths are resolved against `--image-root` (default: the pairs file's folder).

The output is JSONL, one object per scored row: `{"row": <0-based row of the pairs file>, "id": <its id or null>,
"image": <as written in the pairs file>, "text": ..., "score": ...}`, in the pairs file's order once the run ends.
Scores are appended (and flushed to disk) as they are computed; a re-run with the same `--output` skips every row it
already holds, so nothing is scored twice or lost. Rows that cannot be scored (unreadable image, missing field, empty
text) are reported on stderr as they happen and in a summary at the end, and the command then exits with status 1;
they are not written, so a re-run retries them.

Under `accelerate launch -m transformers_clipflant5 score ...` (GPUs) or `torchrun --nproc_per_node N -m
transformers_clipflant5 score ...` (also CPU-only machines, where accelerate launch starts a single process) the rows
still to score are split across the processes; each appends to its own `<output>.part-<rank>` file and the main
process merges them into `--output`, in input order.
"""

import argparse
import csv
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm


PART_SUFFIX = ".part-"
EXIT_ROWS_SKIPPED = 1
EXIT_USAGE = 2


@dataclass
class PairRow:
    """One row of a pairs file; `problem` says why it cannot be scored, if so."""

    index: int
    line: int
    id: Any = None
    image: str | None = None
    text: str | None = None
    problem: str | None = None

    def record(self, score: float) -> dict[str, Any]:
        return {"row": self.index, "id": self.id, "image": self.image, "text": self.text, "score": score}


class ScoreFileError(Exception):
    """A pairs or output file that cannot be used as it is (the message says what to do)."""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "score",
        help="VQAScore of an (image, text) pair or of a file of pairs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
        help='quantize the T5 weights as they load: int8 (CPU or CUDA) or int4 (CUDA); needs pip install -e ".[quant]"',
    )
    parser.add_argument(
        "--offload-folder",
        type=Path,
        help="load with device_map='auto', spilling what does not fit on the GPU/in RAM to this folder on disk",
    )
    parser.add_argument("--revision", help="Hub revision of --model")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from transformers_clipflant5.vqascore import check_answer_template, check_question_template

    if args.question_template is not None or args.answer_template is not None:
        try:
            check_question_template(args.question_template or "{}")
            check_answer_template(args.answer_template or "Yes")
        except (TypeError, ValueError) as error:
            return _usage_error(str(error))
    if args.pairs is not None:
        if args.image or args.text:
            return _usage_error("Pass either --pairs or --image/--text, not both.")
        if args.output is None:
            return _usage_error("--pairs needs --output, the JSONL file the scores go to.")
        try:
            return score_pairs_file(args)
        except (ScoreFileError, OSError) as error:
            # A pairs/output file that cannot be used, or a --model that cannot be loaded.
            print(f"error: {error}", file=sys.stderr)
            return EXIT_USAGE
    if not args.image or not args.text:
        return _usage_error("Pass --image and --text (one pair), or --pairs and --output (a file of pairs).")
    if len(args.image) != len(args.text):
        return _usage_error(f"Got {len(args.image)} --image but {len(args.text)} --text; pass them in pairs.")
    return score_single(args)


def _usage_error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _template_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kwargs = {}
    if args.question_template is not None:
        kwargs["question_template"] = args.question_template
    if args.answer_template is not None:
        kwargs["answer_template"] = args.answer_template
    return kwargs


def load_scorer(args: argparse.Namespace, device=None):
    from transformers_clipflant5.vqascore import VQAScore

    kwargs = {"revision": args.revision} if args.revision else {}
    if args.quantization is not None:
        kwargs["quantization"] = args.quantization
    if args.offload_folder is not None:
        kwargs.update(device_map="auto", offload_folder=str(args.offload_folder))
    try:
        return VQAScore.from_pretrained(
            args.model,
            dtype=args.dtype,
            device=device if device is not None else args.device,
            attn_implementation=args.attn_implementation,
            batch_size=args.batch_size,
            **_template_kwargs(args),
            **kwargs,
        )
    except (OSError, ImportError, ValueError) as error:
        # ImportError: a --quantization backend not installed; ValueError: e.g. int4 on a CPU, an unknown --dtype.
        raise OSError(f"Cannot load --model {args.model!r}: {error}") from error


def score_single(args: argparse.Namespace) -> int:
    try:
        scorer = load_scorer(args)
        scores = scorer(args.image, args.text)
    except (OSError, ValueError, TypeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ROWS_SKIPPED
    for score in scores.tolist():
        print(f"{score:.6g}")
    return 0


# --------------------------------------------------------------------------------------------------------------------
# Files


def read_pairs(path: Path) -> list[PairRow]:
    """The rows of a JSONL or CSV pairs file; rows that cannot be scored carry a `problem` instead of raising."""
    if not path.is_file():
        raise ScoreFileError(f"Pairs file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows = _read_jsonl_pairs(path)
    elif suffix in (".csv", ".tsv"):
        rows = _read_csv_pairs(path, delimiter="\t" if suffix == ".tsv" else ",")
    else:
        raise ScoreFileError(f"Unknown pairs file type {path.suffix!r} ({path}): use .jsonl or .csv.")
    for row in rows:
        if row.problem is None:
            row.problem = _row_problem(row)
    return rows


def _read_jsonl_pairs(path: Path) -> list[PairRow]:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            row = PairRow(index=len(rows), line=line_number)
            try:
                data = json.loads(line)
            except json.JSONDecodeError as error:
                row.problem = f"not valid JSON ({error})"
            else:
                if isinstance(data, dict):
                    row.id, row.image, row.text = data.get("id"), data.get("image"), data.get("text")
                else:
                    row.problem = f"expected a JSON object with 'image' and 'text', got {type(data).__name__}"
            rows.append(row)
    return rows


def _read_csv_pairs(path: Path, delimiter: str) -> list[PairRow]:
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        missing = {"image", "text"} - set(reader.fieldnames or [])
        if missing:
            raise ScoreFileError(
                f"{path} has no column(s) {sorted(missing)} in its header {reader.fieldnames}; it needs 'image' and "
                "'text' (and optionally 'id')."
            )
        rows = []
        for record in reader:
            # The reader's line_num is the line the record ended on (quoted fields may span lines).
            row = PairRow(index=len(rows), line=reader.line_num, image=record["image"], text=record["text"])
            row.id = record.get("id") or None
            rows.append(row)
    return rows


def _row_problem(row: PairRow) -> str | None:
    from transformers_clipflant5.vqascore import check_text

    if not isinstance(row.image, str) or not row.image.strip():
        return "no 'image' path"
    try:
        check_text(row.text, "'text'")
    except (TypeError, ValueError) as error:
        return str(error)
    return None


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
    for line_number, line in enumerate(lines[:-1], start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
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


def merge_results(output: Path) -> int:
    """Merge part files into `output`, in row order, atomically; returns the number of records."""
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
    return len(results)


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
    image_root = args.image_root if args.image_root is not None else args.pairs.parent

    finished: dict[int, dict[str, Any]] = {}
    for path in [output, *part_files(output)]:
        finished.update(read_results(path))
    check_results_match(finished, rows, output)
    # Nobody appends before everybody has read: the split below must be the same in every process.
    state.wait_for_everyone()

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
        problems += _score_rows(args, state, mine, target, image_root)

    all_problems = sorted(gather_object(problems) if state.num_processes > 1 else problems)
    state.wait_for_everyone()
    if state.is_main_process:
        total = merge_results(output)
        scored_now = len(pending) - sum(1 for index, _ in all_problems if rows[index].problem is None)
        print(
            f"{output}: {total} of {len(rows)} rows scored ({scored_now} in this run, {len(finished)} before).",
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
    return EXIT_ROWS_SKIPPED if all_problems else 0


def _score_rows(
    args: argparse.Namespace, state, rows: list[PairRow], target: Path, image_root: Path
) -> list[tuple[int, str]]:
    """Score `rows` in input-order windows, appending each window's records to `target`; returns the problems."""
    problems: list[tuple[int, str]] = []
    if not rows:
        return problems
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
        desc="scoring" if state.num_processes == 1 else f"scoring (process 0 of {state.num_processes})",
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
                images, [row.text for row in window_rows], on_image_error=on_image_error
            ):
                for position, score in zip(positions, batch_scores.tolist()):
                    scores[window_rows[position].index] = score
                bar.update(len(positions))
            # Written in input order, a window at a time, and forced to disk: a crash loses at most this window.
            for index in sorted(scores):
                handle.write(json.dumps(by_index[index].record(scores[index]), ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    bar.close()
    return problems


def _resolve(image: str, image_root: Path) -> str:
    path = Path(image).expanduser()
    return str(path if path.is_absolute() else image_root / path)
