"""Sample quality: ``vsgm classifier`` (the feature classifier), ``vsgm quality`` (one sampler's samples),
``vsgm paired`` (all samplers of a model in one paired bootstrap) and ``vsgm sweep`` (quality against NFE
over steps and tolerances)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..domains import OPTIONS, non_negative_int
from ..options import add_groups, option, positive_int
from .common import add_overwrite


def cmd_classifier(args: argparse.Namespace) -> None:
    from ..data import load_prepared
    from ..device import pick_device
    from ..guards import refuse_existing
    from ..io import sidecar
    from ..quality import CLASSIFIER_MAX_IMAGES, classifier_subset, save_classifier, train_classifier

    refuse_existing([args.out, sidecar(args.out)], args.overwrite)
    data = load_prepared(args.data)
    cap = CLASSIFIER_MAX_IMAGES if args.max_images is None else args.max_images
    keep = classifier_subset(len(data.images), cap, args.seed)
    model, acc = train_classifier(data.images[keep], data.labels[keep], epochs=args.epochs, seed=args.seed,
                                  device=pick_device(args.device))
    save_classifier(model, args.out, {"train_accuracy": acc, "data": str(args.data), "images": len(keep),
                                      "dataset": data.meta.get("dataset"), "size": int(data.images.shape[-1])})
    print(f"feature classifier: training accuracy {acc:.3f} -> {args.out}")


def cmd_quality(args: argparse.Namespace) -> None:
    from ..guards import refuse_existing
    from ..io import write_json
    from ..quality import quality_report

    refuse_existing([args.out], args.overwrite)
    result = quality_report(args.samples, args.classifier, args.reference, args.train_reference,
                            args.inception_weights, n_boot=args.n_boot, seed=args.seed,
                            tf_inception_weights=args.tf_inception_weights)
    write_json(args.out, result)
    print(f"{result['sampler']}: FD {result['fd']:.3f}, KID {result['kid']:.4f}, precision "
          f"{result['precision']:.2f}, recall {result['recall']:.2f} -> {args.out}")


def cmd_paired(args: argparse.Namespace) -> None:
    from ..guards import refuse_existing
    from ..io import write_table
    from ..paired_quality import paired_table

    refuse_existing([args.out], args.overwrite)
    table = paired_table(args.model, args.classifier, args.samples, args.reference, args.train_reference,
                         n_boot=args.n_boot, seed=args.seed)
    write_table(args.out, table)
    print(table.to_string())
    print(f"{len(table)} rows -> {args.out}")


def cmd_sweep(args: argparse.Namespace) -> None:
    from ..data.loader import normalise
    from ..device import pick_device
    from ..guards import refuse_existing
    from ..inputs import check_same_space, classifier_space, describe, prepared_space
    from ..io import write_table
    from ..models import load_trained
    from ..quality import load_classifier
    from ..sweep import sweep

    refuse_existing([args.out], args.overwrite)
    device = pick_device(args.device)
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


def _register_classifier(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("classifier", help="train the small feature classifier used for the sample-quality number")
    p.add_argument("--data", required=True, help="prepared in-distribution training split")
    p.add_argument("--out", required=True, help="output .safetensors")
    p.add_argument("--epochs", type=positive_int, default=5)
    p.add_argument("--seed", type=OPTIONS["seed"], default=0)
    p.add_argument("--max_images", type=non_negative_int, help="train on a seeded subset of at most this many images "
                   "(0: all; default: vsgm.quality.CLASSIFIER_MAX_IMAGES, 50000)")
    p.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    add_overwrite(p)
    p.set_defaults(func=cmd_classifier)


def register(sub: argparse._SubParsersAction) -> None:
    _register_classifier(sub)
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
    p.add_argument("--tf_inception_weights", default="auto",
                   help="the FID graph's Inception-v3 (torch-fidelity's weights file; the FID of published numbers) "
                        "for fid_tf_inception: a file, 'none', or 'auto' = torch-fidelity's cache "
                        "($TORCH_HOME/hub/checkpoints/weights-inception-2015-12-05-6726825d.pth) when the file is "
                        "there and torch-fidelity is installed (nothing is downloaded)")
    option("n_boot", "quality").add_to(p)
    p.add_argument("--seed", type=OPTIONS["seed"], default=0, help="bootstrap seed")
    p.add_argument("--out", required=True, help="output .json")
    add_overwrite(p)
    p.set_defaults(func=cmd_quality)

    p = sub.add_parser("paired", help="all samplers of one model in one paired bootstrap: each metric's difference "
                                      "to the best sampler, with an interval free of the test set's noise")
    p.add_argument("--model", required=True, help="the model's name in the table")
    p.add_argument("--classifier", required=True)
    p.add_argument("--samples", nargs="+", required=True, help=".npz files written by vsgm sample, one per sampler")
    p.add_argument("--reference", required=True, help="prepared in-distribution test split")
    p.add_argument("--train_reference", help="prepared training split: adds the real images as a row")
    option("n_boot", "quality").add_to(p)
    p.add_argument("--seed", type=OPTIONS["seed"], default=0, help="bootstrap seed")
    p.add_argument("--out", required=True, help="output CSV")
    add_overwrite(p)
    p.set_defaults(func=cmd_paired)

    p = sub.add_parser("sweep", help="sample quality (FD, KID, precision, recall) against NFE for samplers over steps and tolerances")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--classifier", required=True)
    p.add_argument("--reference", required=True, help="prepared in-distribution test split")
    p.add_argument("--samplers", nargs="+", required=True)
    add_groups(p, "sweep")
    p.add_argument("--seed", type=OPTIONS["seed"], default=0)
    option("denoise").add_to(p)
    option("n_boot", "quality").add_to(p)
    p.add_argument("--device")
    p.add_argument("--out", required=True, help="output CSV")
    add_overwrite(p)
    p.set_defaults(func=cmd_sweep)
