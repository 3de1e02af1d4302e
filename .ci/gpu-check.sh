#!/usr/bin/env bash
# The checks that need a GPU, in one short run on a machine that has one (CI has none):
#   1. the library's training, resume, sampler and UNet tests, which run on CUDA when it is there
#      (the trainer takes the GPU through accelerate). The bit-for-bit resume tests hold on a CPU;
#      cuDNN's backward is not deterministic, so on a GPU their failure says how far the runs drift;
#   2. `vsgm bench` of the seed's default UNet on 1x32x32, batch 128, bf16 autocast;
#   3. `vsgm train` with the seed's defaults and bf16 on 4410 photo patches at 1x32x32 (MNIST's
#      shape, shipped offline), eager and compiled: images/s per epoch in train.csv (the seed's
#      MNIST target: >= 10,000 images/s, 100 epochs in under 10 minutes).
# Uses the Python that has torch, accelerate, torchdiffeq, pandas, scikit-learn, safetensors and
# pytest; installs nothing. Writes everything to $OUT (default: gpu-check/).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-check}
mkdir -p "$out"
export PYTHONPATH=src PYTHONUNBUFFERED=1
py=${PYTHON:-python3}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  $py -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
  date -u +%Y-%m-%d; } 2>&1 | tee "$out/machine.txt"

timeout 150 $py -m pytest -q -p no:cacheprovider -m "not slow" \
  tests/test_train.py tests/test_reliability.py tests/test_samplers.py tests/test_unet.py 2>&1 | tee "$out/tests.log"

timeout 150 $py -m vsgm.cli bench --device cuda --autocast bf16 --repeats 5 --out "$out/bench.json" 2>&1 \
  | tee "$out/bench.txt"

data=resources/prepared/photos/train-32px-1ch.safetensors
$py -m vsgm.cli prepare --dataset photos --split train --size 32 --channels 1 --out "$data" > /dev/null || exit 1
for mode in eager compile; do
  flags=(); [ "$mode" = compile ] && flags=(--compile)
  timeout 120 $py -m vsgm.cli train --data "$data" --out_dir "$out/train-$mode" --n_epochs 20 --warmup 1 \
    --mixed_precision bf16 --no_wandb --sample_and_save_freq 1000 "${flags[@]}" > "$out/train-$mode.log" 2>&1
  echo "train $mode: rc $?"; cp "$out/train-$mode/train.csv" "$out/train-$mode.csv" 2>/dev/null
  rm -rf "$out/train-$mode"  # the weights need not come back
done
