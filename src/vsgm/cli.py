"""The ``vsgm`` command: train, sample, score, download, prepare, bench. ``vsgm CMD --help`` for each."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from typing import Any, Sequence

from . import __version__
from .domains import non_negative_int
from .guards import OVERWRITE_FLAG, read_json, read_parquet, refuse_existing
from .io import sidecar, write_table
from .options import DATA_ROOT, OPTIONS, OneLineParser, add_groups, defaults, open_unit, option, positive_int

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
    from .checks import check_train_options
    from .guards import check_out_dir
    from .train import check_not_finished, train

    options = _options(args, "model", "sde", "data", "train", "sample")
    check_out_dir(args.out_dir)  # before any data is prepared or read
    if not args.restart:
        check_not_finished(args.out_dir)
    check_train_options(options)
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
    from .sampling import draw, sample_paths, write_samples

    spec = sampler_spec(args)
    # by default in the current directory: never the workflow's own results/{model}/samples/
    prefix = args.out or str(Path("samples") / Path(args.checkpoint).parent.name / spec.name)
    refuse_existing(sample_paths(prefix), args.overwrite)
    device = _device(args.device)
    model = load_trained(args.checkpoint, device)
    eps = args.eps if args.eps is not None else model.options["eps"]
    samples, cost = draw(model, spec, args.num_samples, args.batch_size, args.num_steps, eps, snr=args.snr,
                         atol=args.atol, rtol=args.rtol, cfg=args.cfg, seed=args.seed, device=device,
                         progress=True, denoise=args.denoise)
    cost["dataset"] = model.meta.get("dataset")
    cost["model"] = Path(args.checkpoint).parent.name  # the model's key (results/{model}/model.safetensors)
    paths = write_samples(samples, cost, prefix)
    print(f"{spec.name}: {args.num_samples} samples, NFE {cost['nfe']:.0f}, {cost['seconds']:.2f} s -> "
          + ", ".join(map(str, paths)))


def cmd_features(args: argparse.Namespace) -> None:
    from .data import load_prepared
    from .io import write_json
    from .models import load_trained
    from .ood import FeatureConfig, compute_features

    refuse_existing([args.out, sidecar(args.out, ".parquet")], args.overwrite)
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
    from .ood import align_features, fit_split, score_table

    refuse_existing([args.out], args.overwrite)
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


def cmd_pair(args: argparse.Namespace) -> None:
    from .inputs import read_score_tables
    from .tables import OOD, pair_table
    from .viz import plot_roc_curves, plot_score_histograms

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
        plots = Path(args.plots)
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
    if args.out_dataset == in_name:
        raise ValueError(f"--out_dataset {args.out_dataset} is the model's own dataset: its images are not "
                         "outliers (an AUROC of 0.5 would say nothing); name another dataset")
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

    refuse_existing([args.out, sidecar(args.out)], args.overwrite)
    data = load_prepared(args.data)
    cap = CLASSIFIER_MAX_IMAGES if args.max_images is None else args.max_images
    keep = classifier_subset(len(data.images), cap, args.seed)
    model, acc = train_classifier(data.images[keep], data.labels[keep], epochs=args.epochs, seed=args.seed,
                                  device=_device(args.device))
    save_classifier(model, args.out, {"train_accuracy": acc, "data": str(args.data), "images": len(keep),
                                      "dataset": data.meta.get("dataset"), "size": int(data.images.shape[-1])})
    print(f"feature classifier: training accuracy {acc:.3f} -> {args.out}")


def cmd_quality(args: argparse.Namespace) -> None:
    import torch

    from .data.loader import normalise
    from .io import write_json
    from .inputs import classifier_space, prepared_space, read_samples
    from .quality import check_same_space, inception_fid_entries, load_classifier, sample_quality

    refuse_existing([args.out], args.overwrite)
    samples, info, space = read_samples(args.samples)
    clf = load_classifier(args.classifier)
    ref_images, ref_space = prepared_space(args.reference)
    parts = [space, ref_space, classifier_space(clf, args.classifier)]
    if args.train_reference:
        train, train_space = prepared_space(args.train_reference)
        parts.append(train_space)
    check_same_space(parts)
    ref = normalise(ref_images)
    result = {"dataset": info.get("dataset"), "model": info.get("model"), "sampler": info["sampler"],
              "denoise": info.get("denoise", False), "n_samples": len(samples),
              "n_reference": len(ref)}
    real = None
    if args.train_reference:
        # the distance a perfect sampler would get with this many samples: real training images vs test
        idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[: len(samples)]
        real = normalise(train[idx])
    result.update(sample_quality(clf, samples, ref, real, n_boot=args.n_boot, seed=args.seed))
    result.update(inception_fid_entries(args.inception_weights, samples, ref, real))
    write_json(args.out, result)
    print(f"{result['sampler']}: FD {result['fd']:.3f}, KID {result['kid']:.4f}, precision "
          f"{result['precision']:.2f}, recall {result['recall']:.2f} -> {args.out}")


def cmd_sweep(args: argparse.Namespace) -> None:
    from .data.loader import normalise
    from .inputs import classifier_space, prepared_space
    from .models import load_trained
    from .quality import check_same_space, describe, load_classifier
    from .sweep import sweep

    refuse_existing([args.out], args.overwrite)
    device = _device(args.device)
    model = load_trained(args.checkpoint, device)
    clf = load_classifier(args.classifier)
    ref_images, ref_space = prepared_space(args.reference)
    check_same_space([describe(args.checkpoint, model.meta.get("dataset"), (model.channels, model.size, model.size)),
                      ref_space, classifier_space(clf, args.classifier)])
    table = sweep(model, clf, normalise(ref_images), args.samplers, args.steps, args.tolerances,
                  args.num_samples, args.batch_size, seed=args.seed, device=device,
                  model_name=Path(args.checkpoint).parent.name, denoise=args.denoise, n_boot=args.n_boot)
    write_table(args.out, table)
    print(f"{len(table)} settings -> {args.out}")


def cmd_aggregate(args: argparse.Namespace) -> None:
    from .report import OUTPUTS, SWEEP_OUTPUTS, aggregate_results

    refuse_existing([Path(args.out_dir) / name for name in (*OUTPUTS, *SWEEP_OUTPUTS)], args.overwrite)
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
    p.add_argument("--seed", type=OPTIONS["seed"], default=0)
    p.add_argument("--device")


def _overwrite_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(OVERWRITE_FLAG, action="store_true", help="replace existing output files (default: refuse)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="vsgm", description=__doc__)
    parser.add_argument("--version", action="version", version=f"vsgm {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
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
    p.add_argument("--seed", type=OPTIONS["seed"], default=0, help="random seed (default: 0)")
    p.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--out", help="output prefix for .png/.npz/.json (default: samples/<model dir name>/<sampler> "
                   "in the current directory)")
    _overwrite_option(p)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("features", help="per-image out-of-distribution features of a prepared set")
    p.add_argument("--checkpoint", required=True, help="model.safetensors")
    p.add_argument("--data", required=True, help="a set prepared in the model's channels and size")
    p.add_argument("--out", required=True, help="output .parquet (a .json with the NFE per scorer lands beside it)")
    _feature_options(p, max_images=None)
    _overwrite_option(p)
    p.set_defaults(func=cmd_features)

    p = sub.add_parser("score", help="outlier scores (one column per scorer) from feature tables")
    p.add_argument("--train_features", required=True, help="features of the in-distribution training images")
    p.add_argument("--features", required=True, help="features of the images to score")
    p.add_argument("--out", required=True, help="output .parquet")
    p.add_argument("--holdout", action="store_true",
                   help="score only the held-out part of the training images (the sanity row)")
    p.add_argument("--scorers", nargs="+", help="default: every scorer whose features exist")
    p.add_argument("--seed", type=OPTIONS["seed"], default=0)
    _overwrite_option(p)
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
    p.add_argument("--seed", type=OPTIONS["seed"], default=0)
    _overwrite_option(p)
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
    p.add_argument("--seed", type=OPTIONS["seed"], default=0)
    p.add_argument("--max_images", type=non_negative_int, help="train on a seeded subset of at most this many images "
                   "(0: all; default: vsgm.quality.CLASSIFIER_MAX_IMAGES, 50000)")
    p.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    _overwrite_option(p)
    p.set_defaults(func=cmd_classifier)

    p = sub.add_parser("quality", help="FD, KID, precision and recall (95%% intervals) of samples against test "
                                       "images in the classifier's features")
    p.add_argument("--classifier", required=True)
    p.add_argument("--samples", required=True, help=".npz written by vsgm sample")
    p.add_argument("--reference", required=True, help="prepared in-distribution test split")
    p.add_argument("--train_reference", help="prepared training split: adds the real-vs-real floor")
    p.add_argument("--inception_weights", default="auto",
                   help="Inception-v3 weights (torchvision's state dict) for FID: a file, 'none', or 'auto' = "
                        "torchvision's cache ($TORCH_HOME/hub/checkpoints/inception_v3_google-0cc3c7bd.pth) "
                        "when the file is there (nothing is downloaded)")
    p.add_argument("--n_boot", type=OPTIONS["n_boot"], default=200, help="bootstrap resamples of the intervals")
    p.add_argument("--seed", type=OPTIONS["seed"], default=0, help="bootstrap seed")
    p.add_argument("--out", required=True, help="output .json")
    _overwrite_option(p)
    p.set_defaults(func=cmd_quality)

    p = sub.add_parser("sweep", help="sample quality (FD, KID, precision, recall) against NFE for samplers over steps and tolerances")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--classifier", required=True)
    p.add_argument("--reference", required=True, help="prepared in-distribution test split")
    p.add_argument("--samplers", nargs="+", required=True)
    p.add_argument("--steps", nargs="+", type=positive_int, default=[5, 10, 20, 50, 100])
    p.add_argument("--tolerances", nargs="+", type=OPTIONS["tolerances"], default=[1e-1, 1e-2, 1e-3, 1e-4])
    p.add_argument("--num_samples", type=positive_int, default=256)
    p.add_argument("--batch_size", type=positive_int, default=256)
    p.add_argument("--seed", type=OPTIONS["seed"], default=0)
    option("denoise").add_to(p)
    p.add_argument("--n_boot", type=OPTIONS["n_boot"], default=200, help="bootstrap resamples of the intervals")
    p.add_argument("--device")
    p.add_argument("--out", required=True, help="output CSV")
    _overwrite_option(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("aggregate", help="AUROC tables, heatmap, solver table and sample montage over all models")
    p.add_argument("--results", default="results")
    p.add_argument("--out_dir", default="aggregate", help="where the tables and figures go (default: aggregate)")
    _overwrite_option(p)
    p.set_defaults(func=cmd_aggregate)

    from .bench import register as register_bench
    from .data.commands import register as register_data
    from .estimate import register as register_estimate
    from .seed_bench import register as register_seed_bench
    from .seed_import import register as register_import_seed

    register_data(sub)
    register_bench(sub)
    register_import_seed(sub)
    register_seed_bench(sub)
    register_estimate(sub)
    return parser


class Interrupted(Exception):
    """SIGTERM or SIGINT outside the training loop (which writes a resume checkpoint instead)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum, _frame):
    raise Interrupted(signum)


def _run(args: argparse.Namespace) -> int:
    """Run the command; errors and interrupts become one line on stderr and an exit status."""
    where = f"vsgm {args.command}"
    try:
        return args.func(args) or 0
    except (Interrupted, KeyboardInterrupt) as err:
        signum = getattr(err, "signum", signal.SIGINT)
        print(f"{where}: interrupted by {signal.Signals(signum).name}; no output was written "
              "(files are written whole or not at all)", file=sys.stderr)
        return 128 + signum
    except (ValueError, OSError, RuntimeError) as err:
        if hasattr(err, "signum"):  # vsgm.train.Preempted: a resume checkpoint was written
            print(f"{where}: {err}", file=sys.stderr)
            return 128 + err.signum
        if args.debug or args.verbose:
            raise
        print(f"{where}: error: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # noqa: BLE001 - anything else is a bug: one line, the traceback with --debug
        if args.debug:
            raise
        print(f"{where}: internal error: {type(err).__name__}: {err} (run with --debug for the traceback; "
              "please report it)", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # also after the command: `vsgm sample ... --debug`, as the error message says
    args = parser.parse_args([a for a in argv if a != "--debug"])
    args.debug = debug
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        old = signal.signal(signal.SIGTERM, _raise_interrupted)
    except ValueError:  # not the main thread: leave signals alone
        old = None
    try:
        return _run(args)
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


if __name__ == "__main__":
    sys.exit(main())
