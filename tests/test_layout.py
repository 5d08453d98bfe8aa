"""The floor plan: imports point down only (docs/reference.md §1, README "Layout").

    scripts, tests ─► kfnet ─► scoordnet, oflownet ─► common
               pnp, vis ──────────────────────► common   (vis may use pnp)

Read from every .py file's import statements (module level and inside functions alike).
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("common", "scoordnet", "oflownet", "kfnet", "pnp", "vis", "scripts", "tests")
# What each package may import of the project (besides itself).
ALLOWED = {
    "common": set(),
    "scoordnet": {"common"},
    "oflownet": {"common"},
    "kfnet": {"common", "scoordnet", "oflownet", "pnp"},
    "pnp": {"common"},
    "vis": {"common", "pnp"},
    "scripts": {"common", "scoordnet", "oflownet", "kfnet", "pnp", "vis"},
    "tests": {"common", "scoordnet", "oflownet", "kfnet", "pnp", "vis", "scripts", "tests"},
}


def project_imports(path):
    """[(line, top-level project package)] of one file's import statements."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.ImportFrom):
            raise AssertionError(f"{path}:{node.lineno}: relative import; name the package")
        else:
            continue
        found += [(node.lineno, n.split(".")[0]) for n in names if n.split(".")[0] in PACKAGES]
    return found


def python_files():
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def test_every_package_is_seen():
    seen = {p.relative_to(ROOT).parts[0] for p in python_files()}
    assert seen == set(PACKAGES)
    assert len(python_files()) > 80


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_point_down_only(package):
    wrong = [f"{path.relative_to(ROOT)}:{line} imports {target}"
             for path in python_files() if path.relative_to(ROOT).parts[0] == package
             for line, target in project_imports(path)
             if target != package and target not in ALLOWED[package]]
    assert not wrong, "\n".join(wrong)


def test_no_module_edits_sys_path():
    """Only files run as scripts put the repository root first on sys.path, under that guard."""
    for path in python_files():
        text = path.read_text()
        for n, line in enumerate(text.splitlines(), 1):
            if "sys.path" in line and path.parts[-2] != "tests":
                assert line.strip() == "sys.path[0] = str(Path(__file__).resolve().parents[1])", \
                    f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
                assert 'if __package__ in (None, ""):' in text.splitlines()[n - 2], \
                    f"{path.relative_to(ROOT)}:{n}: sys.path edit outside the script guard"


def test_nothing_points_outside_the_repository():
    for path in [*python_files(), *ROOT.glob("*.md"), *(ROOT / "docs").glob("*.md"),
                 *(ROOT / "configs").rglob("*.yaml"), *(ROOT / "scripts").glob("*.sh")]:
        if path == Path(__file__).resolve():
            continue
        text = path.read_text()
        for bad in ("../" + "shared", "SPEC.md", "SPEC §"):  # spelled apart: this file names no such path
            assert bad not in text, f"{path.relative_to(ROOT)} mentions {bad}"


def _module_imports():
    """({module: project modules imported at module level}, {module: those imported in functions})."""
    modules = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
               for p in python_files() if p.relative_to(ROOT).parts[0] not in ("scripts", "tests")}

    def resolve(name):
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    top, inner = {}, {}
    for module, path in modules.items():
        top[module], inner[module] = set(), set()

        def visit(node, in_function):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                    names = [f"{child.module}.{a.name}" for a in child.names]
                    targets = {resolve(n) if n in modules else resolve(child.module) for n in names}
                elif isinstance(child, ast.Import):
                    targets = {resolve(a.name) for a in child.names}
                else:
                    targets = set()
                (inner if in_function else top)[module].update(t for t in targets if t and t != module)
                visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

        visit(ast.parse(path.read_text()), False)
    return top, inner


def test_no_import_cycle_and_no_function_level_import_hides_one():
    top, inner = _module_imports()

    def reachable(start):
        seen, todo = set(), [start]
        while todo:
            for nxt in top.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    assert [m for m in top if m in reachable(m)] == []
    hidden = [f"{m} -> {t}" for m, targets in inner.items() for t in targets if m in reachable(t)]
    assert hidden == [], "function-level imports that would be a cycle at module level: " + ", ".join(hidden)
    assert "common.data.rgbd" not in inner["common.data.prepare"]  # the one this layout removed
