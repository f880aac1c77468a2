"""Command line for the demo source: ``etl-assets demo-source`` or ``python -m etl_assets.demo.cli``.

:func:`add_arguments` and :func:`run` are separate so the package's top-level command can
mount them as a subcommand. Run this module with ``-m``: executed as a script, its
directory would come first on ``sys.path`` and ``etl_assets/demo/collections.py`` would
shadow the standard library's ``collections``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from etl_assets.demo.app import default_source
from etl_assets.demo.faults import Fault
from etl_assets.demo.records import ENCOUNTERS_PER_PATIENT, OBSERVATIONS_PER_PATIENT
from etl_assets.demo.server import LOOPBACK, serve

__all__ = ["add_arguments", "main", "run"]

DEFAULT_PORT = 8765
DEFAULT_PATIENTS = 1000


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _milliseconds(text: str) -> float:
    value = float(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _fault(text: str) -> Fault:
    try:
        return Fault.from_dict(json.loads(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid fault {text!r}: {exc}") from None


def _load_faults_file(path: Path) -> list[Fault]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise ValueError("a faults file must hold a JSON list of fault objects")
    return [Fault.from_dict(item) for item in data]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the demo source options to ``parser``."""
    parser.add_argument("--host", default=LOOPBACK, help="interface to bind (default: %(default)s)")
    parser.add_argument(
        "--port", type=_count, default=DEFAULT_PORT, help="port to bind; 0 picks a free one (default: %(default)s)"
    )
    parser.add_argument(
        "--patients",
        type=_count,
        default=DEFAULT_PATIENTS,
        metavar="N",
        help=f"patients to serve; encounters and observations are {ENCOUNTERS_PER_PATIENT}x and "
        f"{OBSERVATIONS_PER_PATIENT}x this (default: %(default)s)",
    )
    parser.add_argument(
        "--latency-ms", type=_milliseconds, default=0.0, metavar="MS", help="delay added to every data request"
    )
    parser.add_argument(
        "--max-limit",
        type=_positive,
        default=None,
        metavar="N",
        help="serve at most N items per page, whatever limit is asked for",
    )
    parser.add_argument(
        "--fault",
        type=_fault,
        action="append",
        default=[],
        metavar="JSON",
        help="""a fault to inject, as a JSON object such as '{"path": "/patients", "skip": 100, "status": 503, """
        """"times": null}' ("times": how many requests it answers, 1 if left out, null for every one); repeatable""",
    )
    parser.add_argument("--faults-file", type=Path, metavar="PATH", help="a JSON file holding a list of fault objects")


def run(args: argparse.Namespace) -> int:
    """Serve the demo source as ``args`` describe until SIGINT or SIGTERM.

    Prints ``demo source listening on URL (patients=..., encounters=..., observations=...)``
    once the port is bound, so a script can wait for that line (and read the port from
    it when ``--port 0`` was given).

    Returns:
        0 after a signal stopped the server; 2 when the faults file is unreadable or invalid.
    """
    faults: list[Fault] = list(args.fault)
    if args.faults_file is not None:
        try:
            faults.extend(_load_faults_file(args.faults_file))
        except (OSError, ValueError) as exc:
            print(f"error: faults file {args.faults_file}: {exc}", file=sys.stderr)
            return 2
    patients = args.patients
    source = default_source(patients, latency_seconds=args.latency_ms / 1000, max_limit=args.max_limit)
    for fault in faults:
        source.add_fault(fault)

    def announce(url: str) -> None:
        print(
            f"demo source listening on {url} (patients={patients}, "
            f"encounters={patients * ENCOUNTERS_PER_PATIENT}, observations={patients * OBSERVATIONS_PER_PATIENT})",
            flush=True,
        )

    serve(source, args.host, args.port, on_ready=announce)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and :func:`run`."""
    parser = argparse.ArgumentParser(prog="python -m etl_assets.demo.cli", description="Serve the demo source API.")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
