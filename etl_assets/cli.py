"""The ``etl-assets`` command."""

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="etl-assets", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    from etl_assets.demo import cli as demo_cli

    source = commands.add_parser("demo-source", help="serve the deterministic FHIR-shaped demo API")
    demo_cli.add_arguments(source)
    source.set_defaults(handler=demo_cli.run)

    from etl_assets import demo_run

    demo = commands.add_parser("demo", help="run the end-to-end demo (what `make demo` runs)")
    demo_run.add_arguments(demo)
    demo.set_defaults(handler=demo_run.run)

    from etl_assets import api, runs_cli

    runs = commands.add_parser("runs", help="list, show and retry dw_etl_runs rows")
    runs_cli.add_runs_arguments(runs)
    runs.set_defaults(handler=runs_cli.run_runs)

    checkpoint = commands.add_parser("checkpoint", help="show the checkpoint of a run")
    runs_cli.add_checkpoint_arguments(checkpoint)
    checkpoint.set_defaults(handler=runs_cli.run_checkpoint)

    server = commands.add_parser("api", help="serve the retry HTTP API")
    api.add_arguments(server)
    server.set_defaults(handler=api.run)

    args = parser.parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
