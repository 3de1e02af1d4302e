"""Out-of-distribution detection: ``vsgm features``, ``vsgm score`` and ``vsgm pair`` (the workflow's three
steps), and ``vsgm ood`` (the seed's --outlier_detection in one command)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..domains import OPTIONS
from ..options import DATA_ROOT, add_groups, positive_int
from .common import add_overwrite, options_of


def cmd_features(args: argparse.Namespace) -> None:
    from ..data import load_prepared
    from ..device import pick_device
    from ..guards import refuse_existing
    from ..io import sidecar, write_json, write_table
    from ..models import load_trained
    from ..ood import FeatureConfig, outlier_features, features_sidecar

    refuse_existing([args.out, sidecar(args.out, ".parquet")], args.overwrite)
    device = pick_device(args.device)
    model = load_trained(args.checkpoint, device)
    data = load_prepared(args.data, size=model.size, channels=model.channels)
    images = data.images
    if args.max_images and len(images) > args.max_images:
        images = images[: args.max_images]
    cfg = FeatureConfig.from_options(options_of(args, "features") | {"seed": args.seed})
    df = outlier_features(model, images, cfg, batch_size=args.batch_size, device=device)
    write_table(args.out, df)
    write_json(sidecar(args.out, ".parquet"), features_sidecar(cfg, len(df), args.data, data.meta.get("dataset")))
    print(f"features of {len(df)} images -> {args.out}")


def cmd_score(args: argparse.Namespace) -> None:
    from ..guards import read_parquet, refuse_existing
    from ..io import write_table
    from ..ood import align_features, check_feature_settings, fit_split, score_table

    refuse_existing([args.out], args.overwrite)
    check_feature_settings([args.train_features, args.features], options_of(args, "features"))
    train = read_parquet(args.train_features)
    target = align_features(train, read_parquet(args.features), args.train_features, args.features)
    fit_rows, holdout_rows = fit_split(len(train), seed=args.seed)
    if args.holdout:
        if not target["index"].equals(train["index"]):
            raise ValueError(f"--holdout scores the held-out part of --train_features: {args.features} must be "
                             f"that table ({args.train_features})")
        target = target.iloc[holdout_rows]
    scores = score_table(train.iloc[fit_rows], target, args.scorers)
    write_table(args.out, scores)
    print(f"scores of {len(scores)} images ({', '.join(c for c in scores.columns if c != 'index')}) -> {args.out}")


def _plot_pair(plots: Path, ins, outs, scorers: list[str], model: str, out_name: str) -> None:
    from ..viz import plot_roc_curves, plot_score_histograms

    for s in scorers:
        plot_score_histograms(ins[s].to_numpy(), outs[s].to_numpy(), plots / f"hist_{s}.png",
                              title=f"{model} vs {out_name}: {s}", label_in=f"{model} (test)", label_out=out_name)
    plot_roc_curves({s: (ins[s].to_numpy(), outs[s].to_numpy()) for s in scorers}, plots / "roc.png",
                    title=f"{model} vs {out_name}")


def cmd_pair(args: argparse.Namespace) -> None:
    from ..guards import read_json, refuse_existing
    from ..inputs import read_score_tables
    from ..io import write_table
    from ..tables import OOD, pair_table

    ins, outs, sanity = read_score_tables(args.in_scores, args.out_scores, args.sanity)
    nfe = read_json(args.nfe_json, {"nfe": dict})["nfe"] if args.nfe_json else None
    model = args.model or Path(args.out).parent.name
    out_name = args.out_name or Path(args.out_scores).stem
    scorers = [c for c in ins.columns if c != "index"]
    plot_files = [Path(args.plots) / f"{n}.png" for n in (*(f"hist_{s}" for s in scorers), "roc")] if args.plots else []
    refuse_existing([args.out, *plot_files], args.overwrite)
    table = pair_table(model, out_name, ins, outs, sanity, nfe, n_boot=args.n_boot, seed=args.seed)
    write_table(args.out, table)
    if args.plots:
        _plot_pair(Path(args.plots), ins, outs, scorers, model, out_name)
    best = table[table["comparison"] == OOD].sort_values("auroc").iloc[-1]
    print(f"{model} vs {out_name}: best {best['scorer']} AUROC {best['auroc']:.3f} -> {args.out}")


def _images_for(model, sets: dict[str, tuple[str, str]], root: str, max_images: int | None, in_name: str) -> dict:
    """uint8 images of each (dataset, split) of ``sets``, prepared in the model's space (and cached)."""
    from ..data import get_info, load_prepared, native_size, prepare

    bottleneck = native_size(in_name, model.size)
    cache = Path("resources/prepared") / f"for_{in_name}_{model.size}px_{model.channels}ch"
    images = {}
    for key, (name, split) in sets.items():
        get_info(name)
        # the image budget is part of the name: another --max_images prepares another subset
        path = cache / f"{name}_{split}_{max_images or 'all'}.safetensors"
        if not path.exists():
            prepare(name, split, root, path, size=model.size, channels=model.channels, bottleneck=bottleneck,
                    max_images=max_images)
        images[key] = load_prepared(path, size=model.size, channels=model.channels).images
    return images


def cmd_ood(args: argparse.Namespace) -> None:
    """The seed's --outlier_detection in one command: score the in-distribution test set and an outlier set."""
    import pandas as pd

    from ..device import pick_device
    from ..models import load_trained
    from ..ood import FeatureConfig, detect_outliers

    device = pick_device(args.device)
    model = load_trained(args.checkpoint, device)
    in_name = args.dataset or model.meta.get("dataset")
    if not in_name:
        raise ValueError(f"{args.checkpoint} does not name its training dataset: give --dataset")
    if args.out_dataset == in_name:
        raise ValueError(f"--out_dataset {args.out_dataset} is the model's own dataset: its images are not "
                         "outliers (an AUROC of 0.5 would say nothing); name another dataset")
    sets = {"train": (in_name, "train"), "test": (in_name, "test"), "outliers": (args.out_dataset, "test")}
    images = _images_for(model, sets, args.root, args.max_images, in_name)
    cfg = FeatureConfig.from_options(options_of(args, "features") | {"seed": args.seed})
    table = detect_outliers(model, images, cfg, in_name, args.out_dataset, batch_size=args.batch_size,
                            device=device)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.drop(columns=["model", "in"]).to_string(index=False, float_format="%.3f"))


def _feature_options(p: argparse.ArgumentParser, max_images: int | None) -> None:
    """Options of the out-of-distribution features, shared by `features` and `ood`."""
    add_groups(p, "features")
    p.add_argument("--max_images", type=positive_int, default=max_images, help="score at most this many images")
    p.add_argument("--batch_size", type=positive_int, default=256)
    p.add_argument("--seed", type=OPTIONS["seed"], default=0)
    p.add_argument("--device")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("features", help="per-image out-of-distribution features of a prepared set")
    p.add_argument("--checkpoint", required=True, help="model.safetensors")
    p.add_argument("--data", required=True, help="a set prepared in the model's channels and size")
    p.add_argument("--out", required=True, help="output .parquet (a .json with the NFE per scorer lands beside it)")
    _feature_options(p, max_images=None)
    add_overwrite(p)
    p.set_defaults(func=cmd_features)

    p = sub.add_parser("score", help="outlier scores (one column per scorer) from feature tables")
    p.add_argument("--train_features", required=True, help="features of the in-distribution training images")
    p.add_argument("--features", required=True, help="features of the images to score")
    p.add_argument("--out", required=True, help="output .parquet")
    p.add_argument("--holdout", action="store_true",
                   help="score only the held-out part of the training images (the sanity row)")
    p.add_argument("--scorers", nargs="+", help="default: every scorer whose features exist")
    p.add_argument("--seed", type=OPTIONS["seed"], default=0)
    add_groups(p, "features", unset="as the features were computed; given, features computed otherwise are refused")
    add_overwrite(p)
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
    add_groups(p, "pair")
    p.add_argument("--seed", type=OPTIONS["seed"], default=0)
    add_overwrite(p)
    p.set_defaults(func=cmd_pair)

    p = sub.add_parser("ood", help="the seed's outlier detection in one go: a model against --out_dataset")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out_dataset", required=True, help="outlier dataset")
    p.add_argument("--dataset", help="in-distribution dataset (default: the model's)")
    p.add_argument("--root", default=DATA_ROOT)
    _feature_options(p, max_images=2000)
    p.set_defaults(func=cmd_ood)

