"""Where every file of a store lives (pure): `Layout` names each path under a store directory,
and nothing else in dse builds one. dse.store.core.Store adds the reads and writes.

    <store>/
      <space>/
        models.parquet                 one row per sampled model (dse.store.schema.MODELS_SCHEMA)
        models.previous.parquet        the table as it was before the last `dse sample` wrote it
        space.yaml                     the resolved space definition the models came from
        results/<model_id>.parquet     one row per trained model (RESULTS_SCHEMA), as trained
        results/segments/<gen>.parquet  many results in one file: compacted (dse.store.results)
        claims/<model_id>.json         held while a model trains (dse.runner.leases)
        damaged/<name>.<time>.<suffix> damaged files set aside by dse train, compaction and
                                       dse verify --repair (never deleted)
        selections/<name>.json         the models a dse train --top/--sample chose (selections)
        analysis/<name>.parquet|.png   analyses of this space (fit-linear, trends)
        .lock                          the space's inter-process lock
      analysis/                        figures that compare spaces (EDFs, search efficiency)
        fit_linear_cache.parquet       fits of every architecture fitted here (store.fitcache)
      report.html                      dse report
      experiments/  jobs/              experiment and cluster-job records
      runs/<name>.json                 each training run: its plan's prediction, its time

"""

from __future__ import annotations

from pathlib import Path


class Layout:
    """The paths under a store directory `root`."""

    root: Path

    def space_dir(self, space: str) -> Path:
        return self.root / space

    def models_path(self, space: str) -> Path:
        return self.root / space / "models.parquet"

    def previous_models_path(self, space: str) -> Path:
        """The models table's previous generation, kept for when the current one is damaged."""
        return self.root / space / "models.previous.parquet"

    def definition_path(self, space: str) -> Path:
        return self.root / space / "space.yaml"

    def results_dir(self, space: str) -> Path:
        return self.root / space / "results"

    def result_path(self, space: str, model_id: str) -> Path:
        return self.results_dir(space) / f"{model_id}.parquet"

    def segments_dir(self, space: str) -> Path:
        """Compacted results (dse.store.results): segments/<generation>.parquet."""
        return self.results_dir(space) / "segments"

    def segment_path(self, space: str, generation: int) -> Path:
        return self.segments_dir(space) / f"{generation:06d}.parquet"

    def claims_dir(self, space: str) -> Path:
        return self.root / space / "claims"

    def claim_path(self, space: str, model_id: str) -> Path:
        return self.claims_dir(space) / f"{model_id}.json"

    def damaged_dir(self, space: str) -> Path:
        return self.root / space / "damaged"

    def selections_dir(self, space: str) -> Path:
        """The models `dse train --top/--sample` chose (dse.store.selections)."""
        return self.root / space / "selections"

    def selection_path(self, space: str, name: str) -> Path:
        return self.selections_dir(space) / f"{name}.json"

    def analysis_dir(self, space: str | None = None) -> Path:
        """Outputs of one space's analyses, or (no space) of comparisons between spaces."""
        return (self.root / space if space else self.root) / "analysis"

    @property
    def fit_cache_path(self) -> Path:
        """The quantized linear fits of the architectures fitted in this store (fitcache)."""
        return self.analysis_dir() / "fit_linear_cache.parquet"

    def figure_path(self, name: str, spaces: list[str], suffix: str = "") -> Path:
        """Default figure of an analysis: <space>/analysis/<name>.png for one space's
        analyses, analysis/<name>_<spaces><suffix>.png for comparisons."""
        if name in ("fit_linear", "trends", "trends_regimes"):
            (space,) = spaces
            return self.analysis_dir(space) / f"{name}.png"
        return self.analysis_dir() / f"{name}_{'_'.join(spaces)}{suffix}.png"

    @property
    def report_path(self) -> Path:
        return self.root / "report.html"

    @property
    def experiments_dir(self) -> Path:
        return self.root / "experiments"

    def experiment_dir(self, name: str) -> Path:
        """One experiment's record and outputs (dse.method.pipeline): experiment.yaml,
        summary.json, the figures and report.html."""
        return self.experiments_dir / name

    def experiment_file(self, name: str) -> Path:
        """The experiment file as run (after --set)."""
        return self.experiment_dir(name) / "experiment.yaml"

    def summary_path(self, name: str) -> Path:
        return self.experiment_dir(name) / "summary.json"

    def experiment_output(self, name: str, key: str, suffix: str = ".png") -> Path:
        """A figure (or the report, key 'report' with suffix '.html') of an experiment."""
        return self.experiment_dir(name) / f"{key}{suffix}"

    def refine_dir(self, name: str) -> Path:
        """The refine loop of an experiment: its space files <start>-r<k>.yaml and chain.json."""
        return self.experiment_dir(name) / "refine"

    def refine_chain_path(self, name: str) -> Path:
        return self.refine_dir(name) / "chain.json"

    def rounds_path(self, name: str) -> Path:
        """An experiment in rounds: its schedule and every look taken (dse.method.rounds)."""
        return self.experiment_dir(name) / "rounds.json"

    @property
    def jobs_dir(self) -> Path:
        return self.root / "jobs"

    def job_dir(self, name: str) -> Path:
        """A submission of dse.runner.cluster: job.json, tasks/<k>.json, logs/."""
        return self.jobs_dir / name

    def job_record_path(self, name: str) -> Path:
        return self.job_dir(name) / "job.json"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def run_record_path(self, name: str) -> Path:
        """A training run's record (dse.runner.runs): the plan when it started, its time."""
        return self.runs_dir / f"{name}.json"

    def task_record_path(self, name: str, task: int) -> Path:
        return self.job_dir(name) / "tasks" / f"{task}.json"

    def job_logs_dir(self, name: str) -> Path:
        return self.job_dir(name) / "logs"

