"""scripts/run_pipeline.py passes the training flags on to the three train.py (no training here)."""

import importlib.util
from pathlib import Path

import pytest

from tests.helpers import make_input_folder

ROOT = Path(__file__).resolve().parents[1]


def load_pipeline():
    spec = importlib.util.spec_from_file_location("run_pipeline", ROOT / "scripts" / "run_pipeline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train_commands(module, tmp_path, *flags):
    data = tmp_path / "data"
    make_input_folder(data / "train", frames=(3,))
    make_input_folder(data / "test", frames=(3,))
    args = module.parse_args(["--data_folder", str(data), "--work_folder", str(tmp_path / "w"),
                              "--scene", "tiny", *flags])
    pipeline = module.Pipeline(args)
    commands = []
    pipeline.step = lambda title, script, *argv, done=False: commands.append((script, list(map(str, argv))))
    pipeline.cloud_threshold = lambda folder: 20.0
    pipeline.run()
    return {script: argv for script, argv in commands if script.endswith("train.py")}


def test_training_flags_reach_every_stage(tmp_path):
    module = load_pipeline()
    cmds = train_commands(module, tmp_path, "--max_steps", "7,8,9", "--strategy", "mirrored",
                          "--mixed_precision", "--xla")
    for script, steps in (("scoordnet/train.py", "7"), ("oflownet/train.py", "8"), ("kfnet/train.py", "9")):
        argv = cmds[script]
        assert argv[argv.index("--max_steps") + 1] == steps
        assert argv[argv.index("--strategy") + 1] == "mirrored"
        assert "--mixed_precision" in argv and "--xla" in argv
    cmds = train_commands(module, tmp_path / "b", "--max_steps", "5")
    assert all(argv[argv.index("--max_steps") + 1] == "5" and "--xla" not in argv
               for argv in cmds.values())
    with pytest.raises(SystemExit):
        module.parse_args(["--work_folder", "w", "--scene", "tiny", "--max_steps", "1,2"])


def test_validation_on_the_test_folder_only_when_asked(tmp_path):
    module = load_pipeline()
    cmds = train_commands(module, tmp_path, "--validate", "--val_every", "50")
    for argv in cmds.values():
        assert argv[argv.index("--val_folder") + 1] == str(tmp_path / "data" / "test")
        assert argv[argv.index("--val_every") + 1] == "50"
    cmds = train_commands(module, tmp_path / "b")
    assert not any("--val_folder" in argv for argv in cmds.values())
