"""`clip-flant5 score`: scoring one pair or a pairs file, resumably, across processes and nodes.

The command's options and its help (file formats, what is checked before the model loads, exit statuses) are in
`clip_flant5_cli.score`, which `--help` reads without importing the library.
"""

import argparse
import codecs
import json
import os
import re
import sys
from contextlib import ExitStack, nullcontext
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from transformers_clipflant5.cpu_threads import describe_cpu_threads
from transformers_clipflant5.json_rows import json_lines
from transformers_clipflant5.output_lock import OutputInUseError, exclusive_output
from transformers_clipflant5.safe_writes import AppendFailed, LineAppender, cut_unfinished_line

from .checks import (
    ScoreFileError,
    ScoreUsageError,
    check_arguments,
    check_output_path,
    load_processor,
    load_scorer,
    text_problem,
)
from .pairs_file import PairRow, read_pairs
from .processes import (
    LauncherStopped,
    main_process_answer,
    report_lost_rows,
    report_unfinished_processes,
    stop_raises_on_sigterm,
)
from .videos import check_video_arguments, score_video_rows, video_frames


PART_SUFFIX = ".part-"
EXIT_ROWS_SKIPPED = 1
EXIT_USAGE = 2


def run(args: argparse.Namespace) -> int:
    from transformers_clipflant5.hub.model_source import ModelSourceError, check_model_source

    if args.pairs is not None:
        if args.image or args.text:
            return _usage_error("Pass either --pairs or --image/--text, not both.")
        if args.output is None:
            return _usage_error("--pairs needs --output, the JSONL file the scores go to.")
    elif not args.image or not args.text:
        return _usage_error("Pass --image and --text (one pair), or --pairs and --output (a file of pairs).")
    elif args.output is not None or args.image_root is not None:
        # Not silently ignored: with --image/--text the scores go to stdout, and --image paths are used as given.
        option = "--output" if args.output is not None else "--image-root"
        return _usage_error(f"{option} goes with --pairs; with --image/--text the scores are printed on stdout.")
    elif len(args.image) != len(args.text):
        return _usage_error(f"Got {len(args.image)} --image but {len(args.text)} --text; pass them in pairs.")
    if args.no_progress:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    try:
        check_arguments(args)
        check_video_arguments(args)
        if args.output is not None:
            check_output_path(args.output, args.pairs)
        check_model_source(args.model)
        if args.pairs is not None:
            return score_pairs_file(args)
        return score_single(args)
    except (ScoreUsageError, ModelSourceError, OutputInUseError, OSError) as error:
        # An option, a pairs/output file that cannot be used or written (the merge too), an output another run is
        # writing, or a --model that cannot be loaded.
        return _usage_error(str(error))


def _usage_error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


def shorten(text: str, keep: int = 60) -> str:
    """`text` quoted, or, when long, its start and its length: an error line must not repeat a 27,000-character text."""
    if len(text) <= keep + 20:
        return repr(text)
    return f"{text[:keep]!r}... ({len(text):,} characters)"


def score_single(args: argparse.Namespace) -> int:
    """Score the --image/--text pairs: one line per pair on stdout, in their order, `nan` for a pair that cannot be
    scored (its error on stderr), so that every line stays with its pair."""
    from transformers_clipflant5.scoring.prompts import check_text

    processor = load_processor(args)
    failed: set[int] = set()

    def report(index: int, problem: str) -> None:
        failed.add(index)
        pair = f"pair {index + 1} (--image {args.image[index]}, --text {shorten(args.text[index])})"
        print(f"error: {pair}: {problem}", file=sys.stderr)

    for index, text in enumerate(args.text):
        try:
            check_text(text, "the text", processor.image_token)
        except ValueError as error:
            report(index, str(error))
            continue
        problem = text_problem(processor, text, "the text", args)
        if problem is not None:
            report(index, problem)
    scores: dict[int, float] = {}
    # Pairs whose texts are fine; when there are none the model is not loaded at all.
    good = [index for index in range(len(args.text)) if index not in failed]
    if good:
        scorer = load_scorer(args)
        for positions, batch_scores in scorer.iter_scores(
            [args.image[index] for index in good],
            [args.text[index] for index in good],
            on_image_error=lambda position, error: report(good[position], str(error)),
            truncate_texts=args.truncate_texts,
        ):
            scores.update((good[position], score) for position, score in zip(positions, batch_scores.tolist()))
    for index in range(len(args.text)):
        print(f"{scores[index]:.6g}" if index in scores else "nan")
    return EXIT_ROWS_SKIPPED if failed else 0


# --------------------------------------------------------------------------------------------------------------------
# Files


def part_files(output: Path) -> list[Path]:
    return sorted(output.parent.glob(output.name + PART_SUFFIX + "*"))


def read_results(path: Path) -> dict[int, dict[str, Any]]:
    """Scored rows of an output (or part) file by row; a last line cut short by a crash is ignored."""
    return _read_score_file(path)[0] if path.is_file() else {}


def drop_unfinished_line(path: Path) -> None:
    """Cut a record left unfinished by an interrupted write (saying so), so that appended records start on a fresh
    line."""
    if not path.is_file():
        return
    _, end = _read_score_file(path)
    cut_unfinished_line(path, end)


# How every record starts (`json.dumps` of `PairRow.record`, whose first key is "row"): a line cut short while the
# command wrote it begins with these characters, or with a part of them.
_RECORD_START = '{"row": '


def _read_score_file(path: Path) -> tuple[dict[int, dict[str, Any]], int]:
    """The records of `path` by row, and the byte offset where its last newline ends. What follows that newline must
    be a record cut short (or nothing), the only text this command ever cuts: anything else raises
    [`ScoreFileError`], so that a file this command did not write is never appended to or cut."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    try:
        finished = data[:end].decode("utf-8")
    except UnicodeDecodeError as error:
        line_number = data.count(b"\n", 0, error.start) + 1
        raise ScoreFileError(_not_a_score_record(path, line_number, "not UTF-8 text")) from error
    results: dict[int, dict[str, Any]] = {}
    for line_number, record in json_lines(finished.split("\n")):
        try:
            if isinstance(record, json.JSONDecodeError):
                raise record
            results[int(record["row"])] = record
            float(record["score"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise ScoreFileError(_not_a_score_record(path, line_number, repr(error))) from error
    last_line = finished.count("\n") + 1
    try:
        # A cut may fall inside a character: its first bytes are no error there.
        rest = codecs.getincrementaldecoder("utf-8")().decode(data[end:], final=False)
    except UnicodeDecodeError as error:
        raise ScoreFileError(_not_a_score_record(path, last_line, "not UTF-8 text")) from error
    if rest and not (_RECORD_START.startswith(rest) or re.match(re.escape(_RECORD_START) + r"\d", rest)):
        raise ScoreFileError(_not_a_score_record(path, last_line, f"it reads {rest[:40]!r}"))
    return results, end


def _not_a_score_record(path: Path, line_number: int, reason: str) -> str:
    return (
        f"{path} line {line_number} is not a score record ({reason}): is --output a file this command wrote? Pass "
        "another --output."
    )


def check_results_match(results: dict[int, dict[str, Any]], rows: list[PairRow], output: Path) -> None:
    for index, record in results.items():
        row = rows[index] if 0 <= index < len(rows) else None
        stored = tuple(record.get(name) for name in ("id", "image", "video", "text", "video_frames"))
        if row is None or stored != (row.id, row.image, row.video, row.text, row.video_frames):
            raise ScoreFileError(
                f"{output} holds a score for row {index} that does not match the pairs file (stored id/image/video/"
                f"text/video frames {'/'.join(map(repr, stored))}). It was written for other pairs (or other video "
                "options): pass another --output, or delete it to start over."
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
        try:
            with open(temporary, "w", encoding="utf-8") as handle:
                for index in sorted(results):
                    handle.write(json.dumps(results[index], ensure_ascii=False) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, output)
        except OSError as error:
            # A full disk, say: the merge is a copy, and nothing was cut or deleted before it was in place.
            temporary.unlink(missing_ok=True)
            raise ScoreFileError(
                f"could not merge the part files into {output} ({error.strerror or error}): every scored row is still "
                f"on disk in {output} and its part files, unchanged. Free space (or fix the cause) and run the same "
                "command again: it merges them without scoring any row again."
            ) from error
        for part in parts:
            part.unlink()
    return set(results)


# --------------------------------------------------------------------------------------------------------------------
# Scoring a pairs file


def score_pairs_file(args: argparse.Namespace) -> int:
    import torch
    from accelerate import PartialState

    # Without `cpu=True` accelerate ignores a torchrun / mpirun launch on a machine without GPUs.
    on_cpu = (args.device or "").startswith("cpu") or not torch.cuda.is_available()
    state = PartialState(cpu=on_cpu)
    with ExitStack() as lock:
        # One run per output, for the whole run: the main process holds the lock (the other processes write part
        # files that only this run's merge reads). A refusal reaches every process.
        main_process_answer(state, lambda: lock.enter_context(exclusive_output(args.output, "--output")))
        return _score_pairs_file(args, state)


def _score_pairs_file(args: argparse.Namespace, state) -> int:
    from accelerate.utils import gather_object

    output: Path = args.output
    rows = read_pairs(args.pairs)
    processor = load_processor(args)
    for row in rows:
        if row.problem is None:
            row.problem = text_problem(processor, row.text, "its text", args)
        if row.video is not None:
            row.video_frames = video_frames(args)
    image_root = args.image_root if args.image_root is not None else args.pairs.parent

    def read_finished() -> list[int]:
        finished: dict[int, dict[str, Any]] = {}
        paths = [output, *part_files(output)]
        for path in paths:
            finished.update(read_results(path))
        check_results_match(finished, rows, output)
        # Only files this command wrote for these pairs get a record cut short by a kill removed.
        for path in paths:
            drop_unfinished_line(path)
        return sorted(finished)

    finished = set(main_process_answer(state, read_finished))

    problems: list[tuple[int, str]] = []
    if state.is_main_process:
        for row in rows:
            if row.problem is not None and row.index not in finished:
                problems.append((row.index, f"{args.pairs} row {row.index} (line {row.line}): {row.problem}"))
                print(f"skipped: {problems[-1][1]}", file=sys.stderr)
    pending = [row for row in rows if row.problem is None and row.index not in finished]
    several = state.num_processes > 1

    def stopped(error: Exception) -> int:
        """A process of a multi-process run died (the collective failed) or the launcher is stopping this one."""
        if state.is_main_process:
            on_disk: dict[int, dict[str, Any]] = {}
            for path in [output, *part_files(output)]:
                on_disk.update(read_results(path))
            report_unfinished_processes(assignments, set(on_disk), output, isinstance(error, LauncherStopped))
        else:
            print(
                f"process {state.process_index} of {state.num_processes}: stopped, another process of the run failed "
                "or was killed (the main process says what is left).",
                file=sys.stderr,
            )
        return EXIT_USAGE

    with stop_raises_on_sigterm() if several else nullcontext():
        with state.split_between_processes(pending) as mine:
            # The rows of every process, for the report if one dies before the others are done.
            assignments = {state.process_index: [row.index for row in mine]}
            if several:
                print(
                    f"process {state.process_index} of {state.num_processes}: {len(mine)} rows to score",
                    file=sys.stderr,
                )
                try:
                    assignments = dict(gather_object([(state.process_index, assignments[state.process_index])]))
                except (LauncherStopped, RuntimeError) as error:  # RuntimeError: the collective lost a process
                    return stopped(error)
            target = (
                output if not several else output.with_name(f"{output.name}{PART_SUFFIX}{state.process_index:05d}")
            )
            try:
                written, problems_here = _score_rows(args, state, mine, target, image_root)
            except LauncherStopped as error:
                return stopped(error)
            except AppendFailed as failure:
                raise ScoreFileError(_write_failure(failure, state, len(finished), len(rows), output)) from failure
            problems += problems_here

        # (process, rows it wrote, rows it could not score) of every process
        reports = [(state.process_index, written, problems)]
        try:
            if several:
                reports = gather_object(reports)
            state.wait_for_everyone()
        except (LauncherStopped, RuntimeError) as error:
            if not several:
                raise
            return stopped(error)
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


def _write_failure(failure: AppendFailed, state, finished: int, total: int, output: Path) -> str:
    """The one-line message for scores that could not be written (a full disk, say): which file, what is safe."""
    reason = failure.error.strerror or str(failure.error)
    if state.num_processes == 1:
        safe = finished + failure.lines_on_disk
        return (
            f"could not write scores to {failure.path} ({reason}): {safe} of {total} rows are safely on disk there "
            f"({failure.lines_on_disk} scored in this run) and the file is left valid. Free space (or fix the cause) "
            f"and run the same command again: it resumes with the {total - safe} rows left."
        )
    return (
        f"process {state.process_index} of {state.num_processes} could not write scores to {failure.path} "
        f"({reason}): the {failure.lines_on_disk} rows it scored in this run are safely on disk there and the file is "
        f"left valid. Free space (or fix the cause) and run the same command again: it resumes where {output} and "
        "its part files stop."
    )


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
    if state.is_local_main_process:
        on = f"{scorer.device}" + (f", {describe_cpu_threads()}" if scorer.device.type == "cpu" else "")
        print(f"Scoring {len(rows)} pairs with {args.model} on {on}.", file=sys.stderr)
    by_index = {row.index: row for row in rows}
    video_rows = [row for row in rows if row.video is not None]
    rows = [row for row in rows if row.video is None]
    window = args.batch_size * 8
    drop_unfinished_line(target)
    bar = tqdm(
        total=len(rows) + len(video_rows),
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

    with LineAppender(target) as appender:
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
            # Written in input order, a window at a time, and forced to disk: a crash loses at most this window, a
            # failed write (a full disk) leaves the file as it was before the window.
            appender.append(
                [json.dumps(by_index[index].record(scores[index]), ensure_ascii=False) for index in sorted(scores)]
            )
            written.extend(sorted(scores))

        def write(index: int, score: float) -> None:
            appender.append([json.dumps(by_index[index].record(score), ensure_ascii=False)])
            written.append(index)

        score_video_rows(args, scorer, video_rows, lambda video: _resolve(video, image_root), write, problems, bar)
    bar.close()
    return written, problems


def _resolve(image: str, image_root: Path) -> str:
    path = Path(image).expanduser()
    return str(path if path.is_absolute() else image_root / path)
