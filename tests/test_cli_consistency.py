"""Every command-line script answers --help; --image_list picks the frames of an input folder."""

import contextlib
import importlib
import io
from pathlib import Path

import pytest

from common.data.scene import load_input_folder
from common.errors import InputError
from tests.helpers import make_input_folder

ROOT = Path(__file__).resolve().parents[1]


def cli_modules():
    """Every script in scripts/, every */train.py and */test.py, pnp/solve.py and the vis/ scripts."""
    files = sorted(ROOT.glob("scripts/*.py")) + sorted(ROOT.glob("*/train.py")) + \
        sorted(ROOT.glob("*/test.py")) + [ROOT / "pnp" / "solve.py"]
    files += [p for p in sorted(ROOT.glob("vis/*.py")) if '__name__ == "__main__"' in p.read_text()]
    return [".".join(p.relative_to(ROOT).with_suffix("").parts) for p in files]


def test_every_script_answers_help():
    """One process: each script's main(["--help"]) prints its usage and exits with 0."""
    modules = cli_modules()
    assert {"scripts.filter_oracle", "scoordnet.train", "kfnet.test", "pnp.solve",
            "vis.offscreen"} <= set(modules)
    for name in modules:
        module = importlib.import_module(name)
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as stop:
            module.main(["--help"])
        assert stop.value.code in (0, None), name
        text = out.getvalue()
        assert text.startswith("usage:"), name
        assert "-h, --help" in text, name


def test_filter_oracle_help_keeps_its_list():
    module = importlib.import_module("scripts.filter_oracle")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        module.main(["--help"])
    lines = out.getvalue().splitlines()
    assert ("- how alike consecutive measurement errors are (their correlation along the true flow): "
            "a filter") in lines
    assert ("    python scripts/filter_oracle.py --input_folder IN --results_folder OUT "
            "--scene synthetic") in lines


def test_image_list_picks_frames_and_their_labels(tmp_path, capsys):
    folder = make_input_folder(tmp_path / "in", frames=(4, 4), with_poses=True)
    images = (folder / "image_list.txt").read_text().split()
    chosen = tmp_path / "chosen.txt"
    chosen.write_text(f"{images[6]}\n{images[7]}\n{images[1]}\n")
    data = load_input_folder(folder, image_list=chosen)
    assert data.image_paths == [images[6], images[7], images[1]]
    labels = (folder / "label_list.txt").read_text().split()
    poses = (folder / "pose_list.txt").read_text().split()
    assert data.label_paths == [str(folder / labels[n]) for n in (6, 7, 1)]
    assert data.pose_paths == [poses[n] for n in (6, 7, 1)]
    assert data.sequence_ids.tolist() == [0, 0, 1]  # seq-02, seq-02, then seq-01
    # An image the folder does not list: no labels, no poses (a note says so); training refuses.
    other = make_input_folder(tmp_path / "other", frames=(2,))
    mixed = tmp_path / "mixed.txt"
    mixed.write_text(f"{images[0]}\n{(other / 'image_list.txt').read_text().split()[0]}\n")
    data = load_input_folder(folder, require_labels=False, image_list=mixed)
    assert data.label_paths is None and data.pose_paths is None and len(data) == 2
    assert capsys.readouterr().out.strip() == (
        f"note: 1 of the 2 images of {mixed} are not in {folder / 'image_list.txt'}: no labels or poses "
        "for them, no evaluation")
    with pytest.raises(InputError, match="images without labels"):
        load_input_folder(folder, image_list=mixed)
    with pytest.raises(InputError, match=f"--image_list {tmp_path / 'none.txt'} not found"):
        load_input_folder(folder, image_list=tmp_path / "none.txt")
