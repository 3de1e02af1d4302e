"""The ``vsgm`` command: train, sample, score, download, prepare, bench. ``vsgm CMD --help`` for each.

One module per command group registers its subcommands (``register(subparsers)``); each imports torch and
the modules that need it inside its command functions, so building the parser (``vsgm --help``,
``vsgm download``) stays torch-free.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Sequence

from .. import __version__
from ..data.commands import register as register_data
from ..options import OneLineParser
from . import bench, ood, quality, report, sample, train

log = logging.getLogger("vsgm")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="vsgm", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"vsgm {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train.register(sub)
    sample.register(sub)
    ood.register(sub)  # features, score, pair, ood
    quality.register(sub)  # classifier, quality, sweep
    report.register(sub)  # aggregate
    register_data(sub)  # download, prepare
    bench.register(sub)
    bench.register_seed_bench(sub)
    bench.register_estimate(sub)
    train.register_import(sub)  # import-seed
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

