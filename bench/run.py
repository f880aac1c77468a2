"""``make bench``: this project's extract side by side with dlt and with the machine's ceilings.

Starts the bench source (``bench/source.py``) on loopback and uses the machine's PostgreSQL.
Every loader runs in a child process of its own, alternating with the others, several times;
each run loads into a fresh schema and its row count is checked in the database. Measured
per run: rows per second of the load (imports and start-up left out, for every loader
alike), CPU seconds of the loader's process tree and of PostgreSQL, and the peak resident
memory of the loader's process tree (sampled every 20 ms, all processes summed, so dlt's
normalize workers count). The table and the targets of the benchmark issue go to stdout and
to ``bench/RESULTS.md``, with, for each latency setting, where one more (profiled) project
run's time went per page: the main thread's wait on PostgreSQL, CPU per thread, PostgreSQL's
and the source's CPU, and the garbage collector's pauses.

PostgreSQL's CPU is read from ``/proc``: every server process's own time plus the time of
backends that ended, which the postmaster collects when it reaps them.
"""

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import sqlalchemy as sa

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PYTHON = sys.executable
DLT_VENV = ROOT / ".bench" / "dlt-venv"
DLT_VERSION = "1.31.0"
DLT_TUNING = {
    "NORMALIZE__WORKERS": "3",
    "DATA_WRITER__DISABLE_COMPRESSION": "true",
    "SOURCES__DATA_WRITER__FILE_MAX_BYTES": "1000000",
}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


# -- processes and /proc ----------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from the 3rd (state) on


def _processes() -> dict[int, list[str]]:
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) is not None:
            out[int(entry)] = fields
    return out


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def postgres_cpu_seconds() -> float:
    """CPU of every PostgreSQL process, plus what the postmaster collected from ended ones."""
    procs = _processes()
    total = 0
    for pid, fields in procs.items():
        if not _comm(pid).startswith("postgres"):
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
        parent = int(fields[1])
        if parent not in procs or not _comm(parent).startswith("postgres"):
            total += int(fields[13]) + int(fields[14])  # cutime, cstime of the postmaster
    return total / CLOCK_TICKS


def tree_rss_bytes(root: int) -> int:
    procs = _processes()
    children: dict[int, list[int]] = {}
    for pid, fields in procs.items():
        children.setdefault(int(fields[1]), []).append(pid)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        if pid in procs:
            total += int(procs[pid][21]) * PAGE_SIZE  # rss in pages
        todo.extend(children.get(pid, []))
    return total


@dataclass
class Measured:
    rows: int
    seconds: float
    cpu: float
    pg_cpu: float
    rss_mb: float
    wall: float
    extract_seconds: float | None = None


def run_measured(argv: list[str], env: dict[str, str] | None = None) -> tuple[dict, Measured]:
    """Run a loader; return its JSON line and what was measured around it."""
    pg_before = postgres_cpu_seconds()
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, tree_rss_bytes(proc.pid))
            stop.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    stop.set()
    sampler.join()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} exited {proc.returncode}:\n{err.decode()[-3000:]}")
    children = _children_usage()
    result = json.loads(out.decode().strip().splitlines()[-1])
    return result, Measured(
        rows=result.get("rows") or 0,
        seconds=result["seconds"],
        cpu=children,
        pg_cpu=postgres_cpu_seconds() - pg_before,
        rss_mb=max(peak, 0) / 2**20,
        wall=wall,
        extract_seconds=result.get("extract_seconds"),
    )


_last_children = [0.0]


def _children_usage() -> float:
    """CPU seconds of the children reaped since the last call (the loader and its workers)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    now = usage.ru_utime + usage.ru_stime
    delta, _last_children[0] = now - _last_children[0], now
    return delta


# -- the source ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Source:
    """``bench/source.py`` in a child process, stopped by its own PID."""

    def __init__(self, records: int, latency_ms: float = 0, max_limit: int | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.argv = [PYTHON, str(HERE / "source.py"), "--port", str(self.port), "--records", str(records),
                     "--latency-ms", str(latency_ms)] + (["--max-limit", str(max_limit)] if max_limit else [])
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Source":
        self.proc = subprocess.Popen(self.argv, cwd=ROOT)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("the bench source exited")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("the bench source did not start")

    def control(self, fail_from: int) -> None:
        httpx.post(f"{self.url}/_control", params={"fail_from": fail_from}).raise_for_status()

    def pages_served(self) -> int:
        return httpx.get(f"{self.url}/_stats").json()["pages"]

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        fields = _stat(self.proc.pid)
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS if fields else 0.0

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- the loaders ----------------------------------------------------------------------------------


@dataclass
class Bench:
    database_url: str
    schemas: list[str] = field(default_factory=list)
    sqlite_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="etl-bench-sqlite-")))

    def schema(self) -> str:
        name = f"bench_{uuid.uuid4().hex[:10]}"
        self.schemas.append(name)
        return name

    def count(self, schema: str, table: str) -> int:
        engine = sa.create_engine(self.database_url)
        try:
            with engine.connect() as conn:
                return conn.execute(sa.text(f'SELECT count(*) FROM "{schema}"."{table}"')).scalar_one()
        finally:
            engine.dispose()

    def drop_schemas(self) -> None:
        engine = sa.create_engine(self.database_url)
        with engine.begin() as conn:
            for name in self.schemas:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
                # dlt's merge stages each load in a dataset of its own next to the target one
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}_staging" CASCADE'))
        engine.dispose()
        self.schemas.clear()

    def run(
        self, loader: str, source: Source, *, expected: int | None, limit: int, **options: object
    ) -> Measured:
        """One measured run of ``loader``; its rows are counted in the database."""
        if loader in ("dlt", "dlt-defaults"):
            schema = self.schema()
            env = dict(os.environ, RUNTIME__LOG_LEVEL="WARNING", RUNTIME__DLTHUB_TELEMETRY="false")
            if loader == "dlt":
                env.update(DLT_TUNING)
            env["DESTINATION__POSTGRES__CREDENTIALS"] = dlt_credentials(self.database_url)
            argv = [str(DLT_VENV / "bin" / "python"), str(HERE / "dlt_loader.py"), "--url", source.url,
                    "--schema", schema, "--limit", str(limit)] + (["--defaults"] if loader == "dlt-defaults" else [])
            _, measured = run_measured(argv, env)
            measured.rows = self.count(schema, "patients")
        else:
            sqlite = options.pop("sqlite", False)
            schema = "" if sqlite else self.schema()
            database_url = (
                f"sqlite:///{self.sqlite_dir / (uuid.uuid4().hex + '.db')}" if sqlite else self.database_url
            )
            argv = [PYTHON, str(HERE / "loaders.py"), loader, "--url", source.url, "--database-url", database_url,
                    "--schema", schema, "--limit", str(limit)]
            for key, value in options.items():
                argv += [f"--{key.replace('_', '-')}"] + ([] if value is True else [str(value)])
            _, measured = run_measured(argv)
            if loader in ("copy", "executemany"):
                measured.rows = self.count(schema, "bench_rows")
            elif loader == "project":
                measured.rows = self.count_project(database_url, schema)
        if expected is not None and measured.rows != expected:
            raise RuntimeError(f"{loader}: {measured.rows} rows loaded, {expected} expected")
        return measured

    def count_project(self, database_url: str, schema: str) -> int:
        engine = sa.create_engine(database_url)
        table = f'"{schema}".stg_patients' if schema else "stg_patients"
        try:
            with engine.connect() as conn:
                return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
        finally:
            engine.dispose()


def dlt_credentials(database_url: str) -> str:
    """dlt's PostgreSQL credentials need a password even where the server trusts the user."""
    url = sa.make_url(database_url).set(drivername="postgresql")
    if not url.password:
        url = url.set(password="bench")
    return url.render_as_string(hide_password=False)


def ensure_dlt() -> None:
    python = DLT_VENV / "bin" / "python"
    if python.exists() and subprocess.run(
        [str(python), "-c", f"import dlt, psycopg2; assert dlt.__version__ == '{DLT_VERSION}'"],
        capture_output=True,
    ).returncode == 0:
        return
    print(f"installing dlt {DLT_VERSION} into {DLT_VENV} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(DLT_VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         f"dlt[postgres]=={DLT_VERSION}"],
        check=True,
    )


# -- reporting ------------------------------------------------------------------------------------


@dataclass
class Row:
    scenario: str
    loader: str
    runs: list[Measured]

    @property
    def rates(self) -> list[float]:
        return [m.rows / m.seconds for m in self.runs]

    @property
    def median(self) -> float:
        return statistics.median(self.rates)


def table(rows: list[Row]) -> str:
    lines = [
        "| scenario | loader | rows/s (median) | min - max | in the asset | loader CPU s | PostgreSQL CPU s "
        "| peak RSS MB | runs |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        runs = row.runs
        inner = [m.rows / m.extract_seconds for m in runs if m.extract_seconds]
        lines.append(
            f"| {row.scenario} | {row.loader} | {row.median:,.0f} | {min(row.rates):,.0f} - {max(row.rates):,.0f} | "
            f"{f'{statistics.median(inner):,.0f}' if inner else ''} | "
            f"{statistics.median(m.cpu for m in runs):.1f} | {statistics.median(m.pg_cpu for m in runs):.1f} | "
            f"{max(m.rss_mb for m in runs):.0f} | {len(runs)} |"
        )
    return "\n".join(lines)


def alternate(bench: Bench, scenario: str, source: Source, loaders: dict[str, dict], repeats: int,
              expected: int, limit: int, *, swap: bool = False) -> dict[str, Row]:
    """Run each loader ``repeats`` times, one of each in turn. With ``swap`` the order reverses
    every round (AB BA AB ...), so that run ``i`` of two loaders forms a pair measured side by
    side, neither always first: see :func:`paired_ratio`."""
    rows = {name: Row(scenario, name, []) for name in loaders}
    for n in range(repeats):
        order = list(loaders.items())
        if swap and n % 2:
            order.reverse()
        for name, options in order:
            loader = options.get("loader", name)
            kwargs = {k: v for k, v in options.items() if k != "loader"}
            measured = bench.run(loader, source, expected=expected, limit=limit, **kwargs)
            rows[name].runs.append(measured)
            print(f"  {scenario:<24} {name:<26} run {n + 1}: {measured.rows / measured.seconds:>9,.0f} rows/s  "
                  f"cpu {measured.cpu:5.1f} s  pg {measured.pg_cpu:4.1f} s  rss {measured.rss_mb:5.0f} MB", flush=True)
        bench.drop_schemas()
    return rows


def paired_ratio(numerator: Row, denominator: Row) -> list[float]:
    """Per-pair ratios of two rows measured with ``alternate(..., swap=True)``.

    The machine's speed drifts by about 10% over a minute (the source, the loader and
    PostgreSQL share two cores with whatever else runs), more than the few percent a
    checkpoint costs; two runs taken back to back share the drift, so the median of their
    ratios sees the difference the medians of each side blur."""
    return [a.rows / a.seconds / (b.rows / b.seconds) for a, b in zip(numerator.runs, denominator.runs, strict=True)]


def inner_ratio(numerator: Row, denominator: Row) -> list[float]:
    """:func:`paired_ratio` of the rows/s inside the asset (Dagster's own work left out)."""
    return [b.extract_seconds / a.extract_seconds for a, b in zip(numerator.runs, denominator.runs, strict=True)
            if a.extract_seconds and b.extract_seconds]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get(
        "ETL_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--latency-records", type=int, default=50_000)
    parser.add_argument("--big-records", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes, one run each (a smoke test)")
    parser.add_argument("--output", default=str(HERE / "RESULTS.md"))
    args = parser.parse_args()
    if args.quick:
        args.records, args.latency_records, args.big_records, args.repeats = 5_000, 1_000, 20_000, 1
    ensure_dlt()
    bench = Bench(args.database_url)
    n, n_lat = args.records, args.latency_records
    report: list[Row] = []
    extra: list[str] = []

    print(f"no latency, {n:,} records, page size 1000", flush=True)
    with Source(n) as source:
        fast = alternate(bench, "no latency", source, {
            "project (Dagster)": {"loader": "project"},
            "fetch-only ceiling": {"loader": "fetch"},
            "COPY-only ceiling": {"loader": "copy"},
            "naive executemany": {"loader": "executemany"},
            "dlt defaults, merge": {"loader": "dlt-defaults"},
            "dlt tuned, merge": {"loader": "dlt"},
        }, args.repeats, n, 1000)
        report += fast.values()

        print("checkpoint cost: interval 60 s against one per page", flush=True)
        cost = alternate(bench, "checkpoints", source, {
            "project, checkpoint every 60 s": {"loader": "project", "checkpoint_interval": 60},
            "project, checkpoint every page": {"loader": "project", "checkpoint_interval": 0},
        }, 2 * args.repeats + 2, n, 1000, swap=True)  # a few percent is within run-to-run noise: pairs
        report += cost.values()

        print("SQLite", flush=True)
        lite = alternate(bench, "SQLite", source, {"project into SQLite": {"loader": "project", "sqlite": True}},
                         args.repeats, n, 1000)
        report += lite.values()

        print("resume at 90%", flush=True)
        extra.append(resume_at_90(bench, source, n))

        print("where the time goes: one more project run, profiled", flush=True)
        extra.append(profile_run(bench, source, n, 1000, "without latency, pages of 1,000"))

    print(f"20 ms latency, {n_lat:,} records, page size 100", flush=True)
    with Source(n_lat, latency_ms=20) as source:
        slow = alternate(bench, "20 ms latency", source, {
            "project (Dagster), 4 in flight": {"loader": "project"},
            "fetch-only, sequential": {"loader": "fetch"},
            "dlt tuned, merge": {"loader": "dlt"},
        }, args.repeats, n_lat, 100)
        report += slow.values()
        print("where the time goes: one more project run, profiled", flush=True)
        extra.append(profile_run(bench, source, n_lat, 100, "with 20 ms latency, pages of 100"))

    print("a source that caps the page size at 500 when asked for 1000", flush=True)
    extra.append(capped_page_size(bench, min(n, 20_000)))

    print(f"memory: {n:,} against {args.big_records:,} records", flush=True)
    small_rss = max(m.rss_mb for m in fast["project (Dagster)"].runs)
    with Source(args.big_records) as source:
        big = alternate(bench, f"{args.big_records:,} records", source, {"project (Dagster)": {"loader": "project"}},
                        1, args.big_records, 1000)
    report += big.values()
    big_rss = big["project (Dagster)"].runs[0].rss_mb

    project, dlt_fast = fast["project (Dagster)"].median, fast["dlt defaults, merge"].median
    dlt_tuned = fast["dlt tuned, merge"].median
    ceiling_fetch, ceiling_copy = fast["fetch-only ceiling"].median, fast["COPY-only ceiling"].median
    lat_project, lat_fetch = slow["project (Dagster), 4 in flight"].median, slow["fetch-only, sequential"].median
    every_page, every_60 = cost["project, checkpoint every page"], cost["project, checkpoint every 60 s"]
    pair_cost = 1 - statistics.median(paired_ratio(every_page, every_60))
    inner_cost = 1 - statistics.median(inner_ratio(every_page, every_60))
    peak = max(m.rss_mb for row in report if row.loader.startswith("project") for m in row.runs)
    targets = [
        ("no latency: at least 10x dlt merge (defaults)", f"{project / dlt_fast:.1f}x", project / dlt_fast >= 10),
        ("no latency: against dlt tuned as its docs advise (no target)", f"{project / dlt_tuned:.1f}x", None),
        ("no latency: at least 40% of the fetch-only ceiling", f"{project / ceiling_fetch:.0%}",
         project / ceiling_fetch >= 0.4),
        ("no latency: share of the COPY-only ceiling (no target)", f"{project / ceiling_copy:.0%}", None),
        ("20 ms latency: at least 3x the sequential fetch-only ceiling", f"{lat_project / lat_fetch:.1f}x",
         lat_project / lat_fetch >= 3),
        ("20 ms latency: against dlt tuned merge (no target)", f"{lat_project / slow['dlt tuned, merge'].median:.1f}x",
         None),
        ("peak RSS of the project at most 200 MB", f"{peak:.0f} MB", peak <= 200),
        (f"peak RSS grows less than 10% from {n:,} to {args.big_records:,} records",
         f"{small_rss:.0f} -> {big_rss:.0f} MB ({big_rss / small_rss - 1:+.0%})", big_rss / small_rss < 1.10),
        (f"checkpoints cost at most 3% (every page against every 60 s; median of {len(every_page.runs)} "
         f"back-to-back pairs; inside the asset {inner_cost:+.1%}; the medians of each side {1 - every_page.median / every_60.median:+.1%})",
         f"{pair_cost:+.1%}", pair_cost <= 0.03),
    ]
    lines = [f"| {name} | {value} | {'yes' if ok else 'NO' if ok is not None else ''} |" for name, value, ok in targets]
    command = "make bench" + ("" if len(sys.argv) == 1 else " BENCH_ARGS=" + shlex.quote(shlex.join(sys.argv[1:])))
    text = "\n".join([
        "# Benchmark results",
        "",
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, `{command}`, {os.cpu_count()} cores "
        f"({platform.processor() or platform.machine()}), Python {platform.python_version()}, "
        f"PostgreSQL at `{sa.make_url(args.database_url).render_as_string()}`, dlt {DLT_VERSION}.",
        "Source, loader and PostgreSQL share the same cores. rows/s counts the load alone (start-up and imports",
        "left out for every loader; for the project, the whole `JobExecutor.execute_job` call, a Dagster",
        "materialization); \"in the asset\" is the project's rows/s inside the asset, without Dagster's own work",
        "for the run. CPU is the loader's process tree and PostgreSQL's; RSS is the loader's process tree,",
        "summed, sampled every 20 ms. Every run's row count was checked in the database.",
        "",
        table(report),
        "",
        "| target | measured | met |",
        "|---|---:|:---:|",
        *lines,
        "",
        *extra,
        "",
    ])
    print()
    print(text)
    if not args.quick:
        Path(args.output).write_text(text)
        print(f"written to {args.output}")


def capped_page_size(bench: Bench, n: int) -> str:
    """Correctness, not speed: the source serves at most 500 rows whatever the limit asked."""
    counts = {}
    with Source(n, max_limit=500) as source:
        for loader in ("project", "dlt"):
            counts[loader] = bench.run(loader, source, expected=None, limit=1000).rows
    bench.drop_schemas()
    return (f"Capped page size: the source serves 500 rows per page when asked for 1000, {n:,} records in all. "
            f"This project stored {counts['project']:,}; dlt tuned stored {counts['dlt']:,} "
            "(its offset paginator advances by the limit asked, not by the rows received).")


def profile_run(bench: Bench, source: Source, n: int, limit: int, scenario: str) -> str:
    """One more project run (not in the table), profiled from inside (``loaders.py --profile``):
    a paragraph saying where its time went, per page."""
    schema = bench.schema()
    source_before = source.cpu_seconds()
    result, measured = run_measured([PYTHON, str(HERE / "loaders.py"), "project", "--url", source.url,
                                     "--database-url", bench.database_url, "--schema", schema,
                                     "--limit", str(limit), "--profile"])
    source_cpu = source.cpu_seconds() - source_before
    bench.drop_schemas()
    profile = result["profile"]
    pages = profile["pages"] or 1
    inner = result["extract_seconds"]

    def ms(seconds: float) -> str:
        return f"{seconds * 1000 / pages:.1f} ms"

    threads = profile["thread_cpu"]
    gc_seconds = sum(g["seconds"] for g in profile["gc"].values())
    collections = ", ".join(f"{g['collections']} generation-{gen}" for gen, g in profile["gc"].items())
    write = profile["write"]["seconds"]
    return (
        f"Where the time goes {scenario} (one more project run, profiled, {n / inner:,.0f} rows/s in the asset; "
        f"per page of {limit:,}, {ms(inner)} in all): the main thread spent {ms(write)} writing pages "
        f"(the page's statement in PostgreSQL, and taking the GIL back after it) and {ms(inner - write)} on the rest "
        f"(waiting for the next parsed page, the progress update and commit, the loop); CPU per page: "
        f"parse worker {ms(threads.get('parse', 0))}, HTTP event loop {ms(threads.get('http', 0))}, main thread "
        f"{ms(threads.get('main', 0))}, PostgreSQL {ms(measured.pg_cpu)}, source {ms(source_cpu)}; of the loader's "
        f"CPU, the garbage collector's pauses took {ms(gc_seconds)} ({collections} collections)."
    )


def resume_at_90(bench: Bench, source: Source, n: int) -> str:
    """Fail a run at 90% of the records, heal the source, resume: count the pages fetched."""
    schema = bench.schema()
    fail_at = (n * 9 // 10) // 1000 * 1000
    common = [PYTHON, str(HERE / "loaders.py"), "project", "--url", source.url, "--database-url",
              bench.database_url, "--schema", schema, "--limit", "1000"]
    source.control(fail_at)
    run_measured(common + ["--allow-failure"])
    source.control(-1)
    before = source.pages_served()
    run_measured(common + ["--resume"])
    fetched = source.pages_served() - before
    stored = bench.count(schema, "stg_patients")
    remaining = -(-(n - fail_at) // 1000)
    bench.drop_schemas()
    if stored != n:
        raise RuntimeError(f"resume at 90%: {stored} rows stored, {n} expected")
    return (f"Resume at 90%: a run failed at skip={fail_at:,} (the source answered 503 from there on); after the "
            f"source healed, the resumed run fetched {fetched} pages for the {remaining} remaining "
            f"(target: the remaining pages plus at most one checkpoint interval), and {stored:,} rows are stored "
            f"once each.")


if __name__ == "__main__":
    main()
