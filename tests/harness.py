"""Helpers that start the real services the tests use: Garage (an S3-compatible
store) and the real `hydrant` binary, each on free loopback ports in a temp
directory, and stop them afterwards."""

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config as BotoConfig

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout=30.0, interval=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - keep polling until the deadline
            last = e
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def find_garage() -> str:
    path = shutil.which("garage") or str(Path.home() / ".cargo/bin/garage")
    if not os.access(path, os.X_OK):
        raise RuntimeError("garage is not installed; run scripts/test.sh, which installs it")
    return path


class Garage:
    """A single-node Garage cluster on loopback with one access key."""

    def __init__(self, workdir: Path):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.s3_port = free_port()
        self.rpc_port = free_port()
        self.admin_port = free_port()
        self.bin = find_garage()
        self.config = self.dir / "garage.toml"
        self.config.write_text(
            f"""
metadata_dir = "{self.dir}/meta"
data_dir = "{self.dir}/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{self.rpc_port}"
rpc_public_addr = "127.0.0.1:{self.rpc_port}"
rpc_secret = "{secrets.token_hex(32)}"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:{self.s3_port}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{self.admin_port}"
admin_token = "{secrets.token_hex(16)}"
"""
        )
        self.config.chmod(0o600)
        self.proc = None
        self.key_id = None
        self.secret = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def cli(self, *args) -> str:
        out = subprocess.run(
            [self.bin, "-c", str(self.config), *args],
            capture_output=True, text=True, timeout=60,
        )
        if out.returncode != 0:
            raise RuntimeError(f"garage {' '.join(args)} failed: {out.stderr}{out.stdout}")
        return out.stdout

    def start(self, first_time=True):
        self.log = open(self.dir / "garage.log", "ab")
        self.proc = subprocess.Popen(
            [self.bin, "-c", str(self.config), "server"],
            stdout=self.log, stderr=subprocess.STDOUT,
            env={**os.environ, "RUST_LOG": "garage=warn"},
        )
        wait_until(lambda: self._port_open(self.s3_port), what="garage s3 port")
        if first_time:
            node = wait_until(self._node_id, what="garage node id")
            self.cli("layout", "assign", "-z", "dc1", "-c", "1G", node)
            self.cli("layout", "apply", "--version", "1")
            out = self.cli("key", "create", "hydrant-test")
            self.key_id = re.search(r"Key ID:\s*(\S+)", out).group(1)
            self.secret = re.search(r"Secret key:\s*(\S+)", out).group(1)
        return self

    def _node_id(self):
        out = self.cli("node", "id", "-q")
        return out.strip().split("@")[0]

    @staticmethod
    def _port_open(port):
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    def create_bucket(self, name):
        self.cli("bucket", "create", name)
        self.cli("bucket", "allow", "--read", "--write", "--owner", name, "--key", self.key_id)

    def s3(self):
        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name="garage",
            aws_access_key_id=self.key_id, aws_secret_access_key=self.secret,
            config=BotoConfig(s3={"addressing_style": "path"}),
        )

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def hydrant_bin() -> str:
    return os.environ.get("HYDRANT_BIN", str(ROOT / "target/debug/hydrant"))


class Hydrant:
    """The real hydrant binary with a generated config."""

    # Every daemon the running test made, for the failure report.
    made: list = []

    def __init__(self, workdir: Path, config_body: str, env=None, port=None):
        Hydrant.made.append(self)
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.data_dir = self.dir / "data"
        self.config = self.dir / "hydrant.yaml"
        self.config.write_text(
            f"listen: 127.0.0.1:{self.port}\ndata_dir: {self.data_dir}\n" + config_body
        )
        self.env = {**os.environ, "HYDRANT_LOG": "info,hydrant=debug", **(env or {})}
        self.proc = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait=True):
        self.starts += 1
        self.log = open(self.dir / f"hydrant-{self.starts}.log", "wb")
        self.proc = subprocess.Popen(
            [hydrant_bin(), "run", "-c", str(self.config)],
            stdout=self.log, stderr=subprocess.STDOUT, env=self.env,
        )
        if wait:
            # Generous: a first start compiles its WebAssembly components.
            wait_until(self.healthy, timeout=90, what="hydrant /health")
        return self

    def healthy(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"hydrant exited with {self.proc.returncode}: {self.logs()[-2000:]}")
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.dir.glob("hydrant-*.log")))

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def terminate(self, timeout=60) -> int:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            return self.proc.wait(timeout)
        return self.proc.returncode if self.proc else 0

    def firehose(self, **kw):
        return boto3.client(
            "firehose", endpoint_url=self.url, region_name="us-east-1",
            aws_access_key_id=kw.get("key", "test"), aws_secret_access_key=kw.get("secret", "test"),
            config=BotoConfig(retries={"total_max_attempts": 1, "mode": "standard"}),
        )

    def kinesis(self, **kw):
        return boto3.client(
            "kinesis", endpoint_url=self.url, region_name="us-east-1",
            aws_access_key_id=kw.get("key", "test"), aws_secret_access_key=kw.get("secret", "test"),
            config=BotoConfig(retries={"total_max_attempts": 1, "mode": "standard"}),
        )

    def analytics(self, **kw):
        return boto3.client(
            "kinesisanalytics", endpoint_url=self.url, region_name="us-east-1",
            aws_access_key_id=kw.get("key", "test"), aws_secret_access_key=kw.get("secret", "test"),
            config=BotoConfig(retries={"total_max_attempts": 1, "mode": "standard"}),
        )

    def metric(self, name, **labels) -> float:
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as r:
            text = r.read().decode()
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(f"hydrant_{name}"):
                continue
            m = re.match(r"^(\w+)(\{[^}]*\})?\s+(\S+)", line)
            if not m or m.group(1) not in (f"hydrant_{name}", f"hydrant_{name}_total"):
                continue
            lab = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
            if all(lab.get(k) == v for k, v in labels.items()):
                total += float(m.group(3))
        return total

    def get(self, path):
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as r:
                return r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read(), dict(e.headers)

    def post(self, path, body: bytes, headers=None):
        req = urllib.request.Request(self.url + path, data=body, method="POST", headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read(), dict(e.headers)


def read_objects(store, bucket_or_dir, prefix=""):
    """Every object under a destination as {key: bytes}; `store` is a boto3 S3
    client or None for a file destination directory."""
    out = {}
    if store is None:
        base = Path(bucket_or_dir)
        if base.exists():
            for p in base.rglob("*"):
                if p.is_file() and not p.name.startswith("."):
                    key = str(p.relative_to(base))
                    if key.startswith(prefix):
                        out[key] = p.read_bytes()
        return out
    paginator = store.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket_or_dir, Prefix=prefix):
        for obj in page.get("Contents", []):
            out[obj["Key"]] = store.get_object(Bucket=bucket_or_dir, Key=obj["Key"])["Body"].read()
    return out


def records_in(objects: dict) -> list:
    """Decompresses (by extension) and splits objects into JSON lines."""
    import gzip

    lines = []
    for key, body in sorted(objects.items()):
        if key.endswith(".gz"):
            body = gzip.decompress(body)
        lines.extend(line for line in body.decode().splitlines() if line)
    return lines


def dump(value) -> str:
    return json.dumps(value, separators=(",", ":"))


def wait_for_lines(read, n, timeout=60):
    """Waits until `read()` (-> {key: bytes}) holds at least n records, and
    returns them."""

    def enough():
        lines = records_in(read())
        return lines if len(lines) >= n else None

    return wait_until(enough, timeout=timeout, what=f"{n} delivered records")


class Proxy:
    """A TCP proxy on loopback in front of a service, to take it down or slow
    it without touching the service: `down` closes every new connection at
    once (and cuts the open ones); `stall` holds new connections open and
    never answers them (until close); `bytes_per_sec` throttles both ways."""

    def __init__(self, target_port: int):
        import threading

        self.target_port = target_port
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.down = False
        self.bytes_per_sec = None
        self.stall = False
        self.stalled = []
        self.conns = []
        self.closed = False
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def _accept(self):
        import threading

        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                if self.closed:
                    return
                # A transient failure (a connection aborted before it was
                # accepted, no file descriptor free): keep serving.
                time.sleep(0.01)
                continue
            if self.down:
                client.close()
                continue
            if self.stall:
                with self.lock:
                    self.stalled.append(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self.lock:
                # Taken down while connecting: cut it as set_down cut the rest.
                if self.down:
                    client.close()
                    upstream.close()
                    continue
                self.conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, src, dst):
        try:
            while True:
                chunk = src.recv(65536)
                if not chunk or self.down:
                    break
                if self.bytes_per_sec:
                    time.sleep(len(chunk) / self.bytes_per_sec)
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def set_down(self, down: bool):
        with self.lock:
            self.down = down
            if down:
                for c in self.conns:
                    try:
                        c.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                self.conns = []

    def close(self):
        self.closed = True
        self.set_down(True)
        with self.lock:
            for c in self.stalled:
                c.close()
            self.stalled = []
        self.sock.close()


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def log_disk_bytes(data_dir) -> int:
    return sum(p.stat().st_size for p in Path(data_dir).rglob("*.seg"))


class Producers:
    """Threads that put batches of uniquely numbered JSON records until
    stopped, remembering which ids were acknowledged."""

    def __init__(self, make_client, stream="app", threads=3, batch=100, pad=200, fields=None):
        import threading

        self.make_client = make_client
        # More fields of each record, from its id.
        self.fields = fields or (lambda _id: {})
        self.stream = stream
        self.batch = batch
        self.pad = pad
        self.acked = set()
        self.failed_calls = 0
        self.failed_records = 0
        self.stop_event = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(w,), daemon=True) for w in range(threads)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def _run(self, worker):
        fh = self.make_client()
        n = 0
        while not self.stop_event.is_set():
            ids = [f"{worker}-{n + i}" for i in range(self.batch)]
            n += self.batch
            try:
                r = fh.put_record_batch(
                    DeliveryStreamName=self.stream,
                    Records=[{"Data": json.dumps({"id": x, "pad": "p" * self.pad, **self.fields(x)}).encode()}
                             for x in ids],
                )
            except Exception:  # noqa: BLE001 - the daemon may be down on purpose
                self.failed_calls += 1
                time.sleep(0.05)
                continue
            for x, resp in zip(ids, r["RequestResponses"]):
                if "RecordId" in resp:
                    self.acked.add(x)
                else:
                    self.failed_records += 1
            if r["FailedPutCount"]:
                time.sleep(0.05)

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(30)


def pg_bin(name: str) -> str:
    import glob

    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if not path:
        raise RuntimeError(f"PostgreSQL's {name} is not installed; run scripts/test.sh, which installs it")
    return path


class Postgres:
    """A throwaway PostgreSQL server on loopback (Debian's binaries). As root
    the server runs as the `postgres` user, as PostgreSQL requires."""

    def __init__(self):
        import tempfile

        self.dir = Path(tempfile.mkdtemp(prefix="hydrant-pg-"))
        self.data = self.dir / "data"
        self.sock = self.dir / "sock"
        self.sock.mkdir()
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            subprocess.run(["chown", "-R", "postgres:postgres", str(self.dir)], check=True)

    def _run(self, args, **kw):
        if self.as_root:
            args = ["runuser", "-u", "postgres", "--", *args]
        return subprocess.run(args, capture_output=True, text=True, timeout=120, **kw)

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=hydrant"

    def make_tls(self) -> Path:
        """Makes a CA and a server certificate for 127.0.0.1 and turns TLS on
        (before start). Returns the CA file a client must trust."""
        d = self.dir
        ext = d / "san.cnf"
        ext.write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
        cmds = [
            ["openssl", "req", "-new", "-x509", "-days", "2", "-nodes", "-subj", "/CN=hydrant-test-ca",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
             "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt")],
            ["openssl", "req", "-new", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(d / "server.key"), "-out", str(d / "server.csr")],
            ["openssl", "x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.crt"), "-CAkey", str(d / "ca.key"),
             "-CAcreateserial", "-days", "2", "-out", str(d / "server.crt"), "-extfile", str(ext)],
        ]
        for c in cmds:
            subprocess.run(c, check=True, capture_output=True, timeout=60)
        if self.as_root:
            subprocess.run(["chown", "postgres:postgres", str(d / "server.key"), str(d / "server.crt")], check=True)
        (d / "server.key").chmod(0o600)
        self.tls_opts = f" -c ssl=on -c ssl_cert_file={d / 'server.crt'} -c ssl_key_file={d / 'server.key'}"
        return d / "ca.crt"

    def start(self, first_time=True):
        if first_time:
            r = self._run([pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync"])
            if r.returncode != 0:
                raise RuntimeError(f"initdb failed: {r.stderr}")
        opts = f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
        opts += getattr(self, "tls_opts", "")
        r = self._run([pg_bin("pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.dir / "pg.log"), "-w", "start"])
        if r.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {r.stderr}{r.stdout}")
        if first_time:
            self.psql("CREATE DATABASE hydrant", db="postgres")
        return self

    def stop(self, mode="fast"):
        self._run([pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])

    def psql(self, sql: str, db="hydrant") -> str:
        r = subprocess.run(
            [pg_bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1", "-Atc", sql],
            capture_output=True, text=True, timeout=120, env={**os.environ, "PGSSLMODE": "disable"},
        )
        if r.returncode != 0:
            raise RuntimeError(f"psql failed: {r.stderr}")
        return r.stdout.strip()

    def cleanup(self):
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


class Receiver:
    """A Firehose HTTP endpoint receiver, outside the daemon: it checks every
    header and the body against Firehose's spec and answers as the spec
    requires, or misbehaves on purpose (`mode`)."""

    def __init__(self, access_key="secret-key", attributes=None, gzip_expected=False):
        import gzip as gz
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.records = []
        self.violations = []
        self.request_ids = []
        self.all_ids = []
        self.mode = "ok"
        # Seconds to wait before answering each request: a slow endpoint.
        self.delay = 0
        # When set, a request whose records it refuses is answered 500.
        self.accept = None
        self.requests = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                receiver.requests += 1
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                mode = receiver.mode
                if mode == "close":
                    self.connection.close()
                    self.close_connection = True
                    return
                if mode == "hang":
                    time.sleep(5)
                    return
                if receiver.delay:
                    time.sleep(receiver.delay)
                rid = self.headers.get("X-Amz-Firehose-Request-Id", "")
                check = receiver._check(self.headers, body, gz)
                if check is not None:
                    receiver.all_ids.append((check[1], check[0][0]))
                if mode in ("500", "400"):
                    self._answer(int(mode), {"requestId": rid, "timestamp": int(time.time() * 1000), "errorMessage": f"refusing on purpose ({mode})"})
                    return
                if check is None:
                    self._answer(400, {"requestId": rid, "errorMessage": "bad request"})
                    return
                records, rid = check
                if receiver.accept is not None and not receiver.accept(records):
                    self._answer(500, {"requestId": rid, "timestamp": int(time.time() * 1000), "errorMessage": "not these records yet"})
                    return
                receiver.request_ids.append(rid)
                receiver.records.extend(records)
                echoed = "wrong-" + rid if mode == "wrong_id" else rid
                self._answer(200, {"requestId": echoed, "timestamp": int(time.time() * 1000)})

            def _answer(self, status, obj):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.access_key = access_key
        self.attributes = attributes or {}
        self.gzip_expected = gzip_expected
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/firehose"

    def _check(self, h, body, gz):
        def bad(msg):
            self.violations.append(msg)
            return None

        if h.get("X-Amz-Firehose-Protocol-Version") != "1.0":
            return bad("protocol version header")
        rid = h.get("X-Amz-Firehose-Request-Id", "")
        if not re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", rid):
            return bad(f"request id {rid!r} is not a GUID")
        if not h.get("X-Amz-Firehose-Source-Arn", "").startswith("arn:aws:firehose:"):
            return bad("source arn header")
        if self.access_key is not None and h.get("X-Amz-Firehose-Access-Key") != self.access_key:
            return bad("access key header")
        if self.attributes:
            try:
                attrs = json.loads(h.get("X-Amz-Firehose-Common-Attributes", ""))
            except ValueError:
                return bad("common attributes header is not JSON")
            if attrs != {"commonAttributes": self.attributes}:
                return bad(f"common attributes {attrs}")
        if not h.get("Content-Type", "").startswith("application/json"):
            return bad("content type")
        if self.gzip_expected:
            if h.get("Content-Encoding") != "gzip":
                return bad("content encoding")
            body = gz.decompress(body)
        elif h.get("Content-Encoding"):
            return bad("unexpected content encoding")
        try:
            doc = json.loads(body)
        except ValueError:
            return bad("body is not JSON")
        if doc.get("requestId") != rid:
            return bad("body requestId differs from the header")
        if not isinstance(doc.get("timestamp"), int) or abs(doc["timestamp"] - time.time() * 1000) > 60_000:
            return bad(f"timestamp {doc.get('timestamp')!r} is not epoch ms")
        recs = doc.get("records")
        if not isinstance(recs, list) or not 1 <= len(recs) <= 10_000:
            return bad("records must be a list of 1..10000")
        import base64

        return [base64.b64decode(r["data"]) for r in recs], rid

    def close(self):
        self.server.shutdown()


def error_code(call):
    """What an AWS call refused with: (error code, message)."""
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call()
    return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]
