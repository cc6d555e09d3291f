"""The shape of the package: the pure stages load no torch, modules import each other down
the stated order and without cycles, every command has help and `python -m dse` works. Each
check is a function over a package tree, shown to fail on a small tree that breaks it."""

import ast
import os
import subprocess
import sys
from pathlib import Path

DSE = Path(__file__).resolve().parent.parent / "dse"

# The packages in the order they may import each other: a module imports only from its own
# package or from one earlier in this list (define → data → store → train → run → analyze →
# the method → the paper's comparisons → the command line).
ORDER = ["dse.errors", "dse.units", "dse.files", "dse.system", "dse.space", "dse.data",
         "dse.store", "dse.train", "dse.runner", "dse.analysis", "dse.method", "dse.compare",
         "dse.cli"]

# The modules that import torch when imported; every other module must not.
TORCH_STAGES = {"dse.train.models", "dse.train.step", "dse.train.trainer", "dse.train.multistream",
                "dse.train.fused",
                "dse.data.device", "dse.data.ondisk", "dse.compare.references",
                "dse.compare.speed"}


def _modules(root: Path = DSE) -> dict[str, Path]:
    """Module name → file, for the package at `root`."""
    return {".".join(p.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__"): p
            for p in root.rglob("*.py")}


TORCH_FREE = sorted(set(_modules()) - TORCH_STAGES - {"dse", "dse.__main__"})


def _torch_importers(names, path: Path = DSE.parent) -> list[str]:
    """The modules among `names` that load torch, in one interpreter: each is imported in
    turn, and the first after which torch is loaded is named (it, or a module it imports,
    imports torch; the rest are then unknown, so the check stops there)."""
    code = ("import importlib, sys\n"
            f"for name in {list(names)!r}:\n"
            "    importlib.import_module(name)\n"
            "    if 'torch' in sys.modules:\n"
            "        print(name)\n"
            "        break\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=path, env={**os.environ, "PYTHONPATH": str(path)})
    return out.stdout.split()


def test_pure_modules_import_without_torch():
    assert _torch_importers(TORCH_FREE) == []


def _imports(path: Path, module: str, top_level_only: bool = False, mods=None) -> set[str]:
    """The package's modules a module imports: every import statement, also those inside
    functions (unless top_level_only), `from p.x import y` counted as p.x.y when y is a
    module."""
    mods = _modules() if mods is None else mods
    top = module.split(".")[0]
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    out = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith(top)}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(top):
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.add(sub if sub in mods else node.module)
    return {i for i in out if i in mods and i not in (top, module)}


def _layer(module: str, order=ORDER) -> int:
    return max(i for i, p in enumerate(order) if module == p or module.startswith(p + "."))


def test_every_module_belongs_to_a_layer():
    for m in set(_modules()) - {"dse", "dse.__main__"}:
        assert any(m == p or m.startswith(p + ".") for p in ORDER), m


def _upward(root: Path = DSE, order=ORDER) -> list[str]:
    """Imports from a later package (imports inside functions count)."""
    mods, top = _modules(root), root.name
    out = []
    for m, p in mods.items():
        if m in (top, f"{top}.__main__"):
            continue
        out += [f"{m} → {i}" for i in _imports(p, m, mods=mods)
                if _layer(i, order) > _layer(m, order)]
    return out


def _cycle(root: Path = DSE) -> list[str]:
    """One import cycle (also within a package, counting imports inside functions), or []."""
    mods = _modules(root)
    graph = {m: _imports(p, m, mods=mods) for m, p in mods.items()}
    # a package's __init__ re-exports its modules; importing the package is not a cycle
    graph = {m: {i for i in deps if not m.startswith(i + ".")} for m, deps in graph.items()}
    state, found = {}, []

    def visit(m, path):
        if found or state.get(m) == "done":
            return
        if state.get(m) == "open":
            found.extend(path[path.index(m):] + [m])
            return
        state[m] = "open"
        for n in sorted(graph[m]):
            visit(n, path + [m])
        state[m] = "done"

    for m in sorted(graph):
        visit(m, [])
    return found


def test_imports_go_down_the_stated_order():
    assert _upward() == []


def test_no_import_cycles():
    assert _cycle() == []


def test_the_checks_fail_on_a_tree_that_breaks_them(tmp_path):
    """A cycle inside a package, an import from a later package (inside a function) and a
    pure module that loads torch (a stand-in torch module) are each found."""
    pkg = tmp_path / "toy"
    for path, text in {"__init__.py": "", "a/__init__.py": "", "b/__init__.py": "",
                       "a/one.py": "from toy.a import two\n",
                       "a/two.py": "def f():\n    from toy.a import one\n",
                       "a/pure.py": "import toy.a.heavy\n", "a/heavy.py": "import torch\n",
                       "b/low.py": "def g():\n    from toy.b import high\n",
                       "b/high.py": ""}.items():
        (pkg / path).parent.mkdir(parents=True, exist_ok=True)
        (pkg / path).write_text(text)
    (tmp_path / "torch.py").write_text("")
    assert _cycle(pkg) == ["toy.a.one", "toy.a.two", "toy.a.one"]
    assert _upward(pkg, ["toy.b.low", "toy.a", "toy.b.high"]) == ["toy.b.low → toy.b.high"]
    assert _torch_importers(["toy.a.one", "toy.a.pure", "toy.a.two"], tmp_path) == ["toy.a.pure"]
    (pkg / "a" / "two.py").write_text("")
    assert _cycle(pkg) == []


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


def test_the_command_line_runs_openblas_on_one_thread_unless_told_otherwise():
    """numpy's BLAS threads cost more than they give on dse's small matrices: the command line
    sets OPENBLAS_NUM_THREADS=1 before numpy loads, and keeps a value the user set."""
    code = ("import os, sys; import dse.cli; print(os.environ['OPENBLAS_NUM_THREADS'], "
            "'numpy' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    for given, want in ((None, "1 True"), ("2", "2 True")):
        e = env if given is None else {**env, "OPENBLAS_NUM_THREADS": given}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True, env=e)
        assert out.stdout.strip() == want
