"""The packaging in deploy/, checked as far as this machine allows (no
container engine, no cluster): manifests parse with the expected kinds and
probes, every config they carry validates, the Grafana dashboard only uses
metrics the daemon exports, the systemd unit is well formed, and the
Dockerfile builds with the locked dependency set."""

import configparser
import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml

from harness import hydrant_bin, wait_until

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
ENV = {"HYDRANT_ACCESS_KEY_ID": "AKIDX", "HYDRANT_SECRET_ACCESS_KEY": "s", "S3_ENDPOINT": "http://127.0.0.1:9000",
       "S3_ACCESS_KEY_ID": "k", "S3_SECRET_ACCESS_KEY": "s", "PATH": "/usr/bin:/bin"}


def validate(tmp_path, text, name):
    f = tmp_path / name
    f.write_text(text)
    r = subprocess.run([hydrant_bin(), "validate", str(f)], capture_output=True, text=True, timeout=60, env=ENV)
    assert r.returncode == 0, f"{name}: {r.stderr}"


def test_kubernetes_manifests(tmp_path):
    docs = [d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / "hydrant.yaml").read_text()) if d]
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"ConfigMap", "Service", "StatefulSet", "PodDisruptionBudget"}
    sts = kinds["StatefulSet"]["spec"]
    c = sts["template"]["spec"]["containers"][0]
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert sts["volumeClaimTemplates"][0]["metadata"]["name"] in {m["name"] for m in c["volumeMounts"]}
    assert sts["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    assert kinds["Service"]["spec"]["selector"] == sts["selector"]["matchLabels"]
    assert kinds["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == sts["selector"]["matchLabels"]
    validate(tmp_path, kinds["ConfigMap"]["data"]["hydrant.yaml"], "k8s.yaml")


def test_compose_and_container_config(tmp_path):
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert {"hydrant", "minio", "producer"} <= set(compose["services"])
    assert compose["services"]["hydrant"]["build"]["dockerfile"] == "deploy/Dockerfile"
    validate(tmp_path, (DEPLOY / "hydrant.yaml").read_text(), "container.yaml")


def test_dockerfile_builds_the_locked_release_binary_as_non_root():
    text = (DEPLOY / "Dockerfile").read_text()
    runs = re.findall(r"^RUN (cargo .*)$", text, re.M)
    assert runs == ["cargo build --release --locked --bin hydrant"], runs
    assert re.search(r"^USER 10001", text, re.M)
    assert "COPY deploy/hydrant.yaml" in text and (DEPLOY / "hydrant.yaml").exists()
    # --locked succeeds only if Cargo.lock matches Cargo.toml.
    r = subprocess.run(["cargo", "metadata", "--locked", "--offline", "--format-version", "1", "--no-deps"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_systemd_unit():
    unit = DEPLOY / "hydrant.service"
    p = configparser.ConfigParser(strict=False, interpolation=None)
    p.optionxform = str
    p.read_string(unit.read_text())
    s = p["Service"]
    assert s["ExecStart"].endswith("hydrant run")
    assert "-HUP" in s["ExecReload"]
    assert s["NoNewPrivileges"] == "yes" and s["ProtectSystem"] == "strict"
    assert p["Install"]["WantedBy"] == "multi-user.target"
    if shutil.which("systemd-analyze"):
        r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
        # Only the binary's absence on this machine is acceptable.
        problems = [x for x in r.stderr.splitlines() if x.strip() and "/usr/local/bin/hydrant" not in x]
        assert not problems, r.stderr


def test_grafana_dashboard_uses_only_exported_metrics(hydrant_factory, tmp_path):
    dash = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\b(hydrant_[a-z_]+)", e)}
    assert len(used) >= 10
    # A family appears on /metrics once it has a series; the registered names
    # are the complete list.
    registered = set(re.findall(r'registry\.register\(\s*"([a-z_]+)"', (ROOT / "src/metrics.rs").read_text()))
    assert len(registered) >= 15
    exported = set()
    for f in registered:
        f = "hydrant_" + f
        exported |= {f, f + "_total", f + "_bucket", f + "_sum", f + "_count"}
    missing = sorted(used - exported)
    assert not missing, f"the dashboard uses metrics the daemon does not register: {missing}"
    # And the live daemon exports them under those names.
    h = hydrant_factory(f"streams:\n  s:\n    buffering: {{ interval_secs: 1 }}\n    destination: {{ type: file, path: {tmp_path / 'out'} }}\n").start()
    h.firehose().put_record(DeliveryStreamName="s", Record={"Data": b"x"})
    wait_until(lambda: h.metric("delivery_records", stream="s") == 1, timeout=30, what="a delivery")
    text = h.get("/metrics")[1].decode()
    live = set(re.findall(r"^(hydrant_[a-z_]+)[{ ]", text, re.M))
    for name in ["hydrant_incoming_records_total", "hydrant_delivery_records_total", "hydrant_backlog_records",
                 "hydrant_data_freshness_seconds", "hydrant_log_bytes"]:
        assert name in live and name in used, name
