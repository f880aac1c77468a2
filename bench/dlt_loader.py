"""dlt's REST API source into its PostgreSQL destination, merge on ``id``, tuned as its
performance docs advise. Runs inside the dlt virtual environment ``bench/run.py`` makes.

Tuning (set by the parent through the environment, see ``DLT_TUNING`` in ``run.py``): the
``csv`` loader file format (``COPY`` into PostgreSQL), uncompressed files, files rotated at
1 MB so three normalize workers share the work, and ``max_table_nesting=0`` so nested
objects stay jsonb like our staging tables. ``--defaults`` runs dlt as installed instead
(insert-values files, nested lists as child tables): the configuration most users start with.
Prints ``{"rows": null, "seconds": t}`` where ``seconds`` is ``pipeline.run`` alone; the
parent counts the rows in the database.
"""

import argparse
import json
import tempfile
import time

import dlt
from dlt.sources.rest_api import rest_api_source


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--defaults", action="store_true", help="dlt as installed, no tuning")
    args = parser.parse_args()
    source = rest_api_source(
        {
            "client": {
                "base_url": args.url,
                "paginator": {
                    "type": "offset",
                    "limit": args.limit,
                    "offset_param": "skip",
                    "limit_param": "limit",
                    "total_path": "total",
                },
            },
            "resource_defaults": {"primary_key": "id", "write_disposition": "merge"},
            "resources": [{"name": "patients", "endpoint": {"path": "patients", "data_selector": "items"}}],
        }
    )
    if not args.defaults:
        source.max_table_nesting = 0
    pipeline = dlt.pipeline(
        pipeline_name="bench",
        destination="postgres",
        dataset_name=args.schema,
        pipelines_dir=tempfile.mkdtemp(prefix="dlt-bench-"),
    )
    start = time.perf_counter()
    pipeline.run(source, **({} if args.defaults else {"loader_file_format": "csv"}))
    seconds = time.perf_counter() - start
    print(json.dumps({"rows": None, "seconds": seconds}))


if __name__ == "__main__":
    main()
