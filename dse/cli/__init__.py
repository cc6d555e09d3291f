"""The `dse` command line: a thin click layer over the library, one command per stage.

Commands are plain click commands in the modules of this package (sample: spaces, describe,
sample; train: train, status, cancel, compact, verify; analyze: edf, fit-linear, trends,
search-efficiency, report; importance: importance; compare: zoo, speed, export; run: run, plan,
suggest, transfer; trials: fidelity, noise, curves, halving; interop: import), attached
to the group here and nowhere else; they import what they need inside the command,
so `dse --help` loads no torch. Shared options and error handling: dse.cli.common.
"""

from __future__ import annotations

import os

# numpy's and scipy's OpenBLAS on one thread unless the user says otherwise (read once, when
# numpy loads, which the commands below do): dse's matrices are small (tens to hundreds of
# columns) and OpenBLAS's threads cost more than they give on them (2026-12-07, 2 cores: a
# batch of 201 solves of 150 × 150 took 1.31 s of CPU with 2 threads, 0.03 s with one; the
# report's importance sections at 2 × 10,000 models 30.5 s of CPU → 3.2 s). torch uses
# its own BLAS and threads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import click  # noqa: E402

from dse.cli import analyze, compare, importance, interop, run, sample, train, trials  # noqa: E402
from dse.cli.common import Group  # noqa: E402


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dse", message="dse %(version)s")
def cli():
    """dse: sample, train and analyze populations of networks from design spaces."""


for command in (sample.spaces_cmd, sample.describe_cmd, sample.sample_cmd,
                train.train_cmd, train.status_cmd, train.cancel_cmd, train.compact_cmd,
                train.verify_cmd,
                analyze.edf_group, analyze.fit_linear_cmd, analyze.trends_cmd,
                analyze.search_efficiency_cmd, analyze.report_cmd, importance.importance_cmd,
                compare.zoo_cmd, compare.speed_cmd, compare.export_cmd,
                run.run_cmd, run.plan_cmd, run.suggest_cmd, run.transfer_cmd,
                trials.fidelity_cmd, trials.noise_cmd, trials.curves_cmd, trials.halving_cmd,
                interop.import_cmd):
    cli.add_command(command)


def main():
    cli(prog_name="dse")
