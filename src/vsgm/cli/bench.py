"""Performance commands: ``vsgm bench`` (how close the model code runs to this machine's limit, see ``vsgm.bench``),
``vsgm seed-bench`` (against the seed's own code) and ``vsgm estimate`` (a config's device-hours)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

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


def cmd_seed_bench(args: argparse.Namespace) -> None:
    from ..guards import refuse_existing
    from ..io import write_json
    from ..seed_bench import SeedError, format_ratios, run_seed_bench

    if args.out:
        refuse_existing([args.out], args.overwrite)
    try:
        result = run_seed_bench(args.seed, args.channels, args.size, args.batch_size, args.repeats, args.autocast,
                                args.rounds)
    except SeedError as e:
        raise SystemExit(f"vsgm seed-bench: {e}") from None
    head = (f"vsgm seed-bench on {result['device']} ({result['threads']} threads), torch {result['torch']}, "
            f"{result['date']}; image {'x'.join(map(str, result['image']))}, batch {result['batch_size']}, "
            f"best of {result['repeats']} x {result['rounds']} alternating rounds; seed fp32, "
            f"vsgm autocast {result['vsgm_autocast']}")
    if result["placeholders"]:
        head += f"; not installed, unused by the timed code: {', '.join(result['placeholders'])}"
    print(format_ratios(result["rows"], head))
    if args.out:
        write_json(args.out, result)
        print(f"-> {args.out}")


def register_seed_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("seed-bench", help="time the seed's own SGM (a GenerativeZoo checkout) against vsgm")
    p.add_argument("--seed", required=True, help="path of a GenerativeZoo checkout (git clone of the public repo)")
    p.add_argument("--size", type=OPTIONS["size"], default=32, help="image size (default: 32)")
    p.add_argument("--channels", type=OPTIONS["channels"], default=1, help="image channels (default: 1)")
    p.add_argument("--batch_size", type=OPTIONS["batch_size"], default=128, help="batch size (default: 128)")
    p.add_argument("--repeats", type=OPTIONS["repeats"], default=3, help="timed repeats, best kept (default: 3)")
    p.add_argument("--rounds", type=OPTIONS["repeats"], default=2,
                   help="alternating rounds of the seed's and vsgm's timings, best kept (default: 2)")
    p.add_argument("--autocast", choices=["no", "bf16", "fp16"], default="no",
                   help="mixed precision of vsgm's timings (the seed's run fp32, as it trains by default); bf16 "
                        "only where the CPU or GPU has it natively, else fp32 with a warning")
    p.add_argument("--out", help="write the figures as JSON here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out (default: refuse)")
    p.set_defaults(func=cmd_seed_bench)


def nfe_pairs(texts: list[str]) -> dict[str, float]:
    """``NAME=N`` texts as {sampler: score evaluations per sample}; a one-line SystemExit on a bad one.

    Parsed here rather than as an argparse type: the pair is text, only its N is a number (in the
    ``nfe`` range of vsgm.domains).
    """
    pairs = {}
    for text in texts:
        name, sep, n = text.partition("=")
        if not (sep and re.fullmatch(r"[\w-]+", name)):
            raise SystemExit(f"vsgm estimate: --nfe takes NAME=N (e.g. ode-dopri5=150), got {text!r}")
        try:
            pairs[name] = OPTIONS["nfe"](n)
        except argparse.ArgumentTypeError as e:
            raise SystemExit(f"vsgm estimate: --nfe {name}: N {e}") from None
    return pairs


def cmd_estimate(args: argparse.Namespace) -> None:
    import csv
    import json

    import yaml

    from ..estimate import EstimateError, estimate, format_estimate
    from ..guards import refuse_existing
    from ..workflow import Plan
    from ..workflow_schema import ConfigError, load_schema

    nfe = nfe_pairs(args.nfe or [])
    if args.out:
        refuse_existing([args.out], args.overwrite)
    config = yaml.safe_load(Path(args.configfile).read_text())
    schema_path = Path(args.schema) if args.schema else Path(args.configfile).resolve().parents[1] / \
        "workflow" / "schemas" / "config.schema.yaml"
    if not schema_path.is_file():
        raise SystemExit(f"vsgm estimate: no config schema at {schema_path} (give --schema)")
    benches = [json.loads(Path(p).read_text()) for p in args.bench]
    try:
        rows, notes = estimate(Plan.checked(config, load_schema(schema_path)).config, benches, args.startup_s,
                               nfe)
    except (ConfigError, EstimateError) as e:
        raise SystemExit(f"vsgm estimate: {e}") from None
    print(format_estimate(rows, notes, sorted({b["device"] for b in benches})))
    if args.out:
        with open(args.out, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        print(f"-> {args.out}")


def register_estimate(sub: argparse._SubParsersAction) -> None:
    from ..estimate import STARTUP_S

    p = sub.add_parser("estimate", help="device-hours of a workflow config, per rule, from vsgm bench figures")
    p.add_argument("--configfile", required=True, help="the workflow config (e.g. config/benchmark.yaml)")
    p.add_argument("--bench", nargs="+", required=True, help="vsgm bench --out JSON, one per model shape")
    p.add_argument("--schema", help="the config schema (default: workflow/schemas/config.schema.yaml next to the "
                                    "config's folder)")
    p.add_argument("--startup_s", type=OPTIONS["startup_s"], default=STARTUP_S,
                   help=f"start-up seconds of one job (default: {STARTUP_S:g})")
    p.add_argument("--nfe", nargs="*", help="measured score evaluations per sample: NAME=N ...")
    p.add_argument("--out", help="write the table as CSV here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out (default: refuse)")
    p.set_defaults(func=cmd_estimate)
