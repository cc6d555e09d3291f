"""The columns of the store's Parquet tables (pure). Documented in docs/store.md and
docs/training.md; columns are only ever added, never renamed or removed."""

from __future__ import annotations

import pyarrow as pa

from dse.store.status import Status

_ints = pa.list_(pa.int64())
MODELS_SCHEMA = pa.schema([
    ("model_id", pa.string()),      # 16 hex of sha1(architecture + task)
    ("space", pa.string()),
    ("kind", pa.string()),          # anynet | regnet
    # per stage, after rounding; bs are floats since b may be fractional (0.25: an inverted
    # bottleneck; stores written before hold integers, read the same); blocks without a
    # bottleneck have b = 1, blocks without groups g = w_b (one group)
    ("ds", _ints), ("ws", _ints), ("bs", pa.list_(pa.float64())), ("gs", _ints),
    ("d", pa.int64()), ("w0", pa.int64()), ("wa", pa.float64()), ("wm", pa.float64()),
    ("group_w", pa.int64()), ("b", pa.float64()),  # RegNet parameters; null for AnyNet
    ("se_ratio", pa.float64()),
    ("stem_w", pa.int64()),
    ("flops", pa.int64()), ("params", pa.int64()), ("acts", pa.int64()),
    ("dataset", pa.string()), ("resolution", pa.int64()), ("stem", pa.string()),
    ("in_channels", pa.int64()), ("num_classes", pa.int64()),
    ("seed", pa.int64()),           # seed of the sampling run that drew the model
    ("sample_index", pa.int64()),   # position in the space's population, from 0
    ("sampled_at", pa.timestamp("ms", tz="UTC")),
    ("dse_version", pa.string()),
    # The flop regime the model was drawn in (dse.space.regimes): its name (the window, e.g.
    # "1.5M:2M", or `dse sample --regime NAME`) and that flops window (null: an open side).
    # Null in stores sampled before regimes were recorded: read as the regime "base".
    ("regime", pa.string()), ("regime_lo", pa.float64()), ("regime_hi", pa.float64()),
    # added with block types (docs/store.md); stores written before read as the defaults
    ("block", pa.string()),            # x | r | v | vr | basic | plain (dse.space.blocks)
    ("activation", pa.string()),       # relu | silu
    ("first_stride", pa.int64()),      # stride of the first stage: 2, or 1 (NDS's CIFAR nets)
    ("data_resolution", pa.int64()),   # side of the dataset's images; `resolution` (the
                                       # model's input) is smaller when the space samples it
])

# Columns added since the first stores, with the value they stood for before they existed
# (None: the model's own `resolution`).
ADDED_MODEL_COLUMNS = {"block": "x", "activation": "relu", "first_stride": 2,
                       "data_resolution": None}


def upgrade_models(table: pa.Table) -> pa.Table:
    """A models table with every column of MODELS_SCHEMA: columns added after it was written
    take their old meaning (x blocks, ReLU, stride 2, the data's resolution)."""
    for name, value in ADDED_MODEL_COLUMNS.items():
        if name in table.column_names:
            continue
        field = MODELS_SCHEMA.field(name)
        col = (table.column("resolution") if value is None
               else pa.array([value] * table.num_rows, type=field.type))
        table = table.append_column(field, col)
    return table


def add_missing(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """A table written before some of the schema's columns existed, with those columns null
    (columns are only ever added: docs/store.md)."""
    for f in schema:
        if f.name not in table.column_names:
            table = table.append_column(f, pa.nulls(len(table), f.type))
    return table


# What makes two definitions of a space the same population (titles may change freely).
DEFINITION_KEYS = ("kind", "stages", "se_ratio", "params", "shared", "non_decreasing")
# Keys added with block types: part of a definition only where a space sets them, so the
# definitions recorded by older stores stay equal to their spaces'.
OPTIONAL_DEFINITION_KEYS = ("block", "activation", "first_stride", "stem_w", "resolution")


def definition(config: dict) -> dict:
    """The part of a space's resolved mapping that makes its population what it is."""
    return {**{k: config.get(k) for k in DEFINITION_KEYS},
            **{k: config[k] for k in OPTIONAL_DEFINITION_KEYS if k in config}}


# ---- one Parquet file per trained model ----------------------------------------------------

RESULTS_SCHEMA = pa.schema([
    ("model_id", pa.string()),
    ("space", pa.string()),
    ("status", pa.string()),            # done | diverged | failed
    ("error", pa.float64()),            # top-1 test error in percent; null unless done
    ("message", pa.string()),           # why it diverged or failed; empty when done
    ("epochs", pa.int64()),
    ("batch_size", pa.int64()),
    ("lr", pa.float64()),
    ("wd", pa.float64()),
    ("seed", pa.int64()),               # training seed
    ("dataset", pa.string()),
    ("train_subset", pa.int64()),       # training images used; null = the full train split
    ("train_seconds", pa.float64()),
    ("images_per_second", pa.float64()),
    ("train_loss", pa.float64()),       # mean loss of the final epoch
    ("device", pa.string()),
    ("torch_version", pa.string()),
    ("dse_version", pa.string()),
    ("finished_at", pa.timestamp("ms", tz="UTC")),
    # the rest of the recipe and how it ran (docs/training.md)
    ("momentum", pa.float64()),
    ("nesterov", pa.bool_()),
    ("warmup_epochs", pa.float64()),    # linear lr warm-up length; 0 = none (the paper)
    ("zero_init_final_gamma", pa.bool_()),  # each block's final BN γ started at 0 (paper: 1)
    ("augment", pa.bool_()),            # pad + random crop (+ flip on CIFAR-10)
    ("precision", pa.string()),         # bf16-autocast | fp32
    ("cuda_graph", pa.bool_()),         # training step replayed from a CUDA graph
    ("channels_last", pa.bool_()),      # NHWC memory format (CPU default)
    ("epochs_run", pa.int64()),         # epochs completed (fewer than epochs if diverged)
    ("host", pa.string()),
    # added with trials (docs/trials.md); a result written before reads its recipe from the
    # columns above (dse.store.recipes) and has no history
    ("recipe", pa.string()),            # fingerprint of the recipe's settings, seed aside
    ("history_error", pa.list_(pa.float64())),  # test error after each epoch (--curves)
    ("history_loss", pa.list_(pa.float64())),   # mean training loss of each epoch
    # added with imports (docs/interop.md): the file a result was read from (the first 16
    # hex of its sha256) and the record in it; null for results dse trained itself
    ("source", pa.string()),
    # added with pycls's recipe (docs/training.md); null in results written before: the
    # default, which is how they were trained
    ("label_smoothing", pa.float64()),  # ε of the smoothed targets; 0 = none
    ("mixup_alpha", pa.float64()),      # mixup's Beta(α, α); 0 = none
    ("ema_alpha", pa.float64()),        # weight EMA's alpha (pycls's EMA_ALPHA); 0 = none
    ("ema_period", pa.int64()),         # steps between EMA updates
    ("bn_wd", pa.float64()),            # weight decay of BN γ and β; null = wd
    ("warmup_factor", pa.float64()),    # warm-up starts at lr · factor
    ("lr_policy", pa.string()),         # cos | lin | steps
    ("lr_steps", pa.list_(pa.float64())),  # steps: the epochs where the lr steps down
    ("lr_mult", pa.float64()),          # steps: the multiplier
    ("min_lr", pa.float64()),           # cos, lin: final lr as a fraction of lr
    ("series", pa.string()),            # whose error: test (the model's; null) or ema (its
                                        # weight EMA's, a recipe of its own)
    # added with fused trials (docs/training.md): how many trials trained together as one
    # fused network (dse train --fuse); null for a trial trained alone
    ("fused", pa.int64()),
])

RESULT_STATUSES = tuple(s.value for s in Status)  # dse.store.status

# What identifies a result, whichever file holds it: readers keep one row per key. Key columns
# may be added (never removed); a per-trial file's name is not part of the key.
RESULT_KEY = ("model_id", "recipe", "seed")
