"""What the processes of a multi-process `clip-flant5 score` run check together: scores written by a process that
its main process's merge does not hold are reported (and make the command fail) rather than silently lost."""

from clip_flant5_cli.score.command import PART_SUFFIX
from clip_flant5_cli.score.processes import report_lost_rows


def test_rows_missing_from_the_merge_are_reported_with_their_processes(tmp_path, capsys):
    output = tmp_path / "scores.jsonl"
    # (process, rows it wrote, rows it could not score)
    reports = [(0, [0, 1], []), (1, [2, 3], [(6, "bad image")]), (2, [4, 5], [])]
    assert report_lost_rows(reports, {0, 1, 2, 3, 4, 5}, output, PART_SUFFIX) is False
    assert capsys.readouterr().err == ""
    # Processes 1 and 2 wrote on another machine: the main process merged none of process 1's rows, one of 2's.
    assert report_lost_rows(reports, {0, 1, 4}, output, PART_SUFFIX) is True
    error = capsys.readouterr().err
    assert "process(es) [1, 2] (3 rows)" in error
    assert f"scores.jsonl{PART_SUFFIX}<process>" in error and str(tmp_path) in error
