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

    args = parser.parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
