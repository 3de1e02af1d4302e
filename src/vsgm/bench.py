"""``vsgm bench``: how close the model code runs to this machine's limit, measured in one run.

Everything is timed on the same machine in the same process, so the ratios
(fractions of the machine's limit, measured in the same run: the fastest of a large matmul and a
large 3x3 convolution, see ``vsgm.peak``) mean something on shared, noisy hardware; absolute
numbers mean something on a dedicated GPU.
"""

from __future__ import annotations

import platform
import time
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from . import fused
from .losses import dsm_loss_at
from .models import TrainedModel
from .options import option
from .peak import Limit, fraction, measure_limit, settle
from .precision import DTYPES, resolve_precision
from .scorer_table import SCORER_TABLE
from .sde import VESDE
from .timing import best_time
from .unet import UNetModel
from .unet_config import UNetConfig


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call as torch's flop counter sees them (matmuls and convolutions)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def _model(options: dict[str, Any], channels: int, size: int, device: torch.device) -> UNetModel:
    torch.manual_seed(0)
    return UNetModel(UNetConfig.from_options(options, channels, size)).to(device)


def bench_train(options, channels, size, batch, device, repeats, autocast) -> dict[str, float]:
    """Training step (forward, backward, AdamW, EMA) images/s and FLOPs per step, as ``vsgm train`` runs it
    (the same micro-batches, optimizer and EMA update)."""
    from accelerate import Accelerator

    from .losses import dsm_draws
    from .models import micro_batch_size
    from .step import accumulate_dsm_gradients, adamw, update_ema

    acc = Accelerator(cpu=device.type == "cpu", mixed_precision=autocast)
    net = _model(options, channels, size, device)
    ema = _model(options, channels, size, device).requires_grad_(False)
    opt = adamw(net.parameters(), 1e-4, option("decay").default, device)
    sde = VESDE(options["sigma"])
    x = torch.randn(batch, channels, size, size, device=device)
    t, noise = dsm_draws(x)
    micro = micro_batch_size({**options, "batch_size": batch}, size, device)

    def step():
        accumulate_dsm_gradients(acc, net, sde, x, t, noise, None, micro)
        opt.step()
        opt.zero_grad(set_to_none=True)
        update_ema(ema, net, 0.999)

    flops = count_flops(lambda: dsm_loss_at(net, sde, x, t, noise).mean().backward())
    opt.zero_grad(set_to_none=True)
    seconds = best_time(step, device, repeats)
    return {"train_images_per_s": batch / seconds, "train_flops_per_step": flops, "train_step_s": seconds,
            "train_micro_batch": micro}


@torch.no_grad()
def bench_inference(options, channels, size, batch, device, repeats, autocast_dtype) -> dict[str, float]:
    net = _model(options, channels, size, device).eval()
    x = torch.randn(batch, channels, size, size, device=device)
    t = torch.full((batch,), 500.0, device=device)

    def fwd():
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            net(x, t)

    flops = count_flops(lambda: net(x, t))
    seconds = best_time(fwd, device, repeats)
    return {"inference_images_per_s": batch / seconds, "inference_flops_per_batch": flops, "inference_s": seconds}


def feature_table(cfg, rows: int, seed: int) -> pd.DataFrame:
    """Random features under the column names ``outlier_features`` writes (for timing the scorers)."""
    loss_names, norm_names = cfg.columns()
    names = [*loss_names, *norm_names, "bpd"]
    return pd.DataFrame(np.random.default_rng(seed).normal(size=(rows, len(names))), columns=names)


@torch.no_grad()
def bench_scorers(options, channels, size, batch, device, repeats, table_rows: int = 2000) -> dict[str, float]:
    """Out-of-distribution scoring images/s per scorer: the network passes behind its features (the loss at
    5 times, score norms at 10 levels, bits/dim by the probability-flow ODE), plus its scoring of a
    feature table (fitted once per model on the training images, so not counted)."""
    from .ood import FeatureConfig, bpd_feature, image_noise, level_times, loss_features, score_norm_features

    net = _model(options, channels, size, device).eval()
    model = TrainedModel(net, options, {"channels": channels, "size": size})
    cfg = FeatureConfig(bpd=True)
    x = torch.rand(batch, channels, size, size, device=device) * 2 - 1
    noise = image_noise(tuple(x.shape), 0, len(cfg.loss_times), 0, device)
    times = level_times(model, cfg)
    seconds_per_image = {
        "loss": best_time(lambda: loss_features(model, x, cfg.loss_times, 1, noise), device, repeats) / batch,
        "norms": best_time(lambda: score_norm_features(model, x, times), device, repeats) / batch,
        # 40 score evaluations, each with a backward pass: one timed call
        "bpd": best_time(lambda: bpd_feature(model, x, cfg, 0), device, 1, warmup=0) / batch,
    }
    train, target = feature_table(cfg, table_rows, 0), feature_table(cfg, table_rows, 1)
    out = {"score_loss_times": len(cfg.loss_times), "score_msma_levels": cfg.levels, "score_bpd_steps": cfg.bpd_steps}
    for entry in SCORER_TABLE:
        scorer = entry.load()().fit(train)
        table = best_time(lambda: scorer.score(target), torch.device("cpu"), repeats) / table_rows
        out[f"score_{entry.name}_images_per_s"] = 1 / (sum(seconds_per_image[p] for p in entry.passes) + table)
    return out


@torch.no_grad()
def bench_samplers(options, channels, size, batch, device, names) -> dict[str, float]:
    """Seconds per score evaluation of each sampler (a few steps, untrained network)."""
    from .samplers import SamplerSettings, sample, warm_up
    from .score_function import make_score_fn

    net = _model(options, channels, size, device).eval()
    sde = VESDE(options["sigma"])
    score = make_score_fn(net, sde)
    out = {}
    for name in names:
        g = torch.Generator(device=device).manual_seed(0)
        shape = (batch, channels, size, size)
        res = sample(score, sde, shape, name, SamplerSettings(num_steps=4, atol=1e-3, rtol=1e-3), generator=g,
                     device=device, warmup=warm_up(score, shape, device))
        out[f"sampler_{name}_s_per_nfe"] = res.seconds / max(res.nfe, 1)
    return out


def measure_limits(dev: torch.device, autocast: str, repeats: int) -> dict[str, Limit]:
    """The fp32 limit, and the limit of the reduced precision in use (where the device has it natively)."""
    limits = {"fp32": measure_limit(dev, torch.float32, repeats)}
    if autocast != "no":
        limits[autocast] = measure_limit(dev, DTYPES[autocast], repeats)
    return limits


def add_fractions(result: dict[str, Any], limits: dict[str, Limit], autocast: str, dev: torch.device,
                  repeats: int) -> None:
    """Training and inference as fractions of the limit of the dtype in use (at most 1: see peak.settle) and
    of the fp32 limit (above 1 where reduced precision beats anything fp32 can do)."""
    rates = {"train": result["train_flops_per_step"] / result["train_step_s"],
             "inference": result["inference_flops_per_batch"] / result["inference_s"]}
    used = "fp32" if autocast == "no" else autocast
    for limit in limits.values():  # measured again after the model timings; the higher rates are kept
        limit.remeasure(dev, repeats)
    result["limit_from_model_rate"] = settle(limits[used], list(rates.values()),
                                             lambda: limits[used].remeasure(dev, repeats))
    result["limits"] = {name: {"matmul_flops": lim.matmul, "conv_flops": lim.conv, "limit_flops": lim.flops,
                               "kernel": lim.kernel} for name, lim in limits.items()}
    for name, rate in rates.items():
        result[f"{name}_fraction_of_limit"] = fraction(rate, limits[used])
        result[f"{name}_fraction_of_fp32_limit"] = rate / limits["fp32"].flops


def run_bench(options: dict[str, Any], channels: int, size: int, batch: int, device: str, repeats: int,
              samplers: list[str], sampler_batch: int, autocast: str) -> dict[str, Any]:
    """Measure everything; see the module docstring."""
    from .data import loader_throughput

    dev = torch.device(device)
    autocast = resolve_precision(autocast, dev, "--autocast")
    result: dict[str, Any] = {
        "machine": platform.node(), "processor": platform.processor() or platform.machine(),
        "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "image": [channels, size, size],
        "batch_size": batch, "autocast": autocast,
        "group_norm_silu": "fused kernel" if dev.type == "cpu" and fused.native() is not None else "PyTorch ops",
        "model": {k: options[k] for k in ("model_channels", "num_res_blocks", "channel_mult",
                                          "attention_resolutions", "num_head_channels")}}
    limits = measure_limits(dev, autocast, repeats)
    result.update(bench_train(options, channels, size, batch, dev, repeats, autocast))
    result.update(bench_inference(options, channels, size, batch, dev, repeats, DTYPES[autocast]))
    add_fractions(result, limits, autocast, dev, repeats)
    # the feature passes hold 5 and 10 copies of each image: a smaller batch keeps their memory near training's
    result.update(bench_scorers(options, channels, size, max(batch // 8, 1), dev, repeats))
    # compare at the same number of forward images: the loss pass runs batch/8 images x 5 times
    per_time = result["inference_images_per_s"] / result["score_loss_times"]
    result["score_loss_vs_inference_per_time"] = result["score_loss_images_per_s"] / per_time
    result.update(bench_samplers(options, channels, size, sampler_batch, dev, samplers))
    result["loader_images_per_s"] = loader_throughput(size=32, channels=channels, batch_size=batch, device=device)
    return result


def _fractions(r: dict[str, Any], name: str) -> str:
    used = "fp32" if r["autocast"] == "no" else r["autocast"]
    text = f"{r[f'{name}_fraction_of_limit']:.2f} of the {used} limit"
    if used != "fp32":
        text += f", {r[f'{name}_fraction_of_fp32_limit']:.2f} of fp32's"
    return text


def format_table(r: dict[str, Any]) -> str:
    """The README's table."""
    rows = [(f"{name} limit ({lim['kernel']}; matmul {lim['matmul_flops'] / 1e9:,.0f}, "
             f"3x3 conv {lim['conv_flops'] / 1e9:,.0f})", f"{lim['limit_flops'] / 1e9:,.0f} GFLOP/s", "")
            for name, lim in r["limits"].items()]
    rows += [
        (f"training step (fwd+bwd+AdamW+EMA, chunks of {r['train_micro_batch']})",
         f"{r['train_images_per_s']:,.1f} images/s", _fractions(r, "train")),
        ("inference (forward)", f"{r['inference_images_per_s']:,.1f} images/s", _fractions(r, "inference")),
        *[(f"OOD {e.name} score ({e.bench.format(**r)})", f"{r[f'score_{e.name}_images_per_s']:,.1f} images/s",
           f"{r['score_loss_vs_inference_per_time']:.2f} x inference/{r['score_loss_times']}" if e.name == "loss"
           else "") for e in SCORER_TABLE],
        ("data loader (prepared cache, 32x32)", f"{r['loader_images_per_s']:,.0f} images/s", ""),
    ]
    rows += [(f"sampler {k[len('sampler_'):-len('_s_per_nfe')]}", f"{v * 1e3:,.1f} ms per NFE", "")
             for k, v in r.items() if k.startswith("sampler_")]
    width = max(len(a) for a, _, _ in rows)
    head = (f"vsgm bench on {r['device']}, torch {r['torch']}, {r['date']}; image {'x'.join(map(str, r['image']))}, "
            f"batch {r['batch_size']}, autocast {r['autocast']}; GroupNorm+SiLU: {r['group_norm_silu']}")
    lines = [head, *[f"  {a:<{width}}  {b:>22}  {c}" for a, b, c in rows]]
    if r["limit_from_model_rate"]:
        lines.append("  note: the kernels measured below the model's own rate every time (a busy machine?); "
                     "the limit is that rate")
    return "\n".join(lines)
