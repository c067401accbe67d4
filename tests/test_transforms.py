"""WebAssembly transforms through the real daemon: the example in each language
(Rust, Python, JavaScript, C), built with its own toolchain by its build.sh,
transforms, drops and fails records; delivered, dropped and failed records land
where they should, with the right content."""

import base64
import json
import subprocess
from pathlib import Path

import pytest

from conftest import s3_store_yaml
from harness import Receiver, hydrant_bin, read_objects, records_in, wait_until

ROOT = Path(__file__).resolve().parent.parent
LANGS = ["rust", "python", "javascript", "c"]
_built = {}


def example(lang) -> Path:
    """Builds transforms/examples/<lang> with its build.sh (a no-op when up to date)."""
    if lang not in _built:
        d = ROOT / "transforms" / "examples" / lang
        r = subprocess.run(["bash", str(d / "build.sh")], capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, f"{lang} build failed:\n{r.stdout}\n{r.stderr}"
        _built[lang] = d / "transform.wasm"
    return _built[lang]


SERVICES = ["auth", "cart", "search"]


def workload():
    good = [{"level": "INFO" if i % 2 else "warn", "service": SERVICES[i % 3], "n": i,
             "msg": f"user u{i}@example.com logged in with Bearer tok{i}.secret after {i} ms"} for i in range(300)]
    debug = [{"level": "debug", "service": "auth", "n": 1000 + i, "msg": "noise"} for i in range(100)]
    bad = [f"not json {i}".encode() for i in range(5)]
    records = [json.dumps(r).encode() for r in good] + [json.dumps(r).encode() for r in debug] + bad
    # Interleave so every batch mixes outcomes.
    records = records[::2] + records[1::2]
    return good, debug, bad, records


def transform_stream(wasm, dest, extra=""):
    return f"""streams:
  logs:
    shards: 2
    buffering: {{ size_mb: 1, interval_secs: 1 }}
    transform:
      wasm: {wasm}
      config: {{ env: prod }}
      timeout_ms: 30000
{extra}    destination:
{dest}      prefix: "service=!{{partitionKeyFromLambda:service}}/"
      error_output_prefix: "errors/!{{firehose:error-output-type}}/"
"""


def check_delivery(h, objects_fn, good, bad):
    def delivered():
        objs = {k: v for k, v in objects_fn().items() if not k.startswith("errors/")}
        got = [(k, json.loads(x)) for k, b in objs.items() for x in b.decode().splitlines() if x]
        return got if len(got) >= len(good) else None

    got = wait_until(delivered, timeout=120, what=f"{len(good)} transformed records")
    assert sorted(r["n"] for _, r in got) == list(range(300)), "every non-debug record once, no debug record"
    for key, r in got:
        assert key.startswith(f"service={r['service']}/"), key
        assert r["env"] == "prod"
        assert "@" not in r["msg"] and "<email>" in r["msg"], r["msg"]
        assert f"tok{r['n']}" not in r["msg"] and "Bearer <token>" in r["msg"], r["msg"]
        assert r["msg"].endswith(f"after {r['n']} ms")

    errs = wait_until(lambda: (lambda x: x if len(x) >= len(bad) else None)(
        records_in({k: v for k, v in objects_fn().items() if k.startswith("errors/")})),
        timeout=60, what="processing-failed records")
    rows = [json.loads(x) for x in errs]
    assert sorted(base64.b64decode(x["rawData"]) for x in rows) == sorted(bad), "original data kept"
    assert all(x["errorCode"] == "processing-failed" and "not JSON" in x["errorMessage"] for x in rows), rows
    assert all(k.startswith("errors/processing-failed/") for k in objects_fn() if k.startswith("errors/"))
    wait_until(lambda: h.metric("transform_records", stream="logs", outcome="dropped") == 100, timeout=10,
               what="100 dropped in metrics")
    assert h.metric("transform_records", stream="logs", outcome="failed") == len(bad)
    assert h.metric("transform_records", stream="logs", outcome="ok") == len(good)


@pytest.mark.parametrize("lang", LANGS)
def test_example_transform_in_each_language_through_the_daemon(hydrant_factory, tmp_path, lang):
    wasm = example(lang)
    out = tmp_path / "out"
    h = hydrant_factory(transform_stream(wasm, f"      type: file\n      path: {out}\n")).start()
    good, debug, bad, records = workload()
    fh = h.firehose()
    for i in range(0, len(records), 100):
        assert fh.put_record_batch(DeliveryStreamName="logs", Records=[{"Data": d} for d in records[i:i + 100]])["FailedPutCount"] == 0
    check_delivery(h, lambda: read_objects(None, out), good, bad)


def test_transformed_records_reach_garage_partitioned_and_survive_a_restart(hydrant_factory, garage, bucket):
    wasm = example("rust")
    dest = f"      type: s3\n      bucket: {bucket}\n"
    h = hydrant_factory(s3_store_yaml(garage) + transform_stream(wasm, dest)).start()
    good, debug, bad, records = workload()
    fh = h.firehose()
    half = len(records) // 2
    for i in range(0, half, 100):
        fh.put_record_batch(DeliveryStreamName="logs", Records=[{"Data": d} for d in records[i:min(i + 100, half)]])
    h.kill()
    h.start()
    for i in range(half, len(records), 100):
        fh.put_record_batch(DeliveryStreamName="logs", Records=[{"Data": d} for d in records[i:i + 100]])
    s3 = garage.s3()

    def objects():
        return read_objects(s3, bucket)

    def delivered():
        objs = {k: v for k, v in objects().items() if not k.startswith("errors/")}
        got = {json.loads(x)["n"] for b in objs.values() for x in b.decode().splitlines() if x}
        return got if got >= set(range(300)) else None

    got = wait_until(delivered, timeout=120, what="every transformed record after a kill")
    assert got == set(range(300))
    assert {k.split("/")[0] for k in objects() if not k.startswith("errors/")} == {f"service={s}" for s in SERVICES}


def test_a_backup_of_all_data_keeps_the_source_records_the_transform_changed_or_dropped(hydrant_factory, tmp_path):
    # Firehose's AllData backup beside a transform holds the untransformed
    # source records, those the transform dropped or failed included.
    wasm = example("rust")
    receiver = Receiver()
    backup = tmp_path / "backup"
    try:
        h = hydrant_factory(f"""streams:
  logs:
    shards: 2
    buffering: {{ size_mb: 1, interval_secs: 1 }}
    transform: {{ wasm: {wasm}, config: {{ env: prod }}, timeout_ms: 30000 }}
    destination: {{ type: http, url: {receiver.url}, access_key: secret-key }}
    backup: {{ mode: all, destination: {{ type: file, path: {backup}, prefix: src/ }} }}
""").start()
        good, debug, bad, records = workload()
        fh = h.firehose()
        for i in range(0, len(records), 100):
            assert fh.put_record_batch(DeliveryStreamName="logs", Records=[{"Data": d} for d in records[i:i + 100]])["FailedPutCount"] == 0
        wait_until(lambda: len(receiver.records) >= len(good), timeout=60, what="transformed records at the receiver")
        got = wait_until(lambda: (lambda x: x if len(x) >= len(records) else None)(records_in(read_objects(None, backup))),
                         timeout=60, what="every source record in the backup")
        assert sorted(got) == sorted(r.decode() for r in records), "the backup holds the records as sent, once each"
        assert all(k.startswith("src/") for k in read_objects(None, backup))
        assert receiver.violations == []
        delivered = [json.loads(r) for r in receiver.records]
        assert sorted(r["n"] for r in delivered) == list(range(300))
        assert all(r["env"] == "prod" and "<email>" in r["msg"] for r in delivered), "the destination gets the transformed records"
    finally:
        receiver.close()


def test_a_transform_that_cannot_start_stops_the_daemon_with_the_reason(hydrant_factory, tmp_path):
    wasm = example("rust")
    h = hydrant_factory(f"""streams:
  logs:
    transform: {{ wasm: {wasm}, config: "not json" }}
    destination: {{ type: file, path: {tmp_path / 'out'} }}
""")
    h.start(wait=False)
    assert h.proc.wait(timeout=60) != 0
    assert "config is not JSON" in h.logs(), h.logs()[-2000:]


def test_transform_config_errors_name_their_path(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text(f"""streams:
  a:
    transform: {{ wasm: {tmp_path / 'missing.wasm'}, timeout_ms: 5, instances_max: 0 }}
    destination:
      type: file
      path: /tmp/x
      prefix: "!{{partitionKeyFromLambda:service}}/"
      error_output_prefix: "e/!{{firehose:error-output-type}}/"
  b:
    destination:
      type: file
      path: /tmp/x
      prefix: "!{{partitionKeyFromLambda:service}}/"
      error_output_prefix: "e/!{{firehose:error-output-type}}/"
""")
    r = subprocess.run([hydrant_bin(), "validate", str(f)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "streams.a.transform.wasm: cannot read" in r.stderr, r.stderr
    assert "streams.a.transform.timeout_ms: 5 is out of range" in r.stderr, r.stderr
    assert "streams.a.transform.instances_max: 0 is out of range" in r.stderr, r.stderr
    assert "streams.b.destination.prefix: `!{partitionKeyFromLambda:service}` needs a transform" in r.stderr, r.stderr


def test_transform_test_command_prints_each_outcome(tmp_path):
    wasm = example("python")
    inp = tmp_path / "in.ndjson"
    inp.write_text('{"level":"info","service":"auth","msg":"mail ann@example.org"}\n{"level":"debug"}\n[1,2]\n')
    r = subprocess.run([hydrant_bin(), "transform", "test", "--wasm", str(wasm), "--input", str(inp),
                        "--config", '{"env":"dev"}'], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["outcome"] for x in lines] == ["ok", "dropped", "failed"]
    assert json.loads(lines[0]["data"]) == {"level": "info", "service": "auth", "msg": "mail <email>", "env": "dev"}
    assert lines[0]["partition_keys"] == {"service": "auth"}
    assert "not an object" in lines[2]["reason"]
    assert "3 records: 1 ok, 1 dropped, 1 failed" in r.stderr


def guest(name, artifact) -> Path:
    """Builds a test component from tests/guests/<name> with cargo."""
    r = subprocess.run(["cargo", "build", "--quiet", "--release", "--target", "wasm32-wasip2",
                        "--manifest-path", str(ROOT / "tests" / "guests" / name / "Cargo.toml"),
                        "--target-dir", str(ROOT / "target" / "guests")],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    return ROOT / "target" / "guests" / "wasm32-wasip2" / "release" / f"{artifact}.wasm"


def test_misbehaving_transforms_are_stopped_and_the_daemon_keeps_delivering(hydrant_factory, tmp_path):
    wasm = guest("misbehave", "misbehave")
    out = tmp_path / "out"

    def stream(name, init):
        return f"""  {name}:
    shards: 1
    buffering: {{ size_mb: 1, interval_secs: 1 }}
    transform: {{ wasm: {wasm}, config: "{init}", timeout_ms: 500, memory_mb_max: 32 }}
    destination:
      type: file
      path: {out}/{name}
      prefix: "k=!{{partitionKeyFromLambda:k}}/"
      error_output_prefix: "errors/!{{firehose:error-output-type}}/"
"""
    h = hydrant_factory("streams:\n" + stream("logs", "") + stream("short", "short")).start()
    fh = h.firehose()

    def put(stream_name, records):
        assert fh.put_record_batch(DeliveryStreamName=stream_name,
                                   Records=[{"Data": r.encode()} for r in records])["FailedPutCount"] == 0

    def delivered(name):
        objs = read_objects(None, out / name)
        return sorted(x for k, b in objs.items() if not k.startswith("errors/") for x in b.decode().splitlines())

    def errors(name):
        objs = read_objects(None, out / name)
        return [json.loads(x) for x in records_in({k: v for k, v in objs.items() if k.startswith("errors/")})]

    def error_for(name, raw):
        rows = [e for e in errors(name) if base64.b64decode(e["rawData"]) == raw.encode()]
        return rows[0] if rows else None

    # A record that makes the transform loop forever: stopped by the deadline.
    put("logs", ["loop"])
    e = wait_until(lambda: error_for("logs", "loop"), timeout=30, what="the looping record in the error output")
    assert e["errorCode"] == "processing-failed" and "within 500 ms" in e["errorMessage"], e
    # One that allocates without end: stopped by the memory cap.
    put("logs", ["oom"])
    e = wait_until(lambda: error_for("logs", "oom"), timeout=30, what="the allocating record in the error output")
    assert "more than 32 MiB" in e["errorMessage"], e
    # A trap amid good records fails only itself.
    put("logs", [f"r{i}" for i in range(50)] + ["trap"] + [f"s{i}" for i in range(50)])
    e = wait_until(lambda: error_for("logs", "trap"), timeout=30, what="the trapping record in the error output")
    assert "trapped" in e["errorMessage"], e
    want = sorted([f"R{i}" for i in range(50)] + [f"S{i}" for i in range(50)])
    assert wait_until(lambda: delivered("logs") == want, timeout=30, what="the 100 good records")
    for i in (0, 49):
        assert any((out / "logs").glob(f"k=r{i}/*")), "partitioned by the transform's key"
    # A transform that returns one outcome too few fails its whole batch,
    # while the other stream keeps delivering.
    put("short", ["a", "b", "c"])
    rows = wait_until(lambda: (lambda x: x if len(x) >= 3 else None)(errors("short")), timeout=30, what="the short batch")
    assert all("returned 2 outcomes for 3 records" in r["errorMessage"] for r in rows), rows
    assert delivered("short") == []
    put("logs", ["after"])
    assert wait_until(lambda: "AFTER" in delivered("logs"), timeout=30, what="delivery after all that")
    assert h.metric("transform_records", stream="logs", outcome="failed") == 3


def test_a_component_of_another_world_is_refused_by_validate(tmp_path):
    wasm = guest("wrongworld", "wrongworld")
    f = tmp_path / "c.yaml"
    f.write_text(f"""streams:
  logs:
    transform: {{ wasm: {wasm} }}
    destination: {{ type: file, path: {tmp_path / 'out'} }}
""")
    r = subprocess.run([hydrant_bin(), "validate", str(f)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stdout
    assert "streams.logs.transform.wasm: " in r.stderr, r.stderr
    assert "does not implement the world hydrant:transform/transformer@0.1.0" in r.stderr, r.stderr
    f.write_text(f.read_text().replace(str(wasm), str(example("rust"))))
    r = subprocess.run([hydrant_bin(), "validate", str(f)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
