"""The project installs as a package (pyproject.toml), and its ranges admit the pinned versions."""

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

packaging = pytest.importorskip("packaging")
tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml with tomllib")
from packaging.requirements import Requirement  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("common", "kfnet", "scoordnet", "oflownet", "pnp", "vis")


def pinned(path):
    """{name: version} of the `name==version` lines of a requirements file."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^\s;]+)", line)
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(3)
    return pins


def declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        reqs += [Requirement(r) for r in extra if not r.startswith("kfnet-tf2")]
    return reqs


def test_every_pinned_version_satisfies_the_declared_range():
    pins = pinned(ROOT / "requirements.txt")
    reqs = declared()
    checked = 0
    for req in reqs:
        name = req.name.lower().replace("_", "-")
        if name in pins:
            assert req.specifier.contains(pins[name], prereleases=True), (req, pins[name])
            checked += 1
    # Every core dependency is pinned, so `pip install -r requirements.txt` is the tested set.
    core = {Requirement(r).name.lower() for r in
            tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    assert core <= set(pins), core - set(pins)
    assert checked >= len(core)


def test_the_package_builds_with_its_modules_and_dependencies(tmp_path):
    """A wheel of the working tree (what `pip install -e .` / `pip install .` build from) holds every
    package the scripts import and declares the dependencies."""
    # Built from a copy: setuptools writes build/ and *.egg-info next to the sources.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", *PACKAGES):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
        copy(ROOT / name, src / name)
    out = tmp_path / "wheel"
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "-q", "-w", str(out), str(src)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    wheels = list(out.glob("kfnet_tf2-*.whl"))
    assert len(wheels) == 1
    with zipfile.ZipFile(wheels[0]) as whl:
        names = whl.namelist()
        meta = whl.read(next(n for n in names if n.endswith("METADATA"))).decode()
    for module in ("common/filter.py", "common/data/pipelines.py", "scoordnet/model.py",
                   "oflownet/model.py", "kfnet/relocalizer.py", "pnp/solve.py"):
        assert module in names, module
    assert not any(n.startswith("tests/") for n in names)
    assert "Requires-Dist: tensorflow" in meta and "Provides-Extra: gpu" in meta
