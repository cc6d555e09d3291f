"""Every command in the README runs as written, and its shown output is real. `dse train`
lines are exercised by tests/test_cli_train.py (they train for minutes)."""

import shlex
from pathlib import Path

from click.testing import CliRunner

from dse.cli import cli

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
FAST = {"spaces", "describe", "sample", "status", "compact", "verify"}
PNG_1PX = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                        "1f15c4890000000d49444154789c6360f80f000001010100189dd9600000"
                        "000049454e44ae426082")
ANALYSIS = {"edf", "fit-linear", "trends", "search-efficiency", "report"}


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


REGIMES = "--by regime"  # the block of regimes, splits and stores: its own store layout


def _commands(kinds, regimes: bool | None = None):
    """The README's `dse` commands of these kinds (only those of the regimes block, or none
    of it, when `regimes` says so)."""
    for block in _blocks("bash"):
        if regimes is not None and (REGIMES in block) != regimes:
            continue
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("dse ") and shlex.split(line)[1] in kinds:
                yield shlex.split(line)[1:]


def test_readme_commands_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DSE_STORE", str(tmp_path / "runs"))
    for block in _blocks("yaml"):  # the space files of the examples (# my_space.yaml: ...)
        name = block.split()[1].rstrip(":")
        if block.startswith("# ") and name.endswith(".yaml") and "/" not in name:
            (tmp_path / name).write_text(block)
    for split in ("train", "val"):  # the image folder of the `--dataset folder` example
        for c in ("daisy", "rose", "tulip"):
            (tmp_path / "flowers" / split / c).mkdir(parents=True)
            (tmp_path / "flowers" / split / c / "1.png").write_bytes(PNG_1PX)
    commands = list(_commands(FAST))
    assert {c[0] for c in commands} == FAST
    for args in commands:
        r = CliRunner().invoke(cli, args)
        assert r.exit_code == 0, (args, r.output)


def test_readme_spaces_table_is_current():
    shown = next(b for b in _blocks("") if b.split()[:2] == ["space", "alias"])
    assert CliRunner().invoke(cli, ["spaces"]).output.strip() == shown.strip()


def test_readme_describe_output_is_current():
    shown = next(b for b in _blocks("") if b.startswith("part "))
    out = CliRunner().invoke(cli, ["describe", "--spec", '{"kind":"regnet","depth":22,"w0":24,'
                                   '"wa":24.48,"wm":2.54,"group_w":16}']).output
    table = shown.strip().split("\n\n")[0]
    assert out.startswith(table)


def test_readme_analysis_commands_run(tmp_path, monkeypatch):
    """On a store of AnyNetX_A and AnyNetX_E models with recorded errors (E better)."""
    import numpy as np

    from dse.store.core import Store

    monkeypatch.chdir(tmp_path)
    root = tmp_path / "runs"
    monkeypatch.setenv("DSE_STORE", str(root))
    rng = np.random.default_rng(0)
    for space, base in (("anynetxa", 14.0), ("anynetxe", 12.0)):
        r = CliRunner().invoke(cli, ["sample", "--space", space, "--n", "150", "--dataset",
                                     "fashion-mnist", "--flops", "1M:3M"])
        assert r.exit_code == 0, r.output
        for mid in Store(root).read_models(space)["model_id"]:
            Store(root).write_result(space, dict(model_id=mid, space=space, status="done",
                                                 error=base + rng.normal(0, 1), epochs=1))
    commands = [c for c in _commands(ANALYSIS, regimes=False)
                if TRIALS_STORE not in c]  # those: test_readme_trials_commands_run
    assert {c[0] for c in commands} == ANALYSIS
    for args in commands:
        r = CliRunner().invoke(cli, args)
        assert r.exit_code == 0, (args, r.output)
    assert (root / "analysis" / "edf_anynetxa_anynetxe.png").is_file()
    assert (root / "report.html").is_file()


def test_readme_regime_commands_run(tmp_path, monkeypatch):
    """The regimes block on its two stores: RegNetX sampled in two windows (its sample
    lines), a CIFAR-10 store beside it, recorded errors with a penalty on g = 1."""
    import numpy as np

    from dse.store.core import Store

    monkeypatch.chdir(tmp_path)
    commands = list(_commands(ANALYSIS | FAST | {"train", "transfer"}, regimes=True))
    assert {c[0] for c in commands} == {"sample", "train", "trends", "edf", "transfer"}
    for args in (c for c in commands if c[0] == "sample"):
        assert CliRunner().invoke(cli, args).exit_code == 0, args
    r = CliRunner().invoke(cli, ["sample", "--space", "rx", "--n", "30", "--flops", "1M:4M",
                                 "--store", "runs/cifar"])
    assert r.exit_code == 0, r.output
    rng = np.random.default_rng(0)
    for root, base in (("runs/fmnist", 12.0), ("runs/cifar", 20.0)):
        store = Store(root)
        for _, m in store.read_models("regnetx").iterrows():
            store.write_result("regnetx", dict(model_id=m["model_id"], space="regnetx",
                                               status="done", epochs=1,
                                               error=base + rng.normal(0, 1)
                                               + 1.5 * (m["group_w"] == 1)))
    for args in (c for c in commands if c[0] not in ("sample", "train")):
        r = CliRunner().invoke(cli, args)
        assert r.exit_code == 0, (args, r.output)
    assert (tmp_path / "runs/fmnist/regnetx/analysis/trends_regimes.png").is_file()


TRIALS_STORE = "experiments/results/findings-cpu"  # the trials block's committed store
TRIALS = {"fidelity", "noise", "curves", "edf"}


def test_readme_trials_commands_run(tmp_path, monkeypatch):
    """The trials block, on a store laid out as the one it names: RegNetX models trained
    under epochs=2 (two seeds each) and under epochs=8 (per-epoch curves recorded)."""
    import numpy as np

    from dse.store.core import Store
    from dse.train.recipe import Recipe

    commands = [c for c in _commands(TRIALS) if TRIALS_STORE in c]
    assert {c[0] for c in commands} == TRIALS
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli, ["sample", "--space", "rx", "--n", "12", "--dataset",
                                 "fashion-mnist", "--flops", "1M:3M", "--store", TRIALS_STORE])
    assert r.exit_code == 0, r.output
    store, rng = Store(TRIALS_STORE), np.random.default_rng(0)
    for k, mid in enumerate(store.read_models("regnetx")["model_id"]):
        for epochs, seeds in ((2, 2), (8, 1)):
            recipe = {f: v for f, v in Recipe(epochs=epochs).asdict().items() if f != "seed"}
            base = 20.0 + k - epochs / 2
            for seed in range(seeds):
                err = base + rng.normal(0, 0.5)
                curve = list(np.linspace(err + 10, err, epochs)) if epochs == 8 else None
                store.write_result("regnetx", dict(
                    model_id=mid, space="regnetx", status="done", error=err, seed=seed,
                    history_error=curve, **recipe))
    for args in commands:
        r = CliRunner().invoke(cli, args)
        assert r.exit_code == 0, (args, r.output)
