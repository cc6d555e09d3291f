"""Every foundation command in the README runs as written, and its shown output is real."""

import shlex
from pathlib import Path

from click.testing import CliRunner

from dse.cli import cli

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
FAST = {"spaces", "describe", "sample"}


def _blocks(lang):
    """Contents of the fenced code blocks whose info string is `lang`."""
    out, current, info = [], None, None
    for line in README.splitlines():
        if line.startswith("```"):
            if current is None:
                current, info = [], line[3:].strip()
            else:
                if info == lang:
                    out.append("\n".join(current) + "\n")
                current = None
        elif current is not None:
            current.append(line)
    return out


def _commands():
    for block in _blocks("bash"):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("dse ") and shlex.split(line)[1] in FAST:
                yield shlex.split(line)[1:]


def test_readme_commands_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DSE_STORE", str(tmp_path / "runs"))
    own = next(b for b in _blocks("yaml") if b.startswith("# my_space.yaml"))
    (tmp_path / "my_space.yaml").write_text(own)
    commands = list(_commands())
    assert {c[0] for c in commands} == FAST
    for args in commands:
        r = CliRunner().invoke(cli, args)
        assert r.exit_code == 0, (args, r.output)


def test_readme_spaces_table_is_current():
    shown = next(b for b in _blocks("") if b.startswith("space     alias"))
    assert CliRunner().invoke(cli, ["spaces"]).output.strip() == shown.strip()


def test_readme_describe_output_is_current():
    shown = next(b for b in _blocks("") if b.startswith("part "))
    out = CliRunner().invoke(cli, ["describe", "--spec", '{"kind":"regnet","depth":22,"w0":24,'
                                   '"wa":24.48,"wm":2.54,"group_w":16}']).output
    table = shown.strip().split("\n\n")[0]
    assert out.startswith(table)
