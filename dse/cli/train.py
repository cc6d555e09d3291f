"""Training: `dse train` (here, or with --cluster in a job array: dse.runner.cluster), `dse status`,
`dse cancel` and `dse compact`. Option defaults come from dse.train.recipe, so the help shows
the recipe without importing torch."""

from __future__ import annotations

import json

import click

from dse.cli.common import RECIPE, Command, compose, json_option, store_option, table
from dse.errors import DseError
from dse.runner.options import (
    CLUSTERS,
    MAX_SEEDS,
    WARN_AFTER_S,
    ClusterOptions,
    TrainOptions,
    parse_slurm_args,
)
from dse.train.fusion import FUSE, FUSE_MAX
from dse.train.recipe import Recipe

R, T, C = Recipe(), TrainOptions(), ClusterOptions()
DATA_HELP = ("Where datasets live [default: $DSE_DATA or ./data; Fashion-MNIST also from "
             "/usr/share/datasets/fashion-mnist].")


def cluster_options(f):
    """The options of `dse train --cluster` (dse.train.recipe.ClusterOptions)."""
    return compose(
        click.option("--cluster", type=click.Choice(CLUSTERS), default=None,
                     help="Train in a job array through submitit: slurm, local (processes "
                          "here) or debug (in this process) [default: train here]."),
        click.option("--tasks", type=click.IntRange(min=1), default=None,
                     help="--cluster: array tasks, each training models until none is left "
                          "[default: 1]."),
        click.option("--gpus-per-task", type=click.IntRange(min=0), default=None,
                     help="--cluster: GPUs of each task [default: 0]."),
        click.option("--cpus-per-task", type=click.IntRange(min=1), default=None,
                     help="--cluster: CPU cores of each task [default: the cluster's]."),
        click.option("--mem-gb", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="--cluster: memory of each task [default: the cluster's]."),
        click.option("--partition", default=None, help="Slurm partition."),
        click.option("--time-min", type=click.IntRange(min=1), default=None,
                     help=f"--cluster: time limit of a task in minutes; it requeues itself "
                          f"near the end [default: {C.time_min}]."),
        click.option("--array-parallelism", type=click.IntRange(min=1), default=None,
                     help="Slurm: tasks running at once [default: all]."),
        click.option("--slurm-arg", "slurm_args", multiple=True, metavar="KEY=VALUE",
                     help="Slurm: an extra sbatch option, e.g. account=proj (repeatable)."),
        click.option("--max-requeues", type=click.IntRange(min=0), default=None,
                     help=f"--cluster: times a task requeues itself after preemption or its "
                          f"time limit [default: {C.max_requeues}]."),
        click.option("--wait", is_flag=True,
                     help="--cluster: show progress until the tasks end; exit 1 if one "
                          "failed."),
    )(f)


@click.command("train", cls=Command)
@click.option("--space", "spaces", multiple=True,
              help="Space to train (repeatable) [default: every space in the store].")
@click.option("--epochs", type=click.IntRange(min=1), default=R.epochs, show_default=True)
@click.option("--device", default=T.device, show_default=True,
              help="auto, cpu, cuda (every GPU) or cuda:N.")
@click.option("--jobs", type=click.IntRange(min=1), default=T.jobs, show_default=True,
              help="Models trained at once per device (worker processes).")
@click.option("--concurrency", type=click.Choice(["processes", "streams"]),
              default=T.concurrency, show_default=True,
              help="How --jobs models share a GPU: worker processes, or CUDA streams in one "
                   "process (one GPU; docs/training.md).")
@click.option("--fuse", type=click.Choice(list(FUSE)), default=T.fuse, show_default=True,
              help="Train trials of one architecture (its --seeds, lr/wd draws) as one fused "
                   f"network of up to {FUSE_MAX} copies: on, off, or auto (on where it measured "
                   "a gain: docs/training.md).")
@click.option("--max-models", type=click.IntRange(min=1), default=None,
              help="Train at most K models, then stop [default: all pending].")
@store_option
@click.option("--data-dir", default=None, help=DATA_HELP)
@click.option("--download", is_flag=True,
              help="Download a missing dataset through torchvision (needs the network).")
@click.option("--skip-bad-images", is_flag=True,
              help="folder: skip images that cannot be decoded (listed in a warning) instead "
                   "of stopping.")
@click.option("--cache-dir", default=None,
              help="folder: where decoded images are cached [default: $DSE_CACHE or "
                   "~/.cache/dse].")
@click.option("--batch-size", type=click.IntRange(min=1), default=R.batch_size,
              show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=R.lr,
              show_default=True, help="Peak learning rate (half-period cosine to 0).")
@click.option("--wd", type=click.FloatRange(min=0), default=R.wd, show_default=True,
              help="Weight decay.")
@click.option("--momentum", type=click.FloatRange(min=0, max=1, max_open=True),
              default=R.momentum, show_default=True, help="Nesterov momentum.")
@click.option("--warmup", "warmup_epochs", type=click.FloatRange(min=0),
              default=R.warmup_epochs, show_default=True,
              help="Linear learning-rate warm-up, in epochs.")
@click.option("--zero-gamma/--no-zero-gamma", "zero_init_final_gamma",
              default=R.zero_init_final_gamma, show_default=True,
              help="Start each block's final BN γ at 0 (the paper starts every γ at 1).")
@click.option("--paper", is_flag=True,
              help="The paper's exact recipe: every BN γ = 1 and no warm-up "
                   "(overrides --zero-gamma and --warmup).")
@click.option("--no-augment", is_flag=True, help="Train without pad + crop (+ flip).")
@click.option("--recipe", "settings", type=RECIPE, default=None, metavar="KEY=VALUE,...",
              help="Recipe settings, each winning over its flag; pycls's recipe: "
                   "label_smoothing, mixup_alpha, ema_alpha, ema_period, bn_wd, "
                   "warmup_factor, lr_policy (cos, lin, steps), lr_steps (epochs joined by "
                   "':'), lr_mult, min_lr; e.g. label_smoothing=0.1,mixup_alpha=0.5,"
                   "ema_alpha=0.00025,bn_wd=0 (docs/training.md).")
@click.option("--seed", type=int, default=R.seed, show_default=True,
              help="Training seed (init, shuffling, augmentation).")
@click.option("--train-subset", type=click.IntRange(min=1), default=None,
              help="Train on N images (a fixed subset) instead of the whole train split.")
@click.option("--top", type=click.IntRange(min=1), default=None, metavar="K",
              help="Only the K lowest-error models of each space (under the recipe with the "
                   "most results, seeds averaged), e.g. to train them longer (--epochs 8). "
                   "The models are chosen once and stored (<space>/selections/, listed by "
                   "dse status): a rerun with the same --top/--sample and recipe trains the "
                   "same models, whatever was trained meanwhile (docs/trials.md).")
@click.option("--sample", type=click.IntRange(min=1), default=None, metavar="M",
              help="Only M models of each space drawn at random (seeded by --sample-seed; "
                   "with --top, M more beside the top K); stored like --top's.")
@click.option("--sample-seed", type=int, default=0, show_default=True,
              help="Seed of the --sample draw.")
@click.option("--seeds", type=click.IntRange(min=1, max=MAX_SEEDS), default=None, metavar="N",
              help=f"Train seeds 0..N-1 of every chosen model (at most {MAX_SEEDS}); seeds "
                   "already trained are skipped [default: --seed only].")
@click.option("--curves", is_flag=True,
              help="Also measure the test error after every epoch (dse curves); each "
                   "evaluation costs about a pass over the test split.")
@click.option("--retry-failed", is_flag=True,
              help="Also train models whose stored result is `failed`.")
@click.option("--fp32", is_flag=True, help="On CUDA: fp32 instead of bf16 autocast.")
@click.option("--no-cuda-graph", is_flag=True, help="On CUDA: run each step eagerly.")
@click.option("--channels-last/--no-channels-last", default=None,
              help="NHWC memory format [default: on for CPU, off for CUDA].")
@click.option("--dry-run", is_flag=True,
              help="Print the plan (models, epochs, images, multiply-adds, ETA) and exit; "
                   "nothing is claimed or trained.")
@click.option("--warn-hours", type=click.FloatRange(min=0, min_open=True),
              default=WARN_AFTER_S / 3600, show_default=True,
              help="Warn, naming the options that shorten it, when the plan's ETA is longer.")
@click.option("--claim-timeout", type=click.FloatRange(min=1), default=T.claim_timeout,
              show_default=True,
              help="Seconds without a heartbeat after which a claim of a run on another host "
                   "is stale (on this host a dead pid is noticed at once).")
@cluster_options
def train_cmd(spaces, epochs, device, jobs, concurrency, fuse, max_models, store_path, data_dir,
              download, skip_bad_images, cache_dir, batch_size, lr, wd, momentum,
              warmup_epochs, zero_init_final_gamma, paper, no_augment, settings, seed,
              train_subset, top, sample,
              sample_seed, seeds, curves, retry_failed, fp32,
              no_cuda_graph, channels_last, dry_run, warn_hours, claim_timeout, cluster, wait,
              **resources):
    """Train the sampled models that have no result yet (proxy recipe, docs/training.md);
    with --cluster, in a job array of --tasks trainers on a shared store (docs/cluster.md)."""
    import signal

    from dse.runner import loop as runner
    from dse.runner.progress import Progress
    from dse.store.core import Store

    given = [f"--{k.replace('_', '-')}".replace("slurm-args", "slurm-arg")
             for k, v in resources.items() if v not in (None, ())]
    if cluster is None and (given or wait):
        raise DseError(f"{(given or ['--wait'])[0]} applies to --cluster runs only (slurm, "
                       "local or debug)")
    if cluster is not None and dry_run:
        raise DseError("--dry-run plans a run on this machine; without --cluster it shows the "
                       "work and the ETA of `dse train` here")

    def terminate(signum, frame):  # unwind like Ctrl-C: the claims in flight are given back
        raise SystemExit(128 + signum)

    if cluster is None:
        signal.signal(signal.SIGTERM, terminate)

    recipe = Recipe(epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum, wd=wd,
                    warmup_epochs=warmup_epochs, zero_init_final_gamma=zero_init_final_gamma,
                    augment=not no_augment, seed=seed, train_subset=train_subset)
    if paper:
        recipe = recipe.paper()
    recipe = with_settings(recipe, settings or {})
    options = TrainOptions(recipe=recipe, device=device, jobs=jobs, concurrency=concurrency,
                           max_models=max_models,
                           retry_failed=retry_failed, data_dir=data_dir, download=download,
                           skip_bad_images=skip_bad_images, cache_dir=cache_dir,
                           amp=False if fp32 else None,
                           cuda_graph=False if no_cuda_graph else None,
                           channels_last=channels_last, claim_timeout=claim_timeout,
                           top=top, sample=sample, sample_seed=sample_seed, seeds=seeds,
                           curves=curves, fuse=fuse)
    if cluster is None:
        report = Progress(epochs=epochs, warn_after_s=warn_hours * 3600, dry_run=dry_run)
        done = runner.run(Store(store_path), spaces, options, report=report, dry_run=dry_run)
        _health_warning(done.outcomes)
    else:
        _submit(Store(store_path), spaces, options, cluster, wait, resources)


def with_settings(recipe: Recipe, settings: dict) -> Recipe:
    """`recipe` with the settings of --recipe KEY=VALUE,... (checked as the Recipe checks
    them; `series` names a result's error series, which analyses choose, not training)."""
    from dataclasses import replace

    from dse.errors import ArgumentError

    if "series" in settings:
        raise DseError("--recipe series: a training records its model's series (and its "
                       "weight EMA's with ema_alpha > 0); analyses choose one with --recipe "
                       "series=ema")
    try:
        return replace(recipe, **settings)
    except ArgumentError as e:
        raise DseError(f"--recipe {e.param} {e.problem}") from None


def _health_warning(outcomes) -> None:
    """One Warning line when models of this run did not learn, naming the recipe's levers."""
    import warnings

    from dse.analysis import health
    from dse.errors import DseWarning

    line = health.warning(outcomes)
    if line:
        warnings.warn(line, DseWarning, stacklevel=1)


def _submit(store, spaces, options, cluster, wait, resources):
    """`dse train --cluster`: submit the array, then say where to look (or follow it)."""
    from dse.runner import cluster as cl

    kw = {k: v for k, v in resources.items() if v not in (None, ())}
    kw["slurm_args"] = parse_slurm_args(kw.get("slurm_args", ()))
    copts = ClusterOptions(cluster=cluster, **kw)
    rec = cl.submit(store, spaces, options, copts, echo=click.echo)
    ids = rec.job_ids
    if cluster != "debug":
        where = f"job {ids[0].split('_')[0]}" if cluster == "slurm" else \
            f"processes {', '.join(ids)}"
        click.echo(f"{rec.name}: {rec.tasks} task{'s' * (rec.tasks > 1)} on "
                   f"{cluster} ({where}) for {rec.pending} pending models")
        click.echo(f"logs: {rec.log_dir}")
    if cluster != "debug" and not wait:
        click.echo(f"follow: dse status --store {store}   cancel: dse cancel --store {store}")
        return
    states = cl.follow(store, rec.name, click.echo, poll=1.0 if cluster == "local" else 3.0)
    bad = [t for t in states if t.state != "done"]
    if bad:
        t = bad[0]
        click.echo(f"Error: task {t.index} (job {t.job_id}) {t.state}: {t.message}"
                   + (f"; log: {t.log}" if t.log else ""), err=True)
        raise SystemExit(1)


@click.command("status", cls=Command)
@store_option
@click.option("--jobs", "only_jobs", is_flag=True,
              help="Only the cluster jobs of the store (each task's state).")
@click.option("--runs", "only_runs", is_flag=True,
              help="Only the training runs of the store: each one's predicted and actual time.")
@json_option("Print a JSON list instead of a table.")
def status_cmd(store_path, only_jobs, only_runs, as_json):
    """Per space: sampled / done / diverged / failed / pending (and in flight) models, any
    damaged file, the models each `dse train --top/--sample` chose, the last training runs
    (their plan's time against the time they took) and the store's cluster jobs (`dse train
    --cluster`)."""
    from dse.runner import cluster, runs
    from dse.runner.pending import status
    from dse.store.core import Store

    store = Store(store_path)
    if only_runs:
        recs = runs.rows(Store.existing(store))
        if as_json:
            click.echo(json.dumps(recs, indent=2))
        else:
            _runs_table(recs) if recs else click.echo(f"no training runs recorded in {store}")
        return
    if only_jobs:
        recs = cluster.jobs(Store.existing(store))
        if as_json:
            click.echo(json.dumps([r.to_json() for r in recs], indent=2, default=str))
        else:
            _jobs_table(recs) if recs else click.echo(f"no cluster jobs in {store}")
        return
    rows = _with_health(store, status(store))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"no sampled models in {store}")
        return
    keys = ["space", "dataset", "sampled", "done", "diverged", "failed", "pending",
            "in_flight"]
    extra = [k for k in ("untrained", "stale_claims", "damaged") if any(r[k] for r in rows)]
    if len(rows) > 1:
        rows = rows + [dict(space="total", dataset="",
                            **{k: sum(r[k] for r in rows) for k in keys[2:] + extra})]
    click.echo(table(rows, keys + extra, [{"untrained": "did not learn"}.get(k, k).replace(
        "_", " ") for k in keys + extra]))
    sick = [r for r in rows if r.get("health", {}).get("untrained")]
    for r in sick:
        click.echo(f"{r['space']}: {r['health']['text']}")
    _recipes_table(store, [r for r in rows if len(r.get("recipes") or ()) > 1])
    _selections_table(rows)
    damaged = [(f, r["error"]) for r in rows if r.get("damaged_files")
               for f in r["damaged_files"]]
    if damaged:
        click.echo("\ndamaged files (never changed by dse; `dse verify` says what each cost and "
                   "--repair sets them aside; `dse train` trains what they lost again):")
        for f, error in damaged:
            click.echo(f"  {f}" + ("  (models.parquet: the space cannot be used until it "
                                   "is restored)" if error else ""))
    done_runs = runs.rows(store)
    if done_runs:
        click.echo("")
        _runs_table(done_runs, last=RUNS_SHOWN)
    recs = cluster.jobs(store)
    if recs:
        click.echo("")
        _jobs_table(recs)


RUNS_SHOWN = 10  # runs `dse status` lists (all: --runs)


def _runs_table(recs: list, last: int | None = None) -> None:
    """Training runs, oldest first: what each trained, its plan's time and the time it took
    (from reading the data to its last result)."""
    from dse.units import clock, eta

    shown = recs[-last:] if last else recs
    more = len(recs) - len(shown)
    click.echo("training runs (predicted: the plan's time when the run started; actual: "
               "what it took)" + (f", the last {len(shown)} of {len(recs)} (all: --runs)"
                                  if more else "") + ":")
    rows = [dict(started=r.get("started_at", "")[:16].replace("T", " "),
                 spaces=", ".join(r.get("spaces") or []), what=r.get("what", ""),
                 models=f"{r.get('trained', 0)}/{r.get('models', 0)}",
                 predicted=eta(r.get("predicted_s")),
                 actual=clock(r["actual_s"]) if r.get("actual_s") is not None else "",
                 ratio=f"{r['ratio']:.2f}" if r.get("ratio") else "",
                 status=r.get("status", "")) for r in shown]
    click.echo(table(rows, list(rows[0]), ["started", "spaces", "trains", "models",
                                           "predicted", "actual", "actual/predicted",
                                           "status"]))


def _with_health(store, rows: list) -> list:
    """Each status row with `untrained` (done models that did not learn: final training loss
    or error near chance, dse.analysis.health) and its `health` summary."""
    import warnings

    from dse.analysis import health

    for r in rows:
        h = None
        if r.get("done") and not r.get("error"):
            try:
                with warnings.catch_warnings():  # damaged files: the table names them
                    warnings.simplefilter("ignore")
                    h = health.health(store.load([r["space"]]))
            except DseError:
                h = None
        r["untrained"] = h.untrained if h else 0
        r["health"] = dict(h.to_json(), text=h.text()) if h else {}
    return rows


def _recipes_table(store, rows: list) -> None:
    """Per recipe, for the spaces trained under more than one: results, models, seeds."""
    from dse.store import recipes

    for r in rows:
        labels = recipes.recipes(store.read_results(r["space"])).set_index("recipe")["label"]
        click.echo(f"\n{r['space']}: {len(r['recipes'])} recipes (analyses read the first "
                   "unless --recipe names another)")
        click.echo(table([dict(x, label=labels.get(x["recipe"], "")) for x in r["recipes"]],
                         ["recipe", "label", "results", "done", "models", "seeds"]))


def _selections_table(rows: list) -> None:
    """Per space, the selections of dse train --top/--sample and the models each holds."""
    import textwrap

    for r in rows:
        sels = r.get("selections") or []
        if not sels:
            continue
        click.echo(f"\n{r['space']}: {len(sels)} selection{'s' * (len(sels) > 1)} of "
                   "dse train --top/--sample (a rerun of the same options trains these models)")
        good = [s for s in sels if s["error"] is None]
        if good:
            click.echo(table([dict(s, n=len(s["models"])) for s in good],
                             ["name", "recipe_label", "top", "sample", "n", "done"],
                             ["selection", "trains", "top", "sample", "models", "done"]))
        for s in good:
            how = [f"top {s['top']} ranked under {s['ranked_label']}" if s["top"] else "",
                   f"sample {s['sample']} (seed {s['sample_seed']})" if s["sample"] else ""]
            click.echo(f"  {s['name']}: {'; '.join(x for x in how if x)}; made "
                       f"{s['made_at']}:")
            click.echo(textwrap.fill(" ".join(s["models"]), 96, initial_indent="    ",
                                     subsequent_indent="    ",
                                     break_on_hyphens=False) if s["models"] else "    (none)")
        for s in sels:
            if s["error"] is not None:
                click.echo(f"  {s['name']}: {s['error']}")


def _jobs_table(recs: list) -> None:
    """The cluster jobs as a table, then the tasks that ended badly with why and their log."""
    rows = []
    for r in recs:
        tally: dict = {}
        for t in r.task_states:
            tally[t.state] = tally.get(t.state, 0) + 1
        ids = r.job_ids
        rows.append(dict(submission=r.name, cluster=r.cluster,
                         job=ids[0].split("_")[0] if r.cluster == "slurm" and ids else
                         ", ".join(ids), tasks=r.tasks, submitted=r.submitted_at[:19],
                         states=", ".join(f"{n} {s}" for s, n in sorted(tally.items()))))
    click.echo("cluster jobs:")
    click.echo(table(rows, list(rows[0])))
    for r in recs:
        for t in r.task_states:
            if t.state not in ("done", "running", "pending", "requeued"):
                click.echo(f"  {r.name} task {t.index} (job {t.job_id}) {t.state}: "
                           f"{t.message}" + (f"; log {t.log}" if t.log else ""))


@click.command("cancel", cls=Command)
@store_option
@click.option("--job", "name", default=None,
              help="The submission to cancel (as `dse status` names it) [default: all].")
def cancel_cmd(store_path, name):
    """Cancel the unfinished cluster jobs of a store (`dse train --cluster`); their running
    tasks give their claims back."""
    from dse.runner import cluster
    from dse.store.core import Store

    store = Store.existing(store_path)
    done = cluster.cancel(store, name)
    if not done:
        click.echo(f"no unfinished cluster jobs in {store}")
    for sub, job_id in done:
        click.echo(f"cancelled {sub} job {job_id}")


@click.command("compact", cls=Command)
@store_option
@click.option("--space", "spaces", multiple=True,
              help="Space to compact (repeatable) [default: every space in the store].")
def compact_cmd(store_path, spaces):
    """Fold each space's per-model result files into one segment (docs/store.md); `dse train`
    does this when it ends, and any command that reads many such files does it first."""
    from dse.store.core import Store

    store = Store.existing(store_path)
    names = list(dict.fromkeys(store.resolve(s) for s in spaces)) or store.spaces()
    rows = []
    for s in names:
        c = store.compact(s)
        more = f" (+{len(c.written) - 1})" if len(c.written) > 1 else ""
        rows.append(dict(space=s, results=c.results, folded=c.absorbed,
                         segment="" if c.segment is None else f"{c.segment}{more}"))
        for p in c.set_aside:
            click.echo(f"{s}: moved the damaged segment to {p} (its intact results are in "
                       "the segments written); `dse train` trains the others again")
    if not rows:
        click.echo(f"no sampled models in {store}")
        return
    click.echo(table(rows, ["space", "results", "folded", "segment"],
                     ["space", "results", "files folded", "segment written"]))


@click.command("verify", cls=Command)
@store_option
@click.option("--repair", is_flag=True,
              help="Set damaged files aside in damaged/ and rewrite what was salvaged.")
def verify_cmd(store_path, repair):
    """Read every file of a store, checksums included: per space the models, results and
    the models without a readable result (what `dse train` trains); the damaged files and what
    was salvaged. Exits non-zero while the store holds a damaged file (docs/store.md)."""
    from dse.store import verify
    from dse.store.core import Store

    store = Store.existing(store_path)
    rep = verify.check(store)
    click.echo(table([dict(space=x.space, files=x.files, models=x.models, results=x.results,
                           pending=x.pending) for x in rep.spaces],
                     ["space", "files", "models", "results", "pending"],
                     ["space", "files", "models", "results", "untrained (dse train trains)"])
               if rep.spaces else f"no spaces in {store}")
    if rep.damaged:
        click.echo("\ndamaged files:")
    for f in rep.damaged:
        if f.kind in ("result", "segment", "models"):
            unit = "models" if f.kind == "models" else "results"
            held = "an unknown number" if f.total is None else f"{f.total:,}"
            what = f"; {f.salvaged:,} of {held} {unit} salvaged"
        else:
            what = ""
        click.echo(f"  {f.path}: {f.reason}{what}")
    if repair and rep.damaged:
        click.echo("")
        for line in verify.repair(store, rep):
            click.echo(line)
        rep = verify.check(store)
    click.echo(f"\n{rep.files:,} files read; {len(rep.damaged)} damaged")
    if rep.damaged:
        raise verify.summary_error(store, rep)
