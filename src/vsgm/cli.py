"""The ``vsgm`` command: train, sample, score, download, prepare, bench. ``vsgm CMD --help`` for each."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

from . import __version__
from .io import sidecar, write_table
from .options import (DATA_ROOT, add_groups, defaults, non_negative_int, open_unit, option, positive_float,
                      positive_int)

log = logging.getLogger("vsgm")


def _options(args: argparse.Namespace, *groups: str) -> dict[str, Any]:
    return {k: getattr(args, k) for k in defaults(*groups)}


def _device(name: str | None) -> str:
    import torch

    if name:
        return name
    return "cuda" if torch.cuda.is_available() else "cpu"


def _prepare_on_the_fly(args: argparse.Namespace, split: str) -> Path:
    from .data import get_info, native_size, prepare

    info = get_info(args.dataset)
    size = args.size or native_size(args.dataset, None)
    if size is None:
        raise SystemExit(f"vsgm: --size is needed for {args.dataset} (its images have no fixed size)")
    out = Path("resources/prepared") / args.dataset / f"{split}-{size}px-{info.channels}ch.safetensors"
    if not out.exists():
        prepare(args.dataset, split, args.root, out, size=size, channels=info.channels)
    return out


def cmd_train(args: argparse.Namespace) -> None:
    from .train import train

    options = _options(args, "model", "sde", "data", "train", "sample")
    data = args.data or _prepare_on_the_fly(args, "train")
    meta = train(options, data, args.out_dir, resume=not args.restart)
    print(f"trained {meta['dataset']} to step {meta['step']}: {Path(args.out_dir) / 'model.safetensors'}")


def sampler_spec(args: argparse.Namespace):
    from .samplers import parse_sampler, spec_from_options

    if args.sampler:
        return parse_sampler(args.sampler)
    if args.sampler_type != "ODE":
        ignored = [f"--{name} {getattr(args, name)}" for name in ("solver", "grid")
                   if getattr(args, name) != option(name).default]
        if ignored:
            verb = "are" if len(ignored) > 1 else "is"
            print(f"vsgm: {' and '.join(ignored)} {verb} only used by --sampler_type ODE; sampling with "
                  f"{args.sampler_type}", file=sys.stderr)
    return spec_from_options(vars(args))


def cmd_sample(args: argparse.Namespace) -> None:
    from .models import load_trained
    from .sampling import draw, write_samples

    device = _device(args.device)
    model = load_trained(args.checkpoint, device)
    spec = sampler_spec(args)
    eps = args.eps if args.eps is not None else model.options["eps"]
    samples, cost = draw(model, spec, args.num_samples, args.batch_size, args.num_steps, eps, snr=args.snr,
                         atol=args.atol, rtol=args.rtol, cfg=args.cfg, seed=args.seed, device=device,
                         progress=True)
    cost["dataset"] = model.meta.get("dataset")
    cost["model"] = Path(args.checkpoint).parent.name  # the model's key (results/{model}/model.safetensors)
    prefix = args.out or str(Path(args.checkpoint).parent / "samples" / spec.name)
    paths = write_samples(samples, cost, prefix)
    print(f"{spec.name}: {args.num_samples} samples, NFE {cost['nfe']:.0f}, {cost['seconds']:.2f} s -> "
          + ", ".join(map(str, paths)))


def cmd_features(args: argparse.Namespace) -> None:
    from .data import load_prepared
    from .io import write_json
    from .models import load_trained
    from .ood import FeatureConfig, compute_features

    device = _device(args.device)
    model = load_trained(args.checkpoint, device)
    data = load_prepared(args.data, size=model.size, channels=model.channels)
    images = data.images
    if args.max_images and len(images) > args.max_images:
        images = images[: args.max_images]
    cfg = FeatureConfig(n_draws=args.n_draws, levels=args.levels, bpd=args.bpd, bpd_steps=args.bpd_steps,
                        seed=args.seed)
    df = compute_features(model, images, cfg, batch_size=args.batch_size, device=device)
    write_table(args.out, df)
    write_json(sidecar(args.out, ".parquet"), {"nfe": cfg.nfe(), "n": len(df), "data": str(args.data),
                                                     "dataset": data.meta.get("dataset")})
    print(f"features of {len(df)} images -> {args.out}")


def cmd_score(args: argparse.Namespace) -> None:
    import pandas as pd

    from .ood import fit_split, score_table

    train = pd.read_parquet(args.train_features)
    fit_rows, holdout_rows = fit_split(len(train), seed=args.seed)
    target = pd.read_parquet(args.features)
    if args.holdout:
        target = target.iloc[holdout_rows]
    scores = score_table(train.iloc[fit_rows], target, args.scorers)
    write_table(args.out, scores)
    print(f"scores of {len(scores)} images ({', '.join(c for c in scores.columns if c != 'index')}) -> {args.out}")


def cmd_pair(args: argparse.Namespace) -> None:
    import json

    import pandas as pd

    from .tables import OOD, pair_table
    from .viz import plot_roc_curves, plot_score_histograms

    ins, outs = pd.read_parquet(args.in_scores), pd.read_parquet(args.out_scores)
    sanity = pd.read_parquet(args.sanity) if args.sanity else None
    nfe = json.loads(Path(args.nfe_json).read_text())["nfe"] if args.nfe_json else None
    model = args.model or Path(args.out).parent.name
    out_name = args.out_name or Path(args.out_scores).stem
    table = pair_table(model, out_name, ins, outs, sanity, nfe, n_boot=args.n_boot, seed=args.seed)
    write_table(args.out, table)
    if args.plots:
        plots = Path(args.plots)
        scorers = [c for c in ins.columns if c != "index"]
        for s in scorers:
            plot_score_histograms(ins[s].to_numpy(), outs[s].to_numpy(), plots / f"hist_{s}.png",
                                  title=f"{model} vs {out_name}: {s}", label_in=f"{model} (test)", label_out=out_name)
        plot_roc_curves({s: (ins[s].to_numpy(), outs[s].to_numpy()) for s in scorers}, plots / "roc.png",
                        title=f"{model} vs {out_name}")
    best = table[table["comparison"] == OOD].sort_values("auroc").iloc[-1]
    print(f"{model} vs {out_name}: best {best['scorer']} AUROC {best['auroc']:.3f} -> {args.out}")


def cmd_ood(args: argparse.Namespace) -> None:
    """The seed's --outlier_detection in one command: score the in-distribution test set and an outlier set."""
    import pandas as pd

    from .data import get_info, load_prepared, native_size, prepare
    from .models import load_trained
    from .ood import FeatureConfig, compute_features, fit_split, score_table
    from .tables import pair_table

    device = _device(args.device)
    model = load_trained(args.checkpoint, device)
    in_name = args.dataset or model.meta.get("dataset")
    if not in_name:
        raise ValueError(f"{args.checkpoint} does not name its training dataset: give --dataset")
    bottleneck = native_size(in_name, model.size)
    cache = Path("resources/prepared") / f"for_{in_name}_{model.size}px_{model.channels}ch"
    cfg = FeatureConfig(n_draws=args.n_draws, levels=args.levels, bpd=args.bpd, bpd_steps=args.bpd_steps,
                        seed=args.seed)
    feats = {}
    for name, split in ((in_name, "train"), (in_name, "test"), (args.out_dataset, "test")):
        get_info(name)
        # the image budget is part of the name: another --max_images prepares another subset
        path = cache / f"{name}_{split}_{args.max_images or 'all'}.safetensors"
        if not path.exists():
            prepare(name, split, args.root, path, size=model.size, channels=model.channels, bottleneck=bottleneck,
                    max_images=args.max_images)
        images = load_prepared(path, size=model.size, channels=model.channels).images
        feats[(name, split)] = compute_features(model, images, cfg, batch_size=args.batch_size, device=device)
    train = feats[(in_name, "train")]
    fit_rows, holdout = fit_split(len(train), seed=args.seed)
    score = lambda df: score_table(train.iloc[fit_rows], df)  # noqa: E731
    table = pair_table(in_name, args.out_dataset, score(feats[(in_name, "test")]),
                       score(feats[(args.out_dataset, "test")]), score(train.iloc[holdout]), cfg.nfe())
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.drop(columns=["model", "in"]).to_string(index=False, float_format="%.3f"))


def cmd_classifier(args: argparse.Namespace) -> None:
    from .data import load_prepared
    from .quality import CLASSIFIER_MAX_IMAGES, classifier_subset, save_classifier, train_classifier

    data = load_prepared(args.data)
    cap = CLASSIFIER_MAX_IMAGES if args.max_images is None else args.max_images
    keep = classifier_subset(len(data.images), cap, args.seed)
    model, acc = train_classifier(data.images[keep], data.labels[keep], epochs=args.epochs, seed=args.seed,
                                  device=_device(args.device))
    save_classifier(model, args.out, {"train_accuracy": acc, "data": str(args.data), "images": len(keep),
                                      "dataset": data.meta.get("dataset")})
    print(f"feature classifier: training accuracy {acc:.3f} -> {args.out}")


def cmd_quality(args: argparse.Namespace) -> None:
    import json
    import zipfile

    import numpy as np
    import torch

    from .data import load_prepared
    from .data.loader import normalise
    from .io import write_json
    from .quality import inception_fid_entries, load_classifier, sample_fd

    clf = load_classifier(args.classifier)
    try:
        with np.load(args.samples, allow_pickle=False) as f:
            samples = torch.from_numpy(f["samples"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        raise ValueError(f"{args.samples}: not a samples .npz written by vsgm sample ({err})") from err
    ref = normalise(load_prepared(args.reference).images)
    info = json.loads(sidecar(args.samples, ".npz").read_text())
    result = {"dataset": info.get("dataset"), "model": info.get("model"), "sampler": info["sampler"],
              "n_samples": len(samples),
              "n_reference": len(ref), "fd": sample_fd(clf, samples, ref)}
    real = None
    if args.train_reference:
        train = load_prepared(args.train_reference).images
        # the distance a perfect sampler would get with this many samples: real training images vs test
        idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[: len(samples)]
        real = normalise(train[idx])
        result["fd_test_vs_train"] = sample_fd(clf, real, ref)
    result.update(inception_fid_entries(args.inception_weights, samples, ref, real))
    write_json(args.out, result)
    print(f"{result['sampler']}: FD {result['fd']:.3f} -> {args.out}")


def cmd_sweep(args: argparse.Namespace) -> None:
    from .data import load_prepared
    from .data.loader import normalise
    from .models import load_trained
    from .quality import load_classifier
    from .sweep import sweep

    device = _device(args.device)
    model = load_trained(args.checkpoint, device)
    reference = normalise(load_prepared(args.reference).images)
    table = sweep(model, load_classifier(args.classifier), reference, args.samplers, args.steps, args.tolerances,
                  args.num_samples, args.batch_size, seed=args.seed, device=device,
                  model_name=Path(args.checkpoint).parent.name)
    write_table(args.out, table)
    print(f"{len(table)} settings -> {args.out}")


def cmd_aggregate(args: argparse.Namespace) -> None:
    from .report import aggregate_results

    paths = aggregate_results(args.results, args.out_dir)
    print("wrote " + ", ".join(map(str, paths)))


def _feature_options(p: argparse.ArgumentParser, max_images: int | None) -> None:
    """Options of the out-of-distribution features, shared by `features` and `ood`."""
    p.add_argument("--n_draws", type=positive_int, default=1, help="noise draws per time of the loss score")
    p.add_argument("--levels", type=positive_int, default=10, help="noise levels of the multi-scale score norms")
    p.add_argument("--bpd", action=argparse.BooleanOptionalAction, default=False, help="also bits/dim (costly)")
    p.add_argument("--bpd_steps", type=positive_int, default=10, help="rk4 steps (log-std grid) for bits/dim")
    p.add_argument("--max_images", type=positive_int, default=max_images, help="score at most this many images")
    p.add_argument("--batch_size", type=positive_int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vsgm", description=__doc__)
    parser.add_argument("--version", action="version", version=f"vsgm {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a score model (run it under `accelerate launch` for several processes)")
    add_groups(p, "data", "model", "sde", "train", "sample")
    p.add_argument("--data", help="prepared training split (vsgm prepare); default: prepare --dataset on the fly")
    p.add_argument("--out_dir", required=True, help="directory for model.safetensors, train.csv, resume files")
    p.add_argument("--restart", action="store_true",
                   help="start from scratch: ignore a resume checkpoint, replace a finished model")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="sample a trained model with one sampler")
    p.add_argument("--checkpoint", required=True, help="model.safetensors written by vsgm train")
    p.add_argument("--sampler", help="em, pc, ode-<solver> or ode-<solver>-logstd (overrides --sampler_type etc.)")
    add_groups(p, "sample")
    p.add_argument("--eps", type=open_unit, default=None, help="smallest time (default: the model's)")
    p.add_argument("--batch_size", type=positive_int, default=128, help="samples per batch (default: 128)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--out", help="output prefix for .png/.npz/.json (default: <checkpoint dir>/samples/<sampler>)")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("features", help="per-image out-of-distribution features of a prepared set")
    p.add_argument("--checkpoint", required=True, help="model.safetensors")
    p.add_argument("--data", required=True, help="a set prepared in the model's channels and size")
    p.add_argument("--out", required=True, help="output .parquet (a .json with the NFE per scorer lands beside it)")
    _feature_options(p, max_images=None)
    p.set_defaults(func=cmd_features)

    p = sub.add_parser("score", help="outlier scores (one column per scorer) from feature tables")
    p.add_argument("--train_features", required=True, help="features of the in-distribution training images")
    p.add_argument("--features", required=True, help="features of the images to score")
    p.add_argument("--out", required=True, help="output .parquet")
    p.add_argument("--holdout", action="store_true",
                   help="score only the held-out part of the training images (the sanity row)")
    p.add_argument("--scorers", nargs="+", help="default: every scorer whose features exist")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("pair", help="AUROC, AUPR, FPR@95 for one (model, outlier set) pair")
    p.add_argument("--in_scores", required=True)
    p.add_argument("--out_scores", required=True)
    p.add_argument("--sanity", help="scores of held-out training images (train-vs-test sanity rows)")
    p.add_argument("--nfe_json", help="features .json with the NFE per scorer")
    p.add_argument("--out", required=True, help="output CSV")
    p.add_argument("--plots", help="directory for histograms and ROC curves")
    p.add_argument("--model", help="model name (default: the output's directory)")
    p.add_argument("--out_name", help="outlier set name (default: the out_scores file name)")
    p.add_argument("--n_boot", type=positive_int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_pair)

    p = sub.add_parser("ood", help="the seed's outlier detection in one go: a model against --out_dataset")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out_dataset", required=True, help="outlier dataset")
    p.add_argument("--dataset", help="in-distribution dataset (default: the model's)")
    p.add_argument("--root", default=DATA_ROOT)
    _feature_options(p, max_images=2000)
    p.set_defaults(func=cmd_ood)

    p = sub.add_parser("classifier", help="train the small feature classifier used for the sample-quality number")
    p.add_argument("--data", required=True, help="prepared in-distribution training split")
    p.add_argument("--out", required=True, help="output .safetensors")
    p.add_argument("--epochs", type=positive_int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max_images", type=non_negative_int, help="train on a seeded subset of at most this many images "
                   "(0: all; default: vsgm.quality.CLASSIFIER_MAX_IMAGES, 50000)")
    p.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    p.set_defaults(func=cmd_classifier)

    p = sub.add_parser("quality", help="Frechet distance of samples to test images in the classifier's features")
    p.add_argument("--classifier", required=True)
    p.add_argument("--samples", required=True, help=".npz written by vsgm sample")
    p.add_argument("--reference", required=True, help="prepared in-distribution test split")
    p.add_argument("--train_reference", help="prepared training split: adds the real-vs-real floor")
    p.add_argument("--inception_weights", default="auto",
                   help="Inception-v3 weights (torchvision's state dict) for FID: a file, 'none', or 'auto' = "
                        "torchvision's cache ($TORCH_HOME/hub/checkpoints/inception_v3_google-0cc3c7bd.pth) "
                        "when the file is there (nothing is downloaded)")
    p.add_argument("--out", required=True, help="output .json")
    p.set_defaults(func=cmd_quality)

    p = sub.add_parser("sweep", help="sample quality (FD) against NFE for samplers over steps and tolerances")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--classifier", required=True)
    p.add_argument("--reference", required=True, help="prepared in-distribution test split")
    p.add_argument("--samplers", nargs="+", required=True)
    p.add_argument("--steps", nargs="+", type=positive_int, default=[5, 10, 20, 50, 100])
    p.add_argument("--tolerances", nargs="+", type=positive_float, default=[1e-1, 1e-2, 1e-3, 1e-4])
    p.add_argument("--num_samples", type=positive_int, default=256)
    p.add_argument("--batch_size", type=positive_int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device")
    p.add_argument("--out", required=True, help="output CSV")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("aggregate", help="AUROC tables, heatmap, solver table and sample montage over all models")
    p.add_argument("--results", default="results")
    p.add_argument("--out_dir", default="results")
    p.set_defaults(func=cmd_aggregate)

    from .bench import register as register_bench
    from .data.commands import register as register_data

    register_data(sub)
    register_bench(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        args.func(args)
    except (ValueError, OSError, RuntimeError) as err:
        # one line for the user; the traceback with -v
        if args.verbose:
            raise
        print(f"vsgm {args.command}: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
