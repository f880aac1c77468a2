"""A fast local offset-paginated source for the benchmark.

The demo source builds every record on request, which caps it near 20,000 records/s: too
slow to show what a loader can do. This one renders each record once at start-up (the
same FHIR-shaped patients as the demo source) and answers a page by joining bytes, so the
source costs as little as a real API's cache would, and what is measured is the loader.

``GET /patients?skip=S&limit=L`` answers ``{"total": N, "items": [...]}`` with
``X-Total-Count``; ``--latency-ms`` delays every answer; ``--max-limit`` caps the page size
like an API that silently serves fewer rows than asked. For the resume measurement,
``POST /_control?fail_from=S`` makes every page at or past ``S`` answer 503 until
``POST /_control?fail_from=-1``, and ``GET /_stats`` counts the page requests served.
"""

import argparse
import asyncio
import json

import orjson
import uvicorn

from etl_assets.demo.records import patient


def render(count: int) -> list[bytes]:
    out = []
    for i in range(count):
        record = patient(i)
        try:
            out.append(orjson.dumps(record))
        except TypeError:  # integers beyond 64 bits
            out.append(json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode())
    return out


def make_app(rendered: list[bytes], latency: float, max_limit: int | None):
    total = len(rendered)
    head = b'{"total":%d,"items":[' % total
    state = {"fail_from": -1, "pages": 0}

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        query = dict(
            part.split("=", 1) for part in scope["query_string"].decode().split("&") if "=" in part
        )
        if scope["path"] == "/health":
            body, status = b'{"ok":true}', 200
        elif scope["path"] == "/_control":
            state["fail_from"] = int(query.get("fail_from", -1))
            body, status = b'{"ok":true}', 200
        elif scope["path"] == "/_stats":
            body, status = b'{"pages":%d}' % state["pages"], 200
        elif scope["path"] != "/patients":
            body, status = b'{"error":"not found"}', 404
        else:
            skip = int(query.get("skip", 0))
            limit = int(query.get("limit", 100))
            if max_limit is not None:
                limit = min(limit, max_limit)
            if latency:
                await asyncio.sleep(latency)
            state["pages"] += 1
            if 0 <= state["fail_from"] <= skip:
                body, status = b'{"error":"unavailable"}', 503
            else:
                body, status = head + b",".join(rendered[skip : skip + limit]) + b"]}", 200
        await send({
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"x-total-count", str(total).encode())],
        })
        await send({"type": "http.response.body", "body": body})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--max-limit", type=int, default=None)
    args = parser.parse_args()
    app = make_app(render(args.records), args.latency_ms / 1000, args.max_limit)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False, lifespan="off")


if __name__ == "__main__":
    main()
