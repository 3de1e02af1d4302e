"""Measurements of .ci/gpu-check.sh that need a trained model, one process each (so CUDA starts once):

  python .ci/gpu_measure.py samplers CHECKPOINT OUT.csv   NFE, seconds and ms per NFE of the benchmark's
                                                          samplers at its settings (16 samples, tol 1e-6)
  python .ci/gpu_measure.py features CHECKPOINT DATA OUT.json
                                                          feature images/s with and without bits/dim at the
                                                          benchmark's batch size, and CPU-vs-CUDA agreement

Times come from vsgm.timing (CUDA synchronised, one warm-up off the clock).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import torch
import yaml

from vsgm.data import load_prepared
from vsgm.models import load_trained
from vsgm.ood import FeatureConfig, outlier_features
from vsgm.samplers import SamplerSettings, parse_sampler
from vsgm.sample_batches import draw
from vsgm.timing import timed

BENCHMARK = yaml.safe_load((Path(__file__).resolve().parents[1] / "config/benchmark.yaml").read_text())


def samplers(checkpoint: str, out: str) -> None:
    """One row per sampler of config/benchmark.yaml: nfe, seconds, ms_per_nfe (written after each row)."""
    model = load_trained(checkpoint, "cuda")
    s = BENCHMARK["sample"]
    rows = []
    for name in BENCHMARK["samplers"]:
        settings = SamplerSettings(num_steps=s["num_steps"], eps=model.options["eps"], snr=s["snr"], atol=s["atol"],
                                   rtol=s["rtol"])
        _, cost = draw(model, parse_sampler(name), s["num_samples"], s["batch_size"], settings, device="cuda")
        rows.append({"sampler": name, "nfe": cost["nfe"], "seconds": cost["seconds"],
                     "ms_per_nfe": 1000 * cost["seconds"] / max(cost["nfe"], 1)})
        pd.DataFrame(rows).to_csv(out, index=False)
        print(rows[-1], flush=True)


def features(checkpoint: str, data: str, out: str) -> None:
    """Feature images/s (loss + score norms; and with bits/dim) on CUDA, and the largest CPU-vs-CUDA
    difference of each feature column on 64 images (fp32 both)."""
    images = load_prepared(data).images
    f = BENCHMARK["features"]
    batch = f["batch_size"]
    model = load_trained(checkpoint, "cuda")
    result = {"batch_size": batch}
    for bpd, n in ((False, min(len(images), 8 * batch)), (True, min(len(images), batch))):
        cfg = FeatureConfig(levels=f["levels"], bpd=bpd, bpd_steps=f["bpd_steps"])
        _, seconds = timed(lambda: outlier_features(model, images[:n], cfg, batch, "cuda", progress=False), "cuda",
                           warmup=lambda: outlier_features(model, images[:batch], cfg, batch, "cuda", progress=False))
        result[f"images_per_s{'_bpd' if bpd else ''}"] = n / seconds
        print(result, flush=True)
    cfg = FeatureConfig(levels=f["levels"], bpd=True, bpd_steps=f["bpd_steps"])
    gpu = outlier_features(model, images[:64], cfg, 64, "cuda", progress=False)
    cpu = outlier_features(load_trained(checkpoint, "cpu"), images[:64], cfg, 64, "cpu", progress=False)
    diff = (gpu - cpu).abs().max()
    result["cpu_vs_cuda_max_abs_diff"] = {k: float(v) for k, v in diff.items() if k != "index"}
    result["cpu_vs_cuda_max_rel_diff"] = {k: float(((gpu[k] - cpu[k]).abs() / cpu[k].abs().clip(lower=1e-12)).max())
                                          for k in cpu.columns if k != "index"}
    Path(out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    if not torch.cuda.is_available():
        sys.exit("gpu_measure.py: no CUDA device (torch.cuda.is_available() is False)")
    {"samplers": samplers, "features": features}[sys.argv[1]](*sys.argv[2:])
