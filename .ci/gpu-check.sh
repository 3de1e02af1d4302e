#!/usr/bin/env bash
# The checks and measurements that need a GPU, in one command of at most 10 minutes on a bare GPU
# machine (CI has none). Steps run in order of value; a step runs only when the time left covers its
# limit, so later ones are skipped (and summary.txt says so) when time runs short:
#   1. the machine, and the start-up of a GPU job (python, torch, vsgm, the CUDA context);
#   2. `vsgm bench` of the seed's default UNet (1x32x32, batch 128) in fp32 and in bf16 autocast:
#      training and inference images/s, scorer images/s, seconds per NFE;
#   3. `vsgm train` with the seed's defaults on 4410 photo patches at 1x32x32 (MNIST's shape, shipped
#      offline), eager, fp32 then bf16: images/s per epoch (the seed's MNIST target: >= 10,000 images/s);
#   4. NFE and ms per NFE of every sampler of config/benchmark.yaml at its settings (16 samples,
#      tolerances 1e-6), with the fp32 model of step 3;
#   5. feature images/s with and without bits/dim at the benchmark's batch size, and CPU-vs-CUDA
#      agreement of every feature column;
#   6. the training, resume, sampler, timing and UNet tests on CUDA (deterministic algorithms on);
#   7. `vsgm train` compiled, bf16.
# Returns 8 files in $OUT (default gpu-check/): machine.txt summary.txt bench-fp32.json
# bench-bf16.json train.csv samplers.csv features.json tests.log. Everything else goes to a scratch
# folder that is removed. BUDGET_S (default 540 s) is the time it may take.
# Uses the Python that has the project's dependencies (PYTHON, default python3); installs nothing.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-check}
budget=${BUDGET_S:-540}
py=${PYTHON:-python3}
export PYTHONPATH=src PYTHONUNBUFFERED=1
mkdir -p "$out"
summary="$out/summary.txt"
: > "$summary"

if ! $py -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu-check: no CUDA device here (torch.cuda.is_available() is False, or $py has no torch);" \
       "run it on a machine with a GPU" | tee -a "$summary" >&2
  exit 2
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# step NAME LIMIT_S LOG COMMAND...: run COMMAND under `timeout LIMIT_S` if that much time is left
step() {
  local name=$1 limit=$2 log=$3 t0=$SECONDS rc
  shift 3
  local left=$((budget - SECONDS))
  if ((left < limit)); then
    echo "$name: skipped (${left} s left, needs ${limit})" | tee -a "$summary"
    return 1
  fi
  timeout -k 5 "$limit" "$@" > "$log" 2>&1
  rc=$?
  echo "$name: rc $rc in $((SECONDS - t0)) s" | tee -a "$summary"
  ((rc == 0)) || tail -n 5 "$log" | sed 's/^/  | /' >> "$summary"
  return $rc
}

# 1. machine and job start-up
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  $py -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
  date -u +%Y-%m-%d
  t0=$EPOCHREALTIME
  $py -c "import torch, vsgm.cli, vsgm.train; torch.zeros(1, device='cuda').sum().item()"
  awk -v a="$t0" -v b="$EPOCHREALTIME" \
    'BEGIN { printf "job start-up (python, torch, vsgm, CUDA context): %.1f s\n", b - a }'
} > "$out/machine.txt" 2>&1
cat "$out/machine.txt"

# 2. bench, fp32 and bf16
for prec in fp32 bf16; do
  autocast=no; [ "$prec" = bf16 ] && autocast=bf16
  step "bench $prec" 90 "$work/bench-$prec.log" \
    $py -m vsgm.cli bench --device cuda --autocast "$autocast" --repeats 5 --out "$out/bench-$prec.json"
done

# 3. eager training, fp32 then bf16 (the fp32 model serves steps 4 and 5)
data=$work/photos/train.safetensors test=$work/photos/test.safetensors
step "prepare" 60 "$work/prepare.log" bash -c "$py -m vsgm.cli prepare --dataset photos --split train --size 32 \
  --channels 1 --out $data && $py -m vsgm.cli prepare --dataset photos --split test --size 32 --channels 1 --out $test"
train() {  # MODE [flags]: 20 epochs, rows appended to train.csv with the mode in front
  local mode=$1
  shift
  step "train $mode" "$TRAIN_LIMIT" "$work/train-$mode.log" $py -m vsgm.cli train --data "$data" \
    --out_dir "$work/train-$mode" --n_epochs 20 --warmup 1 --no_wandb --sample_and_save_freq 1000 "$@" || return
  [ -s "$out/train.csv" ] || sed -n '1s/^/mode,/p' "$work/train-$mode/train.csv" > "$out/train.csv"
  sed -n "2,\$s/^/$mode,/p" "$work/train-$mode/train.csv" >> "$out/train.csv"
}
TRAIN_LIMIT=90 train eager-fp32 --mixed_precision no
TRAIN_LIMIT=90 train eager-bf16 --mixed_precision bf16
model=$work/train-eager-fp32/model.safetensors

# 4. samplers, 5. features (need the model)
if [ -s "$model" ]; then
  step "samplers" 120 "$work/samplers.log" $py .ci/gpu_measure.py samplers "$model" "$out/samplers.csv"
  step "features" 90 "$work/features.log" $py .ci/gpu_measure.py features "$model" "$test" "$out/features.json"
else
  echo "samplers, features: skipped (no trained model)" | tee -a "$summary"
fi

# 6. the tests on CUDA
step "tests" 150 "$out/tests.log" $py -m pytest -q -p no:cacheprovider -m "not slow" \
  tests/test_train.py tests/test_reliability.py tests/test_samplers.py tests/test_timing.py tests/test_unet.py

# 7. compiled training
TRAIN_LIMIT=150 train compiled-bf16 --mixed_precision bf16 --compile

echo "total: $SECONDS s of ${budget}" | tee -a "$summary"
