"""``python -m etl_assets_tests.torture``: the full torture suite, with its table (``make torture``)."""

import argparse
import sys
import tempfile
import time
from pathlib import Path

from etl_assets_tests.torture import __doc__ as DOC
from etl_assets_tests.torture import FAULT_KINDS, run, table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=DOC.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=40, help="how many seeds (default 40)")
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--records", type=int, default=3000, help="source records per seed (default 3000)")
    parser.add_argument("--faults", default=",".join(FAULT_KINDS),
                        help=f"comma-separated fault kinds to draw from (default all: {','.join(FAULT_KINDS)})")
    parser.add_argument("--workdir", type=Path, help="where attempt logs go (default: a new temporary folder)")
    args = parser.parse_args(argv)
    kinds = tuple(k.strip() for k in args.faults.split(",") if k.strip())
    unknown = sorted(set(kinds) - set(FAULT_KINDS))
    if unknown or not kinds:
        parser.error(f"--faults: unknown kind(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(FAULT_KINDS)}")
    if args.seeds < 1 or args.records < 1:
        parser.error("--seeds and --records must be 1 or more")
    began = time.monotonic()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="etl-torture-"))
    print(f"attempt logs in {workdir}", flush=True)
    reports = run(list(range(args.first_seed, args.first_seed + args.seeds)), args.records, workdir,
                  echo=lambda line: print(line, flush=True), kinds=kinds)
    print(table(reports, time.monotonic() - began))
    return 1 if any(r.violations for r in reports) else 0




if __name__ == "__main__":
    sys.exit(main())
