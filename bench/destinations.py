"""Benchmark of the HTTP endpoint and PostgreSQL destinations.

    python bench/destinations.py [--records 200000]

Starts a throwaway PostgreSQL, measures the ceiling (a plain `COPY` of the
same rows with psql), then the release `hydrant` binary loading the same
records through its postgres destination, and the same records to a Firehose
HTTP receiver. Records go in through the NDJSON endpoint in bulk so that the
producer is not what is measured.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("HYDRANT_BIN", str(ROOT / "target/release/hydrant"))

from harness import Hydrant, Postgres, Receiver, pg_bin, wait_until  # noqa: E402


def records(n):
    return [json.dumps({"id": f"r{i}", "n": i, "addr": {"city": "Oslo"}, "msg": "x" * 40}) for i in range(n)]


def send(h, lines, per_request=20_000):
    for i in range(0, len(lines), per_request):
        body = ("\n".join(lines[i:i + per_request]) + "\n").encode()
        req = urllib.request.Request(h.url + "/v1/streams/app/records", data=body, method="POST")
        with urllib.request.urlopen(req, timeout=120) as r:
            assert r.status == 200


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    n = ap.parse_args().records
    lines = records(n)
    pg = Postgres().start()
    work = Path(tempfile.mkdtemp(prefix="hydrant-bench-"))
    try:
        # Ceiling: COPY of the same rows with psql.
        pg.psql("CREATE TABLE ceiling (id text, n integer, city text)")
        tsv = work / "rows.tsv"
        tsv.write_text("".join(f"r{i}\t{i}\tOslo\n" for i in range(n)))
        t0 = time.monotonic()
        subprocess.run([pg_bin("psql"), "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres", "-d", "hydrant",
                        "-c", f"\\copy ceiling (id, n, city) from '{tsv}'"], check=True, capture_output=True,
                       env={**os.environ, "PGSSLMODE": "disable"})
        ceiling = n / (time.monotonic() - t0)

        pg.psql("CREATE TABLE events (id text, n integer, city text)")
        h = Hydrant(work / "pg", f"""streams:
  app:
    shards: 4
    buffering: {{ size_mb: 16, interval_secs: 1 }}
    destination:
      type: postgres
      connection: {pg.dsn}
      table: events
      columns: [ {{ column: id }}, {{ column: n }}, {{ column: city, field: addr.city }} ]
""", env={"HYDRANT_LOG": "warn"}).start()
        t0 = time.monotonic()
        send(h, lines)
        wait_until(lambda: int(pg.psql("SELECT count(*) FROM events")) >= n, timeout=600, interval=0.05, what="rows")
        via = n / (time.monotonic() - t0)
        h.terminate()

        rcv = Receiver(access_key=None)
        h2 = Hydrant(work / "http", f"""streams:
  app:
    shards: 4
    buffering: {{ size_mb: 4, interval_secs: 1 }}
    destination: {{ type: http, url: {rcv.url} }}
""", env={"HYDRANT_LOG": "warn"}).start()
        t0 = time.monotonic()
        send(h2, lines)
        wait_until(lambda: len(rcv.records) >= n, timeout=600, interval=0.05, what="records at the receiver")
        http_rate = n / (time.monotonic() - t0)
        h2.terminate()
        assert not rcv.violations, rcv.violations[:3]

        print(f"| PostgreSQL ceiling: psql \\copy of {n} rows | {ceiling:,.0f} rows/s |")
        print(f"| PostgreSQL via Hydrant (NDJSON in, COPY out, exactly-once ledger) | {via:,.0f} rows/s ({via / ceiling:.0%} of the ceiling) |")
        print(f"| HTTP endpoint via Hydrant (Python receiver checking every request) | {http_rate:,.0f} records/s |")
    finally:
        pg.cleanup()


if __name__ == "__main__":
    main()
