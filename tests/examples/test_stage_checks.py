"""The stage scripts check their data and template before they load the base models (minutes for FlanT5-XXL), and
refuse to start without data; the demo has an entry point of its own."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.llava import gpt, human
from tests.support.paths import REPO_ROOT
from transformers_clipflant5.testing.demo import parse_demo_arguments, stage1_demo_command
from transformers_clipflant5.training.stages import parse_stage_arguments


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "data.json"
    path.write_text(json.dumps([{"id": "t", "conversations": [human("Q"), gpt("A")]}]))
    return path


@pytest.mark.parametrize(
    "stage, extra, error, message",
    [
        (1, ["--data_path", "{missing}"], FileNotFoundError, "File not found"),
        (1, ["--data_path", "{data}", "--template", "t5_v1"], ValueError, "does not fit stage 1"),
        (2, ["--data_path", "{missing}"], FileNotFoundError, "File not found"),
        (2, ["--data_path", "{data}", "--template", "t5_plain"], ValueError, "does not fit stage 2"),
        (2, ["--data_path", "{data}", "--template", "t5_v1", "--flatten"], None, None),
    ],
)
def test_data_and_template_are_checked_before_the_models_load(
    stage, extra, error, message, data, tmp_path, monkeypatch
):
    # parse_stage_arguments sets DS_ACCELERATOR on a machine without a GPU: keep it out of the rest of the session.
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    script = load_example(f"run_stage{stage}")

    class ModelsLoaded(Exception):
        pass

    def load_model(*args, **kwargs):
        raise ModelsLoaded

    monkeypatch.setattr(script, "load_model", load_model)
    argv = [arg.format(missing=tmp_path / "missing.json", data=data) for arg in extra]
    argv += ["--output_dir", str(tmp_path / "out"), "--text_model", "t", "--vision_model", "v"]
    if error is None:
        # Valid data and template: the next step is loading the models.
        with pytest.raises(ModelsLoaded):
            script.main(*parse_stage_arguments(argv))
    else:
        with pytest.raises(error, match=message):
            script.main(*parse_stage_arguments(argv))


def test_a_stage_script_without_data_is_a_usage_error(tmp_path):
    # A missing --data_path used to start the demo silently; now it is argparse's usage error: status 2, one line.
    result = subprocess.run(
        [sys.executable, "examples/run_stage2.py", "--output_dir", str(tmp_path / "out")],
        cwd=REPO_ROOT,
        env=dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    # The last line is the error, whole; what comes before it is import noise of third-party libraries (not ours).
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("run_stage2.py: error: --data_path is required"), result.stderr[-2000:]
    assert "examples/train_demo.py" in last and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "out-data").exists()


def test_a_config_file_may_give_the_data_path(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    argv = ["--output_dir", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exit_info:
        parse_stage_arguments(argv)
    assert exit_info.value.code == 2 and capsys.readouterr().err.count("\n") == 1
    config = tmp_path / "run.yaml"
    config.write_text(f"data_path: {tmp_path / 'data.json'}\n")
    script_args, _, _ = parse_stage_arguments([*argv, "--config", str(config)])
    assert script_args.data_path == str(tmp_path / "data.json")


def test_the_demo_refuses_data_of_its_own(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    with pytest.raises(SystemExit) as exit_info:
        parse_demo_arguments(["--output_dir", str(tmp_path / "out"), "--data_path", "mine.json"])
    assert exit_info.value.code == 2 and "writes its own synthetic data" in capsys.readouterr().err


@pytest.mark.parametrize("flag, padded", [([], True), (["--do_pad", "false"], False)])
def test_demo_model_follows_do_pad(flag, padded, tmp_path, monkeypatch):
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    script = load_example("train_demo")

    class CollatorBuilt(Exception):
        pass

    def stage_collator(stage, script_args, training_args, processor):
        raise CollatorBuilt(processor.image_processor.do_pad)

    monkeypatch.setattr(script, "stage_collator", stage_collator)
    argv = ["--output_dir", str(tmp_path / "out"), "--demo_train_images", "2", "--demo_eval_images", "2", *flag]
    with pytest.raises(CollatorBuilt) as built:
        script.main(*parse_demo_arguments(argv))
    assert built.value.args == (padded,)


def test_stage1_demo_command_trains_on_the_data_it_wrote(tmp_path, monkeypatch):
    # `python -m transformers_clipflant5.testing.demo --stage 1` writes the data and base checkpoints and prints a
    # run_stage1.py command line; that line must parse and point at what was written.
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    output = str(tmp_path / "stage1")
    command = stage1_demo_command(output, train_images=4)
    assert command[:2] == ["python", "examples/run_stage1.py"]
    script_args, training_args, _ = parse_stage_arguments(command[2:])
    assert training_args.output_dir == output and training_args.learning_rate == 1e-2
    assert len(json.loads(Path(script_args.data_path).read_text())) == 4
    assert (Path(script_args.image_folder) / "images").is_dir()
    assert (Path(script_args.text_model) / "config.json").is_file()
    assert (Path(script_args.vision_model) / "preprocessor_config.json").is_file()
