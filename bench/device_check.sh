#!/usr/bin/env bash
# GPU checks of the proxy trainer: one short script that fits ONE device call (≤ 540 s).
#
#   PYTHONPATH=. bash bench/device_check.sh            # on the GPU machine, python3 with torch
#   PYTHONPATH=. bash bench/device_check.sh --cpu-tiny # the same stages, tiny, on this CPU
#
# Stages in priority order (STAGES="env tests correct bench stall fused" by default), each under
# its own time limit and writing its log to $OUT (default ./device-out) as it goes, so a
# run cut short still returns what finished. Time budget on one H100/H200 (seconds):
#   env       5   card, driver, memory, compute mode (MPS / exclusive), torch
#   tests    60   the GPU tests (pytest -m gpu): graph+bf16 vs eager fp32, divergence in a
#                 graph, several models on CUDA streams, streamed ImageNet
#   correct  90   Fashion-MNIST (all 60k), models at the default window: CUDA graph + bf16 vs
#                 eager fp32, same seed and recipe; test errors must agree within ~1.5 points
#   bench   250   bench/train_throughput.py on a CIFAR-shaped synthetic set (50k × 3×32×32
#                 in the official format), 8 models × 1 epoch: --jobs 1/2/4/8 as worker
#                 processes and as CUDA streams, channels-last on/off at the best setting,
#                 then dse vs the DataLoader baseline on 2 of the models (the ratio)
#   stall    90   cut down: dse train on Fashion-MNIST, 2 deep models, 5 epochs, --paper vs
#                 the defaults
#   fused    60   last: bench/fused_speed.py --device cuda, K = 8 fused trials (graph +
#                 bf16) of a CIFAR-window model against 8 separate ones, --jobs 1 and 4 each
#   total   555   (+ start-up of the machine, not counted by the device call's limit of 600)
# Not in the default list, for a second call (STAGES="env speed"):
#   speed    90   `dse speed` on the GPU: every RegNetX/RegNetY and EfficientNet-B0…B5 at
#                 batch 64 as the paper, inference, fp32 and bf16: the R² of time against
#                 flops and against activations (the paper's speed argument, DDS §5)
# Fashion-MNIST is read from ./data/fashion-mnist (copy Debian's four .gz files there and
# carry `data`), DSE_DATA, or /usr/share/datasets/fashion-mnist; without it `correct` and
# `stall` are skipped with a note.
set -u
PY=${PYTHON:-python3}
OUT=${OUT:-./device-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:-.}
STAGES=${STAGES:-env tests correct bench stall fused}

TINY=0
[ "${1:-}" = "--cpu-tiny" ] && TINY=1
if [ $TINY = 1 ]; then
  DEV=cpu; C_N=1; C_EPOCHS=1; C_SUBSET=2000
  B_ARGS="--dataset cifar10 --fake-cifar 2000 --train-subset 0 --n 2 --flops 0.5M:2M"
  B_ARGS="$B_ARGS --epochs 1 --workers 2"
  S_N=2; S_DEPTH=1; S_FLOPS=0.5M:2M; S_ARGS="--epochs 1 --train-subset 1000"; LIMIT=600
  S_LIMIT=300
  JOBS=${JOBS:-1 2}
else
  DEV=cuda; C_N=2; C_EPOCHS=3; C_SUBSET=0
  B_ARGS="--dataset cifar10 --fake-cifar 50000 --train-subset 0 --flops default --n 8"
  B_ARGS="$B_ARGS --epochs 1 --workers 8"
  S_N=2; S_DEPTH=20; S_FLOPS=22.5M:25M; S_ARGS="--epochs 5"; LIMIT=90; S_LIMIT=40
fi
JOBS=${JOBS:-1 2 4 8}

stage() { case " $STAGES " in *" $1 "*) return 0;; *) return 1;; esac; }
log() { echo "== $* ($(date -u +%H:%M:%S))" | tee -a "$OUT/summary.txt"; }

if stage env; then
  log env
  { nvidia-smi --query-gpu=name,driver_version,memory.total,compute_mode --format=csv 2>&1 \
      || true
    $PY -c "import torch, platform; print('torch', torch.__version__, 'cuda',
torch.version.cuda, 'available', torch.cuda.is_available(),
torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor())"
    nproc; } 2>&1 | tee "$OUT/env.txt" | tee -a "$OUT/summary.txt"
fi

if stage tests; then
  log "tests (pytest -m gpu)"
  timeout 60 $PY -m pytest -q -p no:cacheprovider -m gpu tests/test_train.py \
    tests/test_concurrent.py tests/test_stream.py tests/test_fused.py 2>&1 \
    | tail -5 | tee "$OUT/tests.txt" | tee -a "$OUT/summary.txt"
fi

if stage correct; then
  log "correct: graph+bf16 vs eager fp32 on Fashion-MNIST ($C_N models, $C_EPOCHS epochs each)"
  timeout $LIMIT $PY - "$DEV" "$C_N" "$C_EPOCHS" "$C_SUBSET" <<'EOF' 2>&1 | tee "$OUT/correct.txt" | tail -8 >> "$OUT/summary.txt"
import sys
import torch
from dse.data import device as data
from dse.data import datasets
from dse.space import sampling
from dse.space import definition as spaces
from dse.errors import DseError
from dse.space.spec import AnyNetSpec
from dse.train.trainer import Recipe, device_name, train

dev, n, epochs, subset = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
try:
    arrays = datasets.load("fashion-mnist")
except DseError as e:
    sys.exit(f"skipped: {e}")
task = datasets.task("fashion-mnist")
W = sampling.Window
window = W(*datasets.default_flops_window("fashion-mnist")) if dev == "cuda" else W(5e5, 2e6)
rows = sampling.sample(spaces.load("rx"), n, task, window, W(), W(), seed=1)
d = data.DeviceData(arrays, dev, subset or None)
recipe = Recipe(epochs=epochs)
print(f"{device_name(torch.device(dev))}: {n} model(s), {epochs} epoch(s) on {d.n_train} images")
worst = 0.0
for r in rows:
    spec = AnyNetSpec(tuple(r["ds"]), tuple(r["ws"]), tuple(r["bs"]), tuple(r["gs"]))
    fast = train(spec, task, d, recipe)                                  # graph + bf16 on CUDA
    ref = train(spec, task, d, recipe, amp=False, cuda_graph=False)      # eager fp32
    gap = abs(fast["error"] - ref["error"])
    worst = max(worst, gap)
    print(f"{r['model_id']} {r['flops'] / 1e6:5.1f} MF  fast {fast['error']:6.2f}% "
          f"({fast['images_per_second']:7.0f} img/s, graph={fast['cuda_graph']}, "
          f"{fast['precision']})  eager-fp32 {ref['error']:6.2f}% "
          f"({ref['images_per_second']:7.0f} img/s)  |Δ| {gap:.2f}")
print(f"largest |Δ error| {worst:.2f} points: {'OK' if worst <= 1.5 else 'CHECK'}")
EOF
fi

if stage bench; then
  log "bench: --jobs $JOBS, processes vs streams ($B_ARGS --device $DEV)"
  for mode in processes streams; do
    for j in $JOBS; do
      [ $DEV = cpu ] && [ $mode = streams ] && continue  # streams need CUDA
      timeout 60 $PY bench/train_throughput.py $B_ARGS --device $DEV --skip-baseline \
        --jobs $j --concurrency $mode --json "$OUT/bench_${mode}_$j.json" 2>&1 \
        | tee "$OUT/bench_${mode}_$j.txt" | tail -1 | sed "s/^/$mode --jobs $j: /" \
        >> "$OUT/summary.txt"
    done
  done
  if [ $DEV = cuda ]; then  # the memory format on our grouped convs: NHWC vs the default
    log "bench: channels-last on, --jobs 4 processes"
    timeout 40 $PY bench/train_throughput.py $B_ARGS --device $DEV --skip-baseline --jobs 4 \
      --channels-last on 2>&1 | tee "$OUT/bench_nhwc.txt" | tail -1 >> "$OUT/summary.txt"
  fi
  log "bench: dse vs the DataLoader baseline, 2 models"
  timeout 90 $PY bench/train_throughput.py ${B_ARGS/--n 8/--n 2} --device $DEV \
    --json "$OUT/bench.json" 2>&1 | tee "$OUT/bench.txt" | tail -4 >> "$OUT/summary.txt"
fi

if stage speed; then
  log "speed: dse speed over the zoo and EfficientNet-B0…B5 ($DEV)"
  if [ $TINY = 1 ]; then
    SP_NAMES="RegNetX-200MF RegNetY-200MF efficientnet_b0"
    SP_ARGS="--batch-size 2 --iters 2 --warmup 1 --resolution 64"
  else
    SP_NAMES="$(for x in X Y; do for f in 200MF 400MF 600MF 800MF 1.6GF 3.2GF 4.0GF 6.4GF \
      8.0GF 12GF 16GF 32GF; do printf 'RegNet%s-%s ' $x $f; done; done)"
    SP_NAMES="$SP_NAMES efficientnet_b0 efficientnet_b1 efficientnet_b2 efficientnet_b3"
    SP_NAMES="$SP_NAMES efficientnet_b4 efficientnet_b5"
    SP_ARGS="--batch-size 64"
  fi
  for prec in fp32 bf16; do
    extra=$([ $prec = bf16 ] && echo --bf16 || true)
    timeout 45 $PY -m dse speed $SP_NAMES --device $DEV $SP_ARGS $extra \
      --json > "$OUT/speed_$prec.json" 2> "$OUT/speed_$prec.err"
    $PY - "$OUT/speed_$prec.json" "$prec" <<'EOF' 2>&1 | tee -a "$OUT/summary.txt"
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except (OSError, ValueError) as e:
    sys.exit(f"{sys.argv[2]}: no result ({e})")
f = r["fits"]
print(f"{sys.argv[2]} on {r['device']}: {len(r['models'])} models; R² flops "
      f"{f['flops']['r2']:.3f} (slope {f['flops']['slope']:.2f}), acts {f['acts']['r2']:.3f} "
      f"(slope {f['acts']['slope']:.2f})")
EOF
  done
fi

if stage stall; then
  log "stall: dse train --paper vs defaults on Fashion-MNIST, $S_N deep models, $S_ARGS"
  S=$(mktemp -d)
  {
    if $PY -c "from dse import datasets; datasets.load('fashion-mnist')" 2>/dev/null; then
      # the first $S_N models with >= $S_DEPTH blocks of `dse sample --space rx --seed 1`
      $PY - "$S" "$S_N" "$S_DEPTH" "$S_FLOPS" <<'EOF'
import shutil
import sys
import pyarrow.parquet as pq
from dse.data import datasets
from dse.space import sampling
from dse.space import definition as spaces
from dse.store.core import Store
s, n, depth, flops = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
space, task = spaces.load("rx"), datasets.task("fashion-mnist")
rows = sampling.sample(space, 4 * n, task, sampling.parse_window(flops), sampling.Window(),
                       sampling.Window(), 1)
Store(f"{s}/all").add_models(space, "fashion-mnist", task, rows, 1)
m = Store(f"{s}/all").read_models("regnetx")
keep = m.index[m.ds.apply(sum) >= depth][:n].to_numpy()
for name in ("paper", "default"):
    shutil.copytree(f"{s}/all/regnetx", f"{s}/{name}/regnetx")
    pq.write_table(pq.read_table(f"{s}/all/regnetx/models.parquet").take(keep),
                   f"{s}/{name}/regnetx/models.parquet")
print(f"{len(keep)} models with >= {depth} blocks")
EOF
      J=$([ $DEV = cuda ] && echo 4 || echo 1)
      timeout $S_LIMIT $PY -m dse train --store "$S/paper" \
        --device $DEV --jobs $J --paper $S_ARGS
      timeout $S_LIMIT $PY -m dse train --store "$S/default" \
        --device $DEV --jobs $J $S_ARGS
      $PY - "$S" <<'EOF'
import sys
import pandas as pd
from dse.store.core import Store
s = sys.argv[1]
m = Store(f"{s}/paper").read_models("regnetx").set_index("model_id")
p = Store(f"{s}/paper").read_results("regnetx").set_index("model_id")
d = Store(f"{s}/default").read_results("regnetx").set_index("model_id")
t = pd.DataFrame({"depth": m.ds.apply(sum), "ws": m.ws.apply(list), "paper": p.error,
                  "default": d.error, "paper_loss": p.train_loss, "default_loss": d.train_loss,
                  "paper_s": p.train_seconds, "default_s": d.train_seconds})
print(t.to_string())
print(f"mean error: paper {p.error.mean():.2f}%, default {d.error.mean():.2f}%; worst: paper "
      f"{p.error.max():.2f}%, default {d.error.max():.2f}%")
EOF
    else
      echo "skipped: Fashion-MNIST not found (copy it to ./data/fashion-mnist and carry data)"
    fi
  } 2>&1 | tee "$OUT/stall.txt" | tail -3 >> "$OUT/summary.txt"
  rm -rf "$S"
fi

if stage fused; then
  log "fused: K fused trials against K separate ones ($DEV)"
  if [ $DEV = cuda ]; then F_ARGS="--ks 8 --jobs 1,4"; else F_ARGS="--ks 2 --jobs 1,2"; fi
  timeout 60 $PY bench/fused_speed.py --device $DEV --windows cifar --models 1 --rounds 1 \
    --seconds 3 $F_ARGS 2>&1 | tee "$OUT/fused.txt" | grep "^| cifar" >> "$OUT/summary.txt"
fi

log done
cat "$OUT/summary.txt"
