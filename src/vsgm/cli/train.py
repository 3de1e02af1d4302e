"""``vsgm train`` and ``vsgm import-seed``: the commands that write a model directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..domains import OPTIONS
from ..options import add_groups, defaults
from .common import options_of


def _prepare_on_the_fly(args: argparse.Namespace, split: str) -> Path:
    from ..data import get_info, native_size, prepare

    info = get_info(args.dataset)
    size = args.size or native_size(args.dataset, None)
    if size is None:
        raise SystemExit(f"vsgm: --size is needed for {args.dataset} (its images have no fixed size)")
    out = Path("resources/prepared") / args.dataset / f"{split}-{size}px-{info.channels}ch.safetensors"
    if not out.exists():
        prepare(args.dataset, split, args.root, out, size=size, channels=info.channels)
    return out


def cmd_train(args: argparse.Namespace) -> None:
    from ..checks import check_train_options
    from ..guards import check_out_dir
    from ..train import check_not_finished, train

    options = options_of(args, "model", "sde", "data", "train", "sample")
    check_out_dir(args.out_dir)  # before any data is prepared or read
    if not args.restart:
        check_not_finished(args.out_dir)
    check_train_options(options)
    data = args.data or _prepare_on_the_fly(args, "train")
    meta = train(options, data, args.out_dir, resume=not args.restart)
    print(f"trained {meta['dataset']} to step {meta['step']}: {Path(args.out_dir) / 'model.safetensors'}")


def cmd_import_seed(args: argparse.Namespace) -> None:
    from ..data import get_info, native_size
    from ..guards import refuse_existing
    from ..seed_import import import_seed

    if args.latent:
        raise SystemExit("vsgm import-seed: --latent: the seed's latent models (LatSGM) are not supported; "
                         "import a pixel-space model")
    size = args.size or native_size(args.dataset, None)
    if size is None:
        raise SystemExit(f"vsgm import-seed: --size is needed for {args.dataset} (its images have no fixed size)")
    out = Path(args.out_dir)
    refuse_existing([out / "model.safetensors", out / "model.json", out / "train.csv"], args.overwrite)
    options = {**defaults(), **options_of(args, "model", "sde"), "dataset": args.dataset, "size": size}
    import_seed(args.checkpoint, options, out, get_info(args.dataset).channels, size)
    print(f"imported {args.checkpoint} (the seed's {args.dataset} model): {out / 'model.safetensors'}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a score model (run it under `accelerate launch` for several processes)")
    add_groups(p, "data", "model", "sde", "train", "sample")
    p.add_argument("--data", help="prepared training split (vsgm prepare); default: prepare --dataset on the fly")
    p.add_argument("--out_dir", required=True, help="directory for model.safetensors, train.csv, resume files")
    p.add_argument("--restart", action="store_true",
                   help="start from scratch: ignore a resume checkpoint, replace a finished model")
    p.set_defaults(func=cmd_train)


def register_import(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import-seed", help="a checkpoint written by the seed's VanSGM.py as a vsgm model directory")
    p.add_argument("--checkpoint", required=True, help="the seed's .pt file (e.g. models/SGM/VanSGM_svhn.pt)")
    p.add_argument("--dataset", required=True, help="the dataset it was trained on")
    p.add_argument("--size", type=OPTIONS["size"], help="image size it was trained at (default: the dataset's native size)")
    p.add_argument("--out_dir", required=True, help="model directory for model.safetensors, model.json, train.csv")
    p.add_argument("--overwrite", action="store_true", help="replace a model already in --out_dir")
    add_groups(p, "model", "sde")
    p.set_defaults(func=cmd_import_seed)
