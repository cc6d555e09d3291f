"""The shape of the package: the pure stages load no torch, modules import each other without
cycles and stay readable, every command has help and `python -m dse` works."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

DSE = Path(__file__).resolve().parent.parent / "dse"

# The packages in the order they may import each other: a module imports only from its own
# package or from one earlier in this list (define → data → store → train → run → analyze →
# the method → the paper's comparisons → the command line).
ORDER = ["dse.errors", "dse.units", "dse.files", "dse.system", "dse.space", "dse.data",
         "dse.store", "dse.train", "dse.runner", "dse.analysis", "dse.method", "dse.compare",
         "dse.cli"]

# The modules that import torch when imported; every other module must not.
TORCH_STAGES = {"dse.train.models", "dse.train.step", "dse.train.trainer", "dse.train.multistream",
                "dse.data.device", "dse.data.ondisk", "dse.compare.references",
                "dse.compare.speed"}


def _modules() -> dict[str, Path]:
    return {".".join(p.relative_to(DSE.parent).with_suffix("").parts).removesuffix(".__init__"): p
            for p in DSE.rglob("*.py")}


TORCH_FREE = sorted(set(_modules()) - TORCH_STAGES - {"dse", "dse.__main__"})


@pytest.mark.parametrize("name", TORCH_FREE)
def test_module_imports_without_torch(name):
    code = f"import sys, {name}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _imports(path: Path, module: str, top_level_only: bool = False) -> set[str]:
    """The dse modules a module imports: every import statement, also those inside functions
    (unless top_level_only), `from dse.x import y` counted as dse.x.y when y is a module."""
    mods = _modules()
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    out = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("dse")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dse"):
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.add(sub if sub in mods else node.module)
    return {i for i in out if i in mods and i not in ("dse", module)}


def _layer(module: str) -> int:
    return max(i for i, p in enumerate(ORDER) if module == p or module.startswith(p + "."))


def test_every_module_belongs_to_a_layer():
    for m in set(_modules()) - {"dse", "dse.__main__"}:
        assert any(m == p or m.startswith(p + ".") for p in ORDER), m


def test_imports_go_down_the_stated_order():
    """No module imports from a later package (imports inside functions count)."""
    upward = []
    for m, p in _modules().items():
        if m in ("dse", "dse.__main__"):
            continue
        upward += [f"{m} → {i}" for i in _imports(p, m) if _layer(i) > _layer(m)]
    assert not upward


def test_no_import_cycles():
    """Also within a package, counting imports inside functions."""
    mods = _modules()
    graph = {m: _imports(p, m) for m, p in mods.items()}
    # a package's __init__ re-exports its modules; importing the package is not a cycle
    graph = {m: {i for i in deps if not m.startswith(i + ".")} for m, deps in graph.items()}
    state = {}

    def visit(m, path):
        if state.get(m) == "done":
            return
        assert state.get(m) != "open", "import cycle: " + " → ".join(path + [m])
        state[m] = "open"
        for n in sorted(graph[m]):
            visit(n, path + [m])
        state[m] = "done"

    for m in sorted(graph):
        visit(m, [])


def test_no_module_is_too_long_to_read():
    long = {m: n for m, p in _modules().items() if (n := len(p.read_text().splitlines())) > 400}
    assert not long


def test_no_module_imports_the_cli():
    for m, p in _modules().items():
        if not m.startswith("dse.cli") and m != "dse.__main__":
            assert not any(i.startswith("dse.cli") for i in _imports(p, m)), m


def test_every_command_has_help_and_is_documented():
    from dse.cli import cli

    docs = "\n".join(p.read_text() for p in [DSE.parent / "README.md",
                                              *(DSE.parent / "docs").glob("*.md")])
    for name, cmd in cli.commands.items():
        assert cmd.help and cmd.help.strip(), name
        assert f"dse {name}" in docs, name


def test_python_m_dse(tmp_path):
    out = subprocess.run([sys.executable, "-m", "dse", "spaces", "--json"], cwd=tmp_path,
                         capture_output=True, text=True, check=True)
    assert '"name": "regnety"' in out.stdout


def test_the_command_line_starts_without_the_heavy_libraries():
    """`dse --help` and every command's parsing load no torch, scipy, pandas or pyarrow: the
    commands import what they need when they run."""
    code = ("import sys, dse.cli; print(sorted(m for m in ('torch', 'scipy', 'pandas', "
            "'pyarrow', 'matplotlib', 'submitit') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
