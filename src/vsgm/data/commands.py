"""The ``vsgm download`` and ``vsgm prepare`` subcommands.

``register(subparsers)`` adds them to the main CLI; each sets ``func`` (taking the
parsed arguments and returning an exit status). Bad input exits non-zero with a
one-line message (argparse errors exit 2, data errors exit 1).

Examples::

    vsgm download --dataset cifar10 --root resources/data
    vsgm prepare --dataset svhn --split test --root resources/data \\
        --out resources/prepared/svhn.safetensors --size 32 --channels 3 --bottleneck 32
"""

from __future__ import annotations

import argparse
from typing import Any

from ..options import DATA_ROOT, OPTIONS, non_negative_int, positive_int
from .errors import CorruptFileError, DatasetUnavailableError
from .registry import SPLITS, dataset_names


def _fail(command: str, error: Exception) -> SystemExit:
    return SystemExit(f"vsgm {command}: error: {error}")


def run_download(args: argparse.Namespace) -> int:
    """Run ``vsgm download`` (see :func:`vsgm.data.download`).

    Args:
        args: parsed arguments (dataset, root, size).

    Returns:
        0 on success (errors raise SystemExit with a one-line message).
    """
    from .fetch import download

    try:
        directory = download(args.dataset, args.root, size=args.size)
    except (DatasetUnavailableError, ValueError) as error:
        raise _fail("download", error) from None
    print(f"{args.dataset}: ready in {directory}")
    return 0


def run_prepare(args: argparse.Namespace) -> int:
    """Run ``vsgm prepare`` (see :func:`vsgm.data.prepare`).

    Args:
        args: parsed arguments.

    Returns:
        0 on success (errors raise SystemExit with a one-line message).
    """
    from ..guards import refuse_existing
    from ..io import sidecar
    from .cache import prepare

    try:
        refuse_existing([args.out, sidecar(args.out)], args.overwrite)
        meta = prepare(
            args.dataset,
            args.split,
            args.root,
            args.out,
            size=args.size,
            channels=args.channels,
            bottleneck=args.bottleneck,
            classes=args.classes,
            max_images=args.max_images,
            seed=args.seed,
        )
    except (DatasetUnavailableError, CorruptFileError, ValueError, FileExistsError) as error:
        raise _fail("prepare", error) from None
    print(f"{args.dataset} {args.split}: {meta['count']} images {args.channels}x{args.size}x{args.size} -> {args.out}")
    return 0


def _add_dataset(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset",
        required=True,
        choices=dataset_names(),
        metavar="NAME",
        help="dataset name: " + ", ".join(dataset_names()),
    )
    parser.add_argument(
        "--root", default=DATA_ROOT, help=f"data root; dataset NAME lives in ROOT/NAME (default {DATA_ROOT})"
    )


def register(subparsers: Any) -> None:
    """Add the ``download`` and ``prepare`` subcommands.

    Args:
        subparsers: the object returned by ``ArgumentParser.add_subparsers()``.
    """
    download = subparsers.add_parser(
        "download",
        help="download a dataset (no-op when present or embedded)",
        description="Download a dataset into ROOT/NAME with torchvision/medmnist; "
        "a no-op when the files are already there.",
    )
    _add_dataset(download)
    download.add_argument(
        "--size",
        type=positive_int,
        default=None,
        help="medmnist only: fetch the file (28/64/128/224) nearest this size (default 28)",
    )
    download.set_defaults(func=run_download)

    prepare = subparsers.add_parser(
        "prepare",
        help="cache one split in a model's space (safetensors + json)",
        description="Load a split, keep classes, convert channels/size by the pairing "
        "rule and write OUT (safetensors) and OUT.json.",
    )
    _add_dataset(prepare)
    prepare.add_argument("--split", required=True, choices=SPLITS, help="train or test")
    prepare.add_argument("--out", required=True, help="output .safetensors file (a .json sidecar is written beside it)")
    prepare.add_argument("--size", required=True, type=OPTIONS["size"], help="the model's image side")
    prepare.add_argument("--channels", required=True, type=int, choices=(1, 3), help="the model's channels")
    prepare.add_argument(
        "--bottleneck",
        type=OPTIONS["bottleneck"],
        default=None,
        help="native resolution of the model's training set (images larger are first reduced to it)",
    )
    prepare.add_argument("--classes", type=non_negative_int, nargs="+", default=None, help="keep only these labels")
    prepare.add_argument("--max_images", type=positive_int, default=None, help="keep a seeded subset of this many")
    prepare.add_argument("--seed", type=OPTIONS["seed"], default=0, help="seed of the subset (default 0)")
    prepare.add_argument("--overwrite", action="store_true", help="replace an existing OUT (default: refuse)")
    prepare.set_defaults(func=run_prepare)
