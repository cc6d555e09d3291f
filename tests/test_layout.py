"""The shape of the package: the pure stages load no torch, modules import each other without
cycles and stay readable, every command has help and `python -m dse` works."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

DSE = Path(__file__).resolve().parent.parent / "dse"

# Everything but the model builder, the device data, the trainer and the streamed data.
TORCH_FREE = ["errors", "rand", "regnet", "spec", "spaces", "complexity", "sampling", "schema",
              "readers", "folders", "datasets", "recipe", "store", "claims", "analysis",
              "fitlinear", "workers", "processes", "runner", "progress", "plots", "report",
              "files", "cluster",
              "zoo", "speedfit", "export", "cli.compare",
              "experiment", "expect", "pipeline", "suggest", "refine", "cli.run",
              "cli", "cli.common", "cli.sample", "cli.train", "cli.analyze"]


def _modules() -> dict[str, Path]:
    return {".".join(p.relative_to(DSE.parent).with_suffix("").parts).removesuffix(".__init__"): p
            for p in DSE.rglob("*.py")}


@pytest.mark.parametrize("name", TORCH_FREE)
def test_module_imports_without_torch(name):
    code = f"import sys, dse.{name}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_module_is_listed_torch_free_or_is_a_torch_stage():
    torch_stages = {"dse.models", "dse.data", "dse.train", "dse.stream", "dse.concurrent",
                    "dse.references", "dse.speed"}
    others = set(_modules()) - {"dse", "dse.__main__"} - torch_stages
    assert others == {f"dse.{m}" for m in TORCH_FREE}


def _top_level_imports(path: Path, package: str) -> set[str]:
    """dse modules imported at module level (not inside functions)."""
    out = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("dse")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dse"):
            mods = _modules()
            for a in node.names:  # `from dse import store` imports the module dse.store
                sub = f"{node.module}.{a.name}"
                out.add(sub if sub in mods else node.module)
    return out - {package}


def test_no_import_cycles():
    mods = _modules()
    graph = {m: {i for i in _top_level_imports(p, m) if i in mods and i != "dse"}
             for m, p in mods.items()}
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
    long = {m: n for m, p in _modules().items() if (n := len(p.read_text().splitlines())) > 420}
    assert not long


def test_no_module_imports_the_cli():
    for m, p in _modules().items():
        if not m.startswith("dse.cli") and m != "dse.__main__":
            assert not any(i.startswith("dse.cli") for i in _top_level_imports(p, m)), m


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
