"""``vsgm bench``: how close the model code runs to this machine's limit (see ``vsgm.bench``)."""

from __future__ import annotations

import argparse

from ..domains import OPTIONS
from ..options import add_groups, defaults, option


def cmd_bench(args: argparse.Namespace) -> None:
    unsupported = [f"--{name}" for name in ("conditional", "latent") if getattr(args, name)]
    if unsupported:
        raise ValueError(f"vsgm bench times the unconditional pixel-space UNet; {' and '.join(unsupported)} "
                         "cannot be timed")
    from ..bench import format_table, run_bench
    from ..device import pick_device
    from ..guards import refuse_existing
    from ..io import write_json

    options = {k: getattr(args, k) for k in [*defaults("model", "sde"), "micro_batch"]}
    if args.out:
        refuse_existing([args.out], args.overwrite)
    device = pick_device(args.device)
    result = run_bench(options, args.channels, args.size or 32, args.batch_size, device, args.repeats,
                       args.samplers, args.sampler_batch, args.autocast)
    print(format_table(result))
    if args.out:
        write_json(args.out, result)
        print(f"-> {args.out}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure training, inference, scoring, sampling and data-loading speed")
    add_groups(p, "model", "sde")
    p.add_argument("--size", type=OPTIONS["size"], default=32, help="image size (default: 32)")
    p.add_argument("--channels", type=OPTIONS["channels"], default=1, help="image channels (default: 1)")
    p.add_argument("--batch_size", type=OPTIONS["batch_size"], default=128, help="batch size (default: 128)")
    option("micro_batch").add_to(p)
    p.add_argument("--repeats", type=OPTIONS["repeats"], default=3, help="timed repeats, best kept (default: 3)")
    p.add_argument("--samplers", nargs="*", default=["em", "pc", "ode-euler", "ode-rk4", "ode-rk4-logstd"],
                   help="samplers to time")
    p.add_argument("--sampler_batch", type=OPTIONS["sampler_batch"], default=16,
                   help="batch of the sampler timings (default: 16)")
    p.add_argument("--autocast", choices=["no", "bf16", "fp16"], default="no",
                   help="mixed precision for the model timings (GPU: bf16)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--out", help="write the figures as JSON here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out (default: refuse)")
    p.set_defaults(func=cmd_bench)
