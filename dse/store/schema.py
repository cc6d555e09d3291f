"""The columns of the store's Parquet tables (pure). Documented in docs/store.md and
docs/training.md; columns are only ever added, never renamed or removed."""

from __future__ import annotations

import pyarrow as pa

_ints = pa.list_(pa.int64())
MODELS_SCHEMA = pa.schema([
    ("model_id", pa.string()),      # 16 hex of sha1(architecture + task)
    ("space", pa.string()),
    ("kind", pa.string()),          # anynet | regnet
    ("ds", _ints), ("ws", _ints), ("bs", _ints), ("gs", _ints),  # per stage, after rounding
    ("d", pa.int64()), ("w0", pa.int64()), ("wa", pa.float64()), ("wm", pa.float64()),
    ("group_w", pa.int64()), ("b", pa.int64()),  # RegNet parameters; null for AnyNet
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
])


# What makes two definitions of a space the same population (titles may change freely).
DEFINITION_KEYS = ("kind", "stages", "se_ratio", "params", "shared", "non_decreasing")


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
])

RESULT_STATUSES = ("done", "diverged", "failed")

# What identifies a result, whichever file holds it: readers keep one row per key. Key columns
# may be added (never removed); a per-model file's name is not part of the key.
RESULT_KEY = ("model_id",)
