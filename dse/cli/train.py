"""Training: `dse train` and `dse status`. Option defaults come from dse.recipe, so the help
shows the recipe without importing torch."""

from __future__ import annotations

import json

import click

from dse.cli.common import Command, json_option, store_option, table
from dse.recipe import Recipe, TrainOptions

R, T = Recipe(), TrainOptions()
DATA_HELP = ("Where datasets live [default: $DSE_DATA or ./data; Fashion-MNIST also from "
             "/usr/share/datasets/fashion-mnist].")


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
@click.option("--seed", type=int, default=R.seed, show_default=True,
              help="Training seed (init, shuffling, augmentation).")
@click.option("--train-subset", type=click.IntRange(min=1), default=None,
              help="Train on N images (a fixed subset) instead of the whole train split.")
@click.option("--retry-failed", is_flag=True,
              help="Also train models whose stored result is `failed`.")
@click.option("--fp32", is_flag=True, help="On CUDA: fp32 instead of bf16 autocast.")
@click.option("--no-cuda-graph", is_flag=True, help="On CUDA: run each step eagerly.")
@click.option("--channels-last/--no-channels-last", default=None,
              help="NHWC memory format [default: on for CPU, off for CUDA].")
@click.option("--claim-timeout", type=click.FloatRange(min=1), default=T.claim_timeout,
              hidden=True,
              help="Seconds without a heartbeat after which another run's claim is stale.")
def train_cmd(spaces, epochs, device, jobs, concurrency, max_models, store_path, data_dir, download,
              skip_bad_images, cache_dir, batch_size, lr, wd, momentum, warmup_epochs,
              zero_init_final_gamma, paper, no_augment, seed, train_subset, retry_failed, fp32,
              no_cuda_graph, channels_last, claim_timeout):
    """Train the sampled models that have no result yet (proxy recipe, docs/training.md)."""
    import signal

    from dse import runner
    from dse.progress import Progress
    from dse.store import Store

    def terminate(signum, frame):  # unwind like Ctrl-C: the claims in flight are given back
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)

    recipe = Recipe(epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum, wd=wd,
                    warmup_epochs=warmup_epochs, zero_init_final_gamma=zero_init_final_gamma,
                    augment=not no_augment, seed=seed, train_subset=train_subset)
    if paper:
        recipe = recipe.paper()
    options = TrainOptions(recipe=recipe, device=device, jobs=jobs, concurrency=concurrency,
                           max_models=max_models,
                           retry_failed=retry_failed, data_dir=data_dir, download=download,
                           skip_bad_images=skip_bad_images, cache_dir=cache_dir,
                           amp=False if fp32 else None,
                           cuda_graph=False if no_cuda_graph else None,
                           channels_last=channels_last, claim_timeout=claim_timeout)
    runner.run(Store(store_path), spaces, options, report=Progress(epochs=epochs))


@click.command("status", cls=Command)
@store_option
@json_option("Print a JSON list instead of a table.")
def status_cmd(store_path, as_json):
    """Per space: sampled / done / diverged / failed / pending (and in flight) models, and
    any damaged file."""
    from dse import runner
    from dse.store import Store

    store = Store(store_path)
    rows = runner.status(store)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"no sampled models in {store}")
        return
    keys = ["space", "dataset", "sampled", "done", "diverged", "failed", "pending",
            "in_flight"]
    extra = [k for k in ("stale_claims", "damaged") if any(r[k] for r in rows)]
    if len(rows) > 1:
        rows = rows + [dict(space="total", dataset="",
                            **{k: sum(r[k] for r in rows) for k in keys[2:] + extra})]
    click.echo(table(rows, keys + extra, [k.replace("_", " ") for k in keys + extra]))
    damaged = [(f, r["error"]) for r in rows if r.get("damaged_files")
               for f in r["damaged_files"]]
    if damaged:
        click.echo("\ndamaged files (never changed by dse; `dse train` moves a damaged result "
                   "aside and trains its model again):")
        for f, error in damaged:
            click.echo(f"  {f}" + ("  (models.parquet: the space cannot be used until it "
                                   "is restored)" if error else ""))
