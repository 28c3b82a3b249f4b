"""The two crashes of issue 14, now one line each before any model loads: a folder the run cannot
write to, and a resume whose LoRA layout differs from the checkpoint's. And when the output folder
fails at the very end anyway, the trained style is rescued to a folder that works.

"Before any model loads" is shown by pointing --base-model at nothing: a check that ran after
loading would report the missing model instead.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file

from mmpp.cli import main
from mmpp.inference.styles import StyleCatalog
from mmpp.training.checkpoints import CheckpointError
from mmpp.training.preflight import SETTINGS_FILE, UnwritableError, writable_problem
from mmpp.training.trainer import StepInfo, Trainer
from tests.training.conftest import ConfigFactory


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "not-a-folder"
    path.write_text("a regular file")
    return path


def test_an_output_under_a_regular_file_is_one_line_before_models_load(
    make_train_config: ConfigFactory, a_file: Path, tmp_path: Path
) -> None:
    config = make_train_config("blocked", output=a_file / "blocked", base_model=str(tmp_path / "no-model"))
    with pytest.raises(UnwritableError, match=r"^--output: cannot write to .*not-a-folder/blocked \(Not a directory\)"):
        Trainer(config).run()


def test_an_unwritable_checkpoint_folder_is_named(make_train_config: ConfigFactory, tmp_path: Path) -> None:
    config = make_train_config("no-checkpoints", base_model=str(tmp_path / "no-model"))
    config.output.mkdir(parents=True)
    config.checkpoints_dir.write_text("a file where the checkpoints folder should be")
    with pytest.raises(UnwritableError, match=r"^--output \(checkpoints\): cannot write to .*checkpoints"):
        Trainer(config).run()


def test_the_cli_prints_one_line_and_exits_nonzero(
    style_data: Path, a_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["train", "--data", str(style_data), "--style-name", "blocked", "--output", str(a_file / "blocked"),
                 "--base-model", str(tmp_path / "no-model"), "--max-steps", "1"])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1 and "cannot write to" in err and "Traceback" not in err


def test_the_write_probe_writes_and_leaves_nothing(tmp_path: Path, a_file: Path) -> None:
    assert writable_problem(tmp_path / "new" / "nested") is None
    assert list((tmp_path / "new" / "nested").iterdir()) == []
    assert writable_problem(a_file / "x") == "Not a directory"


def test_a_folder_that_fails_at_the_end_gets_the_style_rescued(
    make_train_config: ConfigFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the rescue goes to the working folder first
    # A checkpoint and validation images are due after the folder is gone: they are skipped, not fatal.
    config = make_train_config("lost", max_steps=3, checkpointing_steps=2, validation_prompt="a portrait",
                               validation_steps=2, num_validation_images=1, validation_inference_steps=1,
                               report_to="none")

    def output_vanishes(info: StepInfo) -> None:
        if info.step == 1:  # the disk goes away mid-run
            shutil.rmtree(config.output)
            config.output.write_text("a file now")

    with pytest.raises(UnwritableError, match=r"the trained style was saved to (\S+) instead") as caught:
        Trainer(config, on_step=output_vanishes).run()
    rescued = Path(caught.value.message.split("saved to ")[1].split(" instead")[0])
    assert rescued.name == "lost" and rescued.parent.parent == tmp_path
    style = StyleCatalog.load(rescued.parent).get("lost")
    assert load_file(style.lora_path)  # the trained layers, loadable as a style once moved


@pytest.fixture
def checkpointed(make_train_config: ConfigFactory) -> Path:
    """One step of a rank-4 UNet-only run, checkpointed."""
    result = Trainer(make_train_config("resumable", max_steps=1, checkpointing_steps=1, report_to="none")).run()
    return result.checkpoints[-1]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rank": 8}, r"^--rank: this run has 8 but checkpoint-1 was trained with 4; resume with --rank 4"),
        ({"train_text_encoder": True}, r"^--train-text-encoder: this run has it on but checkpoint-1 was trained "
                                       r"with it off; resume with --no-train-text-encoder"),
        ({"use_dora": True}, r"^--use-dora: this run has it on but checkpoint-1 was trained with it off"),
    ],
)
def test_resuming_with_another_lora_layout_says_what_differs(
    make_train_config: ConfigFactory, checkpointed: Path, tmp_path: Path, change: dict, message: str
) -> None:
    config = make_train_config("resumable", resume_from_checkpoint="latest", base_model=str(tmp_path / "no-model"),
                               **change)
    with pytest.raises(CheckpointError, match=message):
        Trainer(config).run()


def test_a_checkpoint_without_the_settings_file_is_read_from_its_lora(
    make_train_config: ConfigFactory, checkpointed: Path, tmp_path: Path
) -> None:
    (checkpointed / SETTINGS_FILE).unlink()  # as written before the settings file existed
    for change, message in (({"rank": 2}, "--rank: this run has 2 but checkpoint-1 was trained with 4"),
                            ({"train_text_encoder": True}, "--train-text-encoder: this run has it on")):
        config = make_train_config("resumable", resume_from_checkpoint="latest",
                                   base_model=str(tmp_path / "no-model"), **change)
        with pytest.raises(CheckpointError, match=message):
            Trainer(config).run()
