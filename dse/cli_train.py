"""`dse train` and `dse status`: registered on the `dse` group (see dse.cli).

Option defaults repeat dse.train.Recipe's (a test keeps them equal) so that `dse --help`
does not import torch.
"""

from __future__ import annotations

import json

import click

from dse.cli import STORE_HELP, _table, cli

DATA_HELP = ("Where datasets live [default: $DSE_DATA or ./data; Fashion-MNIST also from "
             "/usr/share/datasets/fashion-mnist].")


@cli.command("train")
@click.option("--space", "spaces", multiple=True,
              help="Space to train (repeatable) [default: every space in the store].")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--device", default="auto", show_default=True,
              help="auto, cpu, cuda (every GPU) or cuda:N.")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Models trained at once per device (worker processes).")
@click.option("--max-models", type=click.IntRange(min=1), default=None,
              help="Train at most K models, then stop [default: all pending].")
@click.option("--store", "store_path", default=None, help=STORE_HELP)
@click.option("--data-dir", default=None, help=DATA_HELP)
@click.option("--download", is_flag=True,
              help="Download a missing dataset through torchvision (needs the network).")
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=0.05,
              show_default=True, help="Peak learning rate (half-period cosine to 0).")
@click.option("--wd", type=click.FloatRange(min=0), default=5e-5, show_default=True,
              help="Weight decay.")
@click.option("--momentum", type=click.FloatRange(min=0, max=1, max_open=True), default=0.9,
              show_default=True, help="Nesterov momentum.")
@click.option("--warmup", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Linear learning-rate warm-up, in epochs.")
@click.option("--zero-gamma/--no-zero-gamma", default=True, show_default=True,
              help="Start each block's final BN γ at 0 (the paper starts every γ at 1).")
@click.option("--paper", is_flag=True,
              help="The paper's exact recipe: every BN γ = 1 and no warm-up "
                   "(overrides --zero-gamma and --warmup).")
@click.option("--no-augment", is_flag=True, help="Train without pad + crop (+ flip).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Training seed (init, shuffling, augmentation).")
@click.option("--train-subset", type=click.IntRange(min=1), default=None,
              help="Train on N images (a fixed subset) instead of the whole train split.")
@click.option("--retry-failed", is_flag=True,
              help="Also train models whose stored result is `failed`.")
@click.option("--fp32", is_flag=True, help="On CUDA: fp32 instead of bf16 autocast.")
@click.option("--no-cuda-graph", is_flag=True, help="On CUDA: run each step eagerly.")
@click.option("--channels-last/--no-channels-last", default=None,
              help="NHWC memory format [default: on for CPU, off for CUDA].")
@click.option("--claim-timeout", type=click.FloatRange(min=1), default=300.0, hidden=True,
              help="Seconds without a heartbeat after which another run's claim is stale.")
def train_cmd(spaces, epochs, device, jobs, max_models, store_path, data_dir, download,
              batch_size, lr, wd, momentum, warmup, zero_gamma, paper, no_augment, seed,
              train_subset, retry_failed, fp32, no_cuda_graph, channels_last, claim_timeout):
    """Train the sampled models that have no result yet (proxy recipe, docs/training.md)."""
    import signal

    from dse import runner, store
    from dse.train import Recipe

    def terminate(signum, frame):  # unwind like Ctrl-C: the claims in flight are given back
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)

    recipe = Recipe(epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum, wd=wd,
                    warmup_epochs=warmup, zero_init_final_gamma=zero_gamma,
                    augment=not no_augment, seed=seed, train_subset=train_subset)
    if paper:
        recipe = recipe.paper()
    runner.run(store.root(store_path), spaces, recipe, device=device, jobs=jobs,
               max_models=max_models, data_dir=data_dir, download=download,
               retry_failed=retry_failed, amp=False if fp32 else None,
               cuda_graph=False if no_cuda_graph else None, channels_last=channels_last,
               claim_timeout=claim_timeout, report=runner.Progress(epochs=epochs))


@cli.command("status")
@click.option("--store", "store_path", default=None, help=STORE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def status_cmd(store_path, as_json):
    """Per space: sampled / done / diverged / failed / pending (and in flight) models."""
    from dse import runner, store

    rows = runner.status(store.root(store_path))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"no sampled models in {store.root(store_path)}")
        return
    keys = ["space", "dataset", "sampled", "done", "diverged", "failed", "pending",
            "in_flight"]
    if len(rows) > 1:
        rows = rows + [dict(space="total", dataset="",
                            **{k: sum(r[k] for r in rows) for k in keys[2:] + ["stale_claims"]})]
    if any(r["stale_claims"] for r in rows):
        keys.append("stale_claims")
    click.echo(_table(rows, keys, [k.replace("_", " ") for k in keys]))
