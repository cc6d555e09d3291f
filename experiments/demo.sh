#!/usr/bin/env bash
# The README's main job, end to end: sample AnyNetX_A and AnyNetX_E on Fashion-MNIST, train
# them briefly, and compare the two design spaces (EDF + KS, fit-linear, HTML report).
#
#   experiments/demo.sh                    CPU size: a few small models each, minutes-scale
#   DEMO_SIZE=gpu experiments/demo.sh      100 models per space at the paper-scaled flops window
#
# Re-running resumes: a space that already has models is not sampled again and `dse train`
# only trains models without a result. Any preset value can be overridden:
#   DEMO_STORE (runs/demo)  DEMO_N  DEMO_FLOPS  DEMO_EPOCHS  DEMO_SUBSET (empty = all 60k)
#   DEMO_BATCH  DEMO_DEVICE  DEMO_JOBS  DSE (the dse executable)
set -euo pipefail
cd "$(dirname "$0")/.."

DSE=${DSE:-.venv/bin/dse}
[ -x "$DSE" ] || DSE=dse

case "${DEMO_SIZE:-cpu}" in
  cpu)  n=8;   flops=1M:2M;     epochs=2;  subset=6000; batch=64;  device=cpu;  jobs=2 ;;
  gpu)  n=100; flops=22.5M:25M; epochs=10; subset=;     batch=128; device=cuda; jobs=4 ;;
  *)    echo "DEMO_SIZE must be cpu or gpu (got ${DEMO_SIZE})" >&2; exit 2 ;;
esac
store=${DEMO_STORE:-runs/demo}
n=${DEMO_N:-$n}
flops=${DEMO_FLOPS:-$flops}
epochs=${DEMO_EPOCHS:-$epochs}
subset=${DEMO_SUBSET-$subset}
batch=${DEMO_BATCH:-$batch}
device=${DEMO_DEVICE:-$device}
jobs=${DEMO_JOBS:-$jobs}

echo "== dse demo: $n models per space, flops $flops, $epochs epochs on" \
     "${subset:-all} Fashion-MNIST images, $device, store $store"

for space in anynetxa anynetxe; do
  if [ -f "$store/$space/models.parquet" ]; then
    echo "$space: already sampled in $store (delete $store to start over)"
  else
    "$DSE" sample --space "$space" --n "$n" --dataset fashion-mnist --flops "$flops" \
      --seed 0 --store "$store"
  fi
done

"$DSE" train --space anynetxa --space anynetxe --epochs "$epochs" \
  ${subset:+--train-subset "$subset"} --batch-size "$batch" --device "$device" \
  --jobs "$jobs" --store "$store"

"$DSE" status --store "$store"
echo
"$DSE" edf compare anynetxa anynetxe --store "$store" --out "$store/edf.png"
echo
"$DSE" fit-linear --space anynetxe --top 5 --store "$store"
echo
"$DSE" report --store "$store" --out "$store/report.html"
echo
echo "== done: open $store/report.html (EDF figure: $store/edf.png)"
