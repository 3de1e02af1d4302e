"""``vsgm estimate``: the device-hours a workflow config will cost, from ``vsgm bench`` figures, before launching it.

Torch-free: it reads the config dict (``config/config.yaml``'s structure, the schema's defaults filled
in) and one or more ``vsgm bench --out`` JSON files, and counts the work of every rule of the DAG:

- ``train_model``: n_epochs x training images, at the bench's training images/s;
- ``sample_model``: score evaluations (NFE) x num_samples per sampler, at the bench's inference images/s;
- ``sample_sweep``: the same for every sweep setting (steps, or tolerances for the adaptive solvers);
- ``ood_features``: per image of each feature set (the model's train subset, its test split, each
  out-of-distribution set), the loss pass, the score-norm pass and bits/dim at the bench's scoring rates;
- ``sample_classifier``: the quality classifier's epochs x images at its FLOPs per image, at the
  FLOP rate the bench's training step reached;
- every job pays a start-up (python, torch, the CUDA context: ``startup_s``); the table-only jobs
  (``data_prepare``, ``sample_quality``, ``ood_score``, ``ood_pair``) are counted by their start-up alone.

NFE of the adaptive solvers depends on the trained network: the defaults below are the 1-D oracle's
(a trained network took more), so give measured ones with ``--nfe NAME=N`` where known.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .data.registry import get_info
from .replicates import base_of
from .sampler_names import ADAPTIVE_SOLVERS, is_sampler_name
from .workflow import Plan

# start-up of one job on a GPU node: python, torch, vsgm and the CUDA context (README: about 15 s)
STARTUP_S = 15.0
# score evaluations per step of the fixed-step samplers (as vsgm.samplers.NFE_PER_STEP; Adams: about)
NFE_PER_STEP = {"em": 1, "pc": 2, "euler": 1, "midpoint": 2, "rk4": 4, "explicit_adams": 1, "implicit_adams": 4.8}
# adaptive solvers: NFE at atol = rtol = 1e-6 on the seed's grid (1-D oracle, notes/SOLVERS), and the order
# by which NFE scales as tol^(-1/(order+1)) at other tolerances
ADAPTIVE_NFE = {"dopri5": (116, 5), "dopri8": (197, 8), "bosh3": (242, 3), "adaptive_heun": (1870, 2)}
REFERENCE_TOL = 1e-6
# the feature passes: the loss at 5 times, the score norms, bits/dim (rk4 on bpd_steps steps)
LOSS_TIMES = 5
# the quality classifier (vsgm.quality): epochs, image cap, forward+backward FLOPs per 32x32 RGB image
CLASSIFIER_EPOCHS = 5
CLASSIFIER_MAX_IMAGES = 50_000
CLASSIFIER_FLOPS_32RGB = 48e6
UNET_KEYS = ("model_channels", "num_res_blocks", "channel_mult", "attention_resolutions", "num_head_channels")


class EstimateError(ValueError):
    """A config or bench file that cannot be estimated from."""


def sampler_nfe(name: str, num_steps: int, tol: float, overrides: dict[str, float]) -> tuple[float, bool]:
    """Score evaluations per sample of one sampler run, and whether the figure is assumed."""
    if name in overrides:
        return overrides[name], False
    if not is_sampler_name(name):
        raise EstimateError(f"unknown sampler {name!r}")
    solver = name.split("-")[1] if name.startswith("ode-") else name
    if solver in ADAPTIVE_SOLVERS:
        nfe, order = ADAPTIVE_NFE[solver]
        return nfe * (tol / REFERENCE_TOL) ** (-1 / (order + 1)), True
    return NFE_PER_STEP[solver] * num_steps, solver.endswith("adams")


def split_images(config: dict, key: str, split: str, cap: int | None) -> int:
    """Images of a dataset key's split, capped (at most; the registry's count)."""
    count = get_info(config["datasets"][base_of(key)]["dataset"]).split_images(split)
    known = [n for n in (count, cap) if n is not None]
    if not known:
        raise EstimateError(f"the number of {split} images of {key!r} is not known: set features.max_images and "
                            "train.max_images")
    return min(known)


@dataclass
class Rates:
    """What one ``vsgm bench`` JSON says about one model shape (seconds per unit of work)."""
    train_s_per_image: float
    forward_s_per_image: float
    loss_s_per_image: float   # the loss at LOSS_TIMES times
    norms_s_per_level: float
    bpd_s_per_step: float | None
    train_flops_per_s: float

    @classmethod
    def from_bench(cls, b: dict) -> "Rates":
        bpd = 1 / b["score_bpd_images_per_s"] if "score_bpd_images_per_s" in b else None
        return cls(1 / b["train_images_per_s"], 1 / b["inference_images_per_s"], 1 / b["score_loss_images_per_s"],
                   1 / b["score_msma_images_per_s"] / b["score_msma_levels"],
                   None if bpd is None else bpd / b["score_bpd_steps"], b["train_flops_per_step"] / b["train_step_s"])


def match_bench(config: dict, model: str, benches: list[dict]) -> Rates:
    """The bench figures measured for a model's shape (image size and UNet; channels may differ)."""
    space, unet = config["models"][model], config["unet"]
    for b in benches:
        if b["image"][1] == space["size"] and all(list(b["model"][k]) == list(unet[k]) if isinstance(unet[k], list)
                                                   else b["model"][k] == unet[k] for k in UNET_KEYS):
            return Rates.from_bench(b)
    flags = " ".join(f"--{k} {' '.join(map(str, unet[k])) if isinstance(unet[k], list) else unet[k]}"
                     for k in UNET_KEYS)
    raise EstimateError(f"no bench file for model {model!r} ({space['size']}px); measure it with: vsgm bench --size "
                        f"{space['size']} --channels {space['channels']} {flags} "
                        f"--batch_size {config['train']['batch_size']} --out bench-{model}.json")


def _row(rows: dict, rule: str, jobs: int = 0, work: float = 0.0, seconds: float = 0.0) -> None:
    r = rows.setdefault(rule, {"rule": rule, "jobs": 0, "work": 0.0, "compute_s": 0.0})
    r["jobs"] += jobs
    r["work"] += work
    r["compute_s"] += seconds


def _feature_rows(rows: dict, config: dict, plan: Plan, model: str, rates: Rates) -> None:
    """The outlier-detection jobs of one model: features of each set, their scores and pairs, the data."""
    train, feat, reps = config["train"], config["features"], config["replicates"]
    train_cap = min((c for c in (train["max_images"], feat["max_train_images"]) if c is not None), default=None)
    sets = [(model, "train", train_cap), (model, "test", feat["max_images"])]
    sets += [(key, "test", feat["max_images"]) for key in plan.ood_sets(model)]
    per_image = (feat["n_draws"] * rates.loss_s_per_image + feat["levels"] * rates.norms_s_per_level)
    if feat["bpd"]:
        if rates.bpd_s_per_step is None:
            raise EstimateError("the bench file has no bits/dim figure (score_bpd_images_per_s)")
        per_image += feat["bpd_steps"] * rates.bpd_s_per_step
    for key, split, cap in sets:
        n = reps * split_images(config, key, split, cap)
        _row(rows, "ood_features", reps, n, n * per_image)
    _row(rows, "ood_score", reps * len(sets))
    _row(rows, "ood_pair", reps * (len(sets) - 2))
    # prepared files: the model's train and test splits, its scoring subset, each OOD set's test split
    _row(rows, "data_prepare", len(sets) + (feat["max_train_images"] is not None))


def estimate(config: dict, benches: list[dict], startup_s: float = STARTUP_S,
             nfe: dict[str, float] | None = None) -> tuple[list[dict], list[str]]:
    """Device time of every rule of the DAG a config builds.

    Args:
        config: the workflow config, checked and its schema defaults filled in (vsgm.workflow.Plan.checked).
        benches: ``vsgm bench --out`` JSON dicts, one per model shape in the config.
        startup_s: start-up seconds of one job.
        nfe: measured score evaluations per sample, by sampler name (instead of the assumed ones).

    Returns:
        (rows: rule, jobs, work (images or image-NFE), compute_s, startup_s, hours; the last row is the
        total), notes on what was assumed.
    """
    nfe, rows, notes, plan = nfe or {}, {}, set(), Plan(config)
    train, sample, sweep, feat = config["train"], config["sample"], config["sweep"], config["features"]
    for model in config["models"]:
        rates = match_bench(config, model, benches)
        reps = config["replicates"]
        images = split_images(config, model, "train", train["max_images"])
        _row(rows, "train_model", reps, reps * train["n_epochs"] * images,
             reps * train["n_epochs"] * images * rates.train_s_per_image)
        for name in config["samplers"]:
            n, assumed = sampler_nfe(name, sample["num_steps"], sample["atol"], nfe)
            notes |= {f"{name}: {n:.0f} NFE assumed (--nfe {name}=N to give a measured one)"} if assumed else set()
            work = reps * (n + sample["denoise"]) * sample["num_samples"]
            _row(rows, "sample_model", reps, work, work * rates.forward_s_per_image)
        if sweep["enabled"]:
            work = 0.0
            for name in sweep["samplers"] or config["samplers"]:
                adaptive = name.startswith("ode-") and name.split("-")[1] in ADAPTIVE_SOLVERS
                settings = [(1, tol) for tol in sweep["tolerances"]] if adaptive else \
                    [(steps, 0.0) for steps in sweep["steps"]]
                work += sum(sampler_nfe(name, s, tol, {} if adaptive else nfe)[0] for s, tol in settings)
                notes |= {f"sweep: {name}'s NFE at each tolerance assumed (1-D oracle)"} if adaptive else set()
            work *= reps * sweep["num_samples"]
            _row(rows, "sample_sweep", reps, work, work * rates.forward_s_per_image)
        if sample["quality"]:
            cls_images = split_images(config, model, "train", min(c for c in (train["max_images"],
                                                                               CLASSIFIER_MAX_IMAGES) if c))
            space = config["models"][model]
            flops = CLASSIFIER_FLOPS_32RGB * space["channels"] * space["size"] ** 2 / (3 * 32 * 32)
            _row(rows, "sample_classifier", 1, CLASSIFIER_EPOCHS * cls_images,
                 CLASSIFIER_EPOCHS * cls_images * flops / rates.train_flops_per_s)
            _row(rows, "sample_quality", reps * len(config["samplers"]))
            _row(rows, "sample_paired", reps)
        _feature_rows(rows, config, plan, model, rates)
    out = []
    for r in rows.values():
        r["startup_s"] = r["jobs"] * startup_s
        r["hours"] = (r["compute_s"] + r["startup_s"]) / 3600
        out.append(r)
    total = {"rule": "total", "jobs": sum(r["jobs"] for r in out), "work": float("nan"),
             "compute_s": sum(r["compute_s"] for r in out), "startup_s": sum(r["startup_s"] for r in out)}
    total["hours"] = (total["compute_s"] + total["startup_s"]) / 3600
    return [*out, total], sorted(notes)


def format_estimate(rows: list[dict], notes: list[str], bench_devices: list[str]) -> str:
    """The estimate as a text table."""
    lines = [f"vsgm estimate from vsgm bench on {', '.join(bench_devices)} (device-hours; work: images or image-NFE)",
             f"  {'rule':<18}{'jobs':>7}{'work':>16}{'compute h':>12}{'start-up h':>12}{'total h':>10}"]
    for r in rows:
        work = "" if r["work"] != r["work"] else f"{r['work']:,.0f}"
        lines.append(f"  {r['rule']:<18}{r['jobs']:>7,}{work:>16}{r['compute_s'] / 3600:>12.2f}"
                     f"{r['startup_s'] / 3600:>12.2f}{r['hours']:>10.2f}")
    lines += [f"  note: {n}" for n in notes]
    return "\n".join(lines)
