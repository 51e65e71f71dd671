"""Every runnable code block of README.md and of the guides in docs/ is executed, so the docs cannot rot; every CLI
help page is checked.

Blocks run in a scratch folder whose Hugging Face cache holds tiny models under the Hub ids the README names
(`zhiqiulin/clip-flant5-xxl` and `-xl` in the original layout, `zhiqiulin/clip-flant5-xxl-stage-1` as an original
projector repo, `clip-flant5/clip-flant5-xxl` converted), with `HF_HUB_OFFLINE=1`. A block preceded by
`<!-- readme-test: skip (reason) -->` is not run here; the reason says which test covers it instead (it needs GPUs, or
it is the test command itself).
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from clip_flant5_cli import COMMANDS, build_parser, main
from tests.support.hub import hub_cache
from tests.support.images import make_images
from transformers_clipflant5 import VQAScore


ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"(?:<!-- readme-test: skip \((?P<reason>[^)]*)\) -->\n)?```(?P<lang>\w+)\n(?P<code>.*?)```", re.S)


# The documents whose blocks run, in this order (later blocks may use files earlier ones wrote).
DOCUMENTS = ("README.md", "docs/scoring.md", "docs/checkpoints.md", "docs/training.md", "docs/errors_and_messages.md")


def readme_blocks() -> list[tuple[str, str, str | None]]:
    return [
        (m["lang"], m["code"], m["reason"])
        for document in DOCUMENTS
        for m in BLOCK.finditer((ROOT / document).read_text())
    ]


# Guides whose Python blocks need a running server or a model layout of their own, run by their own test.
RUN_ELSEWHERE = {"docs/demo.md": "tests/demo/test_docs.py", "docs/explain.md": "tests/demo/test_docs.py"}


def test_every_guide_is_tested_or_says_why_not():
    # A new guide in docs/ must either have its blocks run by a test or hold no runnable block.
    for path in sorted((ROOT / "docs").glob("*.md")):
        if f"docs/{path.name}" in DOCUMENTS:
            continue
        if f"docs/{path.name}" in RUN_ELSEWHERE:
            assert (ROOT / RUN_ELSEWHERE[f"docs/{path.name}"]).is_file()
            continue
        runnable = [
            m["code"][:60]
            for m in BLOCK.finditer(path.read_text())
            if m["lang"] in ("python", "bash") and m["reason"] is None
        ]
        assert not runnable, f"docs/{path.name} has runnable blocks no test runs: add it to DOCUMENTS or mark them"


@pytest.fixture(scope="module")
def scratch(tiny, original_folder, tmp_path_factory):
    model, processor = tiny
    root = tmp_path_factory.mktemp("readme")
    cache = root / "hub"
    hub_cache(cache, "zhiqiulin/clip-flant5-xxl", original_folder, commit="1" * 40)
    hub_cache(cache, "zhiqiulin/clip-flant5-xl", original_folder, commit="2" * 40)
    converted = root / "converted"
    model.save_pretrained(converted)
    processor.save_pretrained(converted)
    hub_cache(cache, "clip-flant5/clip-flant5-xxl", converted, commit="3" * 40)
    stage1 = root / "stage1"
    stage1.mkdir()
    projector = model.model.multi_modal_projector
    torch.save(
        {
            "model.mm_projector.0.weight": projector.linear_1.weight.detach().clone(),
            "model.mm_projector.0.bias": projector.linear_1.bias.detach().clone(),
            "model.mm_projector.2.weight": projector.linear_2.weight.detach().clone(),
            "model.mm_projector.2.bias": projector.linear_2.bias.detach().clone(),
        },
        stage1 / "mm_projector.bin",
    )
    (stage1 / "config.json").write_text((original_folder / "config.json").read_text())
    hub_cache(cache, "zhiqiulin/clip-flant5-xxl-stage-1", stage1, commit="4" * 40)

    work = root / "work"
    work.mkdir()
    cat, dog, bird = make_images([(40, 60), (50, 50), (30, 45)], seed=3)
    cat.save(work / "cat.png")
    dog.save(work / "dog.png")
    bird.save(work / "bird.png")
    with open(work / "pairs.jsonl", "w") as handle:
        for index, (image, text) in enumerate([("cat.png", "a cat"), ("dog.png", "a dog"), ("bird.png", "a bird")]):
            handle.write(json.dumps({"id": index, "image": image, "text": text}) + "\n")
    with open(work / "winoground.jsonl", "w") as handle:
        handle.write(json.dumps({"id": 0, "images": ["cat.png", "dog.png"], "captions": ["a cat", "a dog"]}) + "\n")
        handle.write(json.dumps({"id": 1, "images": ["dog.png", "bird.png"], "captions": ["a dog", "a bird"]}) + "\n")
    for name in ("examples", "scripts", "benchmarks"):
        (work / name).symlink_to(ROOT / name)
    env = dict(
        os.environ,
        HF_HUB_CACHE=str(cache),
        HF_HUB_OFFLINE="1",
        HF_HOME=str(root / "home"),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    )
    return work, env


def test_readme_has_the_two_quick_start_commands():
    quick_start = (ROOT / "README.md").read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = [line.split("#")[0].strip() for line in quick_start.split("```bash", 1)[1].split("```")[0].splitlines()]
    assert [c for c in commands if c] == ["bash scripts/demo.sh", "bash scripts/test.sh"]
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


# A file of the repo named in a skip reason: a test module, a CI script or an example the tests run.
NAMED_FILE = re.compile(r"\b(?:tests|scripts|examples)/[\w/.-]+\.(?:py|sh)\b")


def test_every_skipped_block_names_the_test_that_covers_it():
    # A skipped block is only safe while something else runs it: the reason must name that test (or CI script), and
    # a renamed or deleted test module must not leave the README pointing at nothing.
    skipped = [(code, reason) for _lang, code, reason in readme_blocks() if reason is not None]
    assert skipped
    for code, reason in skipped:
        named = NAMED_FILE.findall(reason)
        assert any(path.startswith("tests/") or path == "scripts/test.sh" for path in named), (reason, code[:80])
        missing = [path for path in named if not (ROOT / path).is_file()]
        assert not missing, (missing, reason)


def test_python_blocks_run(scratch):
    work, env = scratch
    blocks = [code for lang, code, reason in readme_blocks() if lang == "python" and reason is None]
    assert len(blocks) >= 4
    # One interpreter, a fresh namespace per block: the blocks must be self-contained.
    runner = "import sys\nfor index, code in enumerate(BLOCKS):\n    print(f'--- block {index}', flush=True)\n"
    runner += "    exec(compile(code, f'README block {index}', 'exec'), {'__name__': '__main__'})\nprint('ALL OK')\n"
    script = f"BLOCKS = {blocks!r}\n" + runner
    result = subprocess.run([sys.executable, "-c", script], cwd=work, env=env, capture_output=True, text=True)
    assert result.returncode == 0 and "ALL OK" in result.stdout, result.stdout[-2000:] + result.stderr[-4000:]


def test_bash_blocks_run(scratch, original_folder):
    work, env = scratch
    blocks = [code for lang, code, reason in readme_blocks() if lang == "bash" and reason is None]
    assert len(blocks) >= 3
    for code in blocks:
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", code], cwd=work, env=env, capture_output=True, text=True
        )
        assert result.returncode == 0, (
            f"{code}\n--- stdout\n{result.stdout[-2000:]}\n--- stderr\n{result.stderr[-3000:]}"
        )
    scores = [json.loads(line) for line in (work / "scores.jsonl").read_text().splitlines()]
    # `zhiqiulin/clip-flant5-xxl` in the scratch Hub cache is the tiny model in the original layout.
    expected = VQAScore.from_pretrained(original_folder, dtype="float32", device="cpu")(
        [work / "cat.png", work / "dog.png", work / "bird.png"], ["a cat", "a dog", "a bird"]
    )
    assert [row["id"] for row in scores] == [0, 1, 2]
    assert [row["score"] for row in scores] == pytest.approx(expected.tolist(), rel=1e-5)
    assert (work / "clip-flant5-xl" / "model.safetensors").exists() or list(
        (work / "clip-flant5-xl").glob("model-*.safetensors")
    )
    assert (work / "clip-flant5-xxl-stage-1" / "projector.safetensors").exists()


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_cli_help_pages(command, capsys):
    """`clip-flant5 --help` lists every subcommand; each subcommand's help describes each of its options."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"] if command is None else [command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    if command is None:
        for name in COMMANDS:
            assert re.search(rf"^\s+{name}\s+\S", text, re.M), f"{name} has no one-line help"
        return
    assert text.startswith(f"usage: clip-flant5 {command}")
    parser = build_parser()._subparsers._group_actions[0].choices[command]
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, f"clip-flant5 {command} {action.option_strings[0]} has no help text"
