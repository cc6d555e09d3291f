"""The `dse` command line: a thin click layer over the library, one command per stage.

Commands are plain click commands in the modules of this package (sample: spaces, describe,
sample; train: train, status, cancel, compact, verify; analyze: edf, fit-linear, trends,
search-efficiency, report; importance: importance; compare: zoo, speed, export; run: run, plan,
suggest, transfer; trials: fidelity, noise, curves; interop: import), attached
to the group here and nowhere else; they import what they need inside the command,
so `dse --help` loads no torch. Shared options and error handling: dse.cli.common.
"""

from __future__ import annotations

import click

from dse.cli import analyze, compare, importance, interop, run, sample, train, trials
from dse.cli.common import Group


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
                trials.fidelity_cmd, trials.noise_cmd, trials.curves_cmd, interop.import_cmd):
    cli.add_command(command)


def main():
    cli(prog_name="dse")
