"""The ``vsgm`` command: train, sample, score, download, prepare, bench. ``vsgm CMD --help`` for each."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

from . import __version__
from .options import add_groups, defaults

log = logging.getLogger("vsgm")


def _options(args: argparse.Namespace, *groups: str) -> dict[str, Any]:
    return {k: getattr(args, k) for k in defaults(*groups)}


def _device(name: str | None) -> str:
    import torch

    if name:
        return name
    return "cuda" if torch.cuda.is_available() else "cpu"


def prepared_path(args: argparse.Namespace, split: str) -> Path:
    """Where ``vsgm train/ood`` cache a dataset prepared on the fly (when no --data is given)."""
    return Path("resources/prepared") / args.dataset / f"{split}-{args.size or 'native'}.safetensors"


def _prepare_on_the_fly(args: argparse.Namespace, split: str, channels: int | None = None,
                        bottleneck: int | None = None, size: int | None = None) -> Path:
    from .data import get_info, native_size, prepare

    info = get_info(args.dataset)
    size = size or args.size or native_size(args.dataset, None)
    if size is None:
        raise SystemExit(f"vsgm: --size is needed for {args.dataset} (its images have no fixed size)")
    out = Path("resources/prepared") / args.dataset / f"{split}-{size}px-{channels or info.channels}ch.safetensors"
    if not out.exists():
        prepare(args.dataset, split, args.root, out, size=size, channels=channels or info.channels,
                bottleneck=bottleneck)
    return out


def cmd_train(args: argparse.Namespace) -> None:
    from .train import train

    options = _options(args, "model", "sde", "data", "train", "sample")
    data = args.data or _prepare_on_the_fly(args, "train")
    meta = train(options, data, args.out_dir, resume=not args.restart)
    print(f"trained {meta['dataset']} to step {meta['step']}: {Path(args.out_dir) / 'model.safetensors'}")


def sampler_spec(args: argparse.Namespace):
    from .samplers import Grid, SamplerSpec, Solver, parse_sampler

    if args.sampler:
        return parse_sampler(args.sampler)
    kind = args.sampler_type.lower()
    if kind == "ode":
        return SamplerSpec("ode", Solver(args.solver), Grid(args.grid))
    return SamplerSpec(kind)


def cmd_sample(args: argparse.Namespace) -> None:
    from .models import load_trained
    from .sampling import draw, write_samples

    device = _device(args.device)
    model = load_trained(args.checkpoint, device)
    spec = sampler_spec(args)
    eps = args.eps if args.eps is not None else model.options["eps"]
    samples, cost = draw(model, spec, args.num_samples, args.batch_size, args.num_steps, eps, snr=args.snr,
                         atol=args.atol, rtol=args.rtol, cfg=args.cfg, seed=args.seed, device=device)
    cost["dataset"] = model.meta.get("dataset")
    prefix = args.out or str(Path(args.checkpoint).parent / "samples" / spec.name)
    paths = write_samples(samples, cost, prefix)
    print(f"{spec.name}: {args.num_samples} samples, NFE {cost['nfe']:.0f}, {cost['seconds']:.2f} s -> "
          + ", ".join(map(str, paths)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vsgm", description=__doc__)
    parser.add_argument("--version", action="version", version=f"vsgm {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a score model (run it under `accelerate launch` for several processes)")
    add_groups(p, "data", "model", "sde", "train", "sample")
    p.add_argument("--data", help="prepared training split (vsgm prepare); default: prepare --dataset on the fly")
    p.add_argument("--out_dir", required=True, help="directory for model.safetensors, train.csv, resume files")
    p.add_argument("--restart", action="store_true", help="ignore an existing resume checkpoint")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="sample a trained model with one sampler")
    p.add_argument("--checkpoint", required=True, help="model.safetensors written by vsgm train")
    p.add_argument("--sampler", help="em, pc, ode-<solver> or ode-<solver>-logstd (overrides --sampler_type etc.)")
    add_groups(p, "sample")
    p.add_argument("--eps", type=float, default=None, help="smallest time (default: the model's)")
    p.add_argument("--batch_size", type=int, default=128, help="samples per batch (default: 128)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--out", help="output prefix for .png/.npz/.json (default: <checkpoint dir>/samples/<sampler>)")
    p.set_defaults(func=cmd_sample)

    from .data.commands import register as register_data

    register_data(sub)
    for extra in ("vsgm.ood_cli", "vsgm.bench"):
        try:
            module = __import__(extra, fromlist=["register"])
        except ImportError:
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        # one line for the user; the traceback with -v
        if args.verbose:
            raise
        print(f"vsgm {args.command}: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
