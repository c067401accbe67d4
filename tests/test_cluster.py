"""Cluster mode on real NATS JetStream clusters on loopback: three NATS
servers (sync_interval: always) and two or three Hydrant nodes, real boto3
clients, Garage and PostgreSQL as destinations."""

import json
import signal
import socket
import threading
import time
import uuid

import pytest

from conftest import s3_store_yaml
from harness import Hydrant, Postgres, Producers, read_objects, records_in, wait_until
from nats import NatsCluster


def port_open(port) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture
def nats(tmp_path):
    c = NatsCluster(tmp_path / "nats").start()
    yield c
    c.stop()


@pytest.fixture
def nodes(tmp_path):
    made = []

    def make(nats, count, body, lease_secs=3):
        for i in range(count):
            node = Hydrant(tmp_path / f"node{i}", nats.yaml(f"node{i}", lease_secs=lease_secs) + body)
            made.append(node)
        for node in made[-count:]:
            node.start()
        return made[-count:]

    yield make
    for n in made:
        if n.proc and n.proc.poll() is None:
            try:
                n.proc.send_signal(signal.SIGCONT)
            except ProcessLookupError:
                pass
        n.kill()


def status(node) -> dict:
    code, body, _ = node.get("/v1/status")
    assert code == 200, body
    return json.loads(body)


def lease_owners(node, prefix) -> dict:
    """{lease: owner} of the leases whose name starts with `prefix`. A
    listing the node could not make (JetStream briefly out of reach, as
    while a paused node resumes) is asked again: an error is no answer."""
    for _ in range(20):
        leases = status(node)["cluster"]["leases"]
        if not any("error" in l for l in leases):
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"the node could not list its leases: {leases}")
    return {l["lease"]: l.get("owner") for l in leases if l.get("lease", "").startswith(prefix)}


class KinesisProducers:
    """Threads putting uniquely numbered records to a Kinesis stream, one
    thread per node, remembering which were acknowledged."""

    def __init__(self, nodes, stream, batch=50):
        self.nodes, self.stream, self.batch = nodes, stream, batch
        self.acked = set()
        self.stop_event = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(len(nodes))]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def _run(self, i):
        k = self.nodes[i].kinesis()
        n = 0
        while not self.stop_event.is_set():
            ids = [f"k{i}-{n + j}" for j in range(self.batch)]
            n += self.batch
            try:
                r = k.put_records(StreamName=self.stream,
                                  Records=[{"Data": x.encode(), "PartitionKey": x} for x in ids])
            except Exception:  # noqa: BLE001 - a node or a NATS server is down on purpose
                time.sleep(0.05)
                continue
            for x, res in zip(ids, r["Records"]):
                if "SequenceNumber" in res:
                    self.acked.add(x)

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(60)


def read_whole_stream(k, stream) -> list:
    """Every record of every shard (open and closed), from TRIM_HORIZON."""
    out = []
    for s in k.list_shards(StreamName=stream)["Shards"]:
        it = k.get_shard_iterator(StreamName=stream, ShardId=s["ShardId"],
                                  ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while it:
            r = k.get_records(ShardIterator=it, Limit=10000)
            out.extend(r["Records"])
            if not r["Records"] and r.get("MillisBehindLatest", 0) == 0:
                break
            it = r.get("NextShardIterator")
    return out


def test_nothing_acknowledged_is_lost_when_a_nats_leader_and_a_delivery_owner_die(nats, nodes, garage, bucket):
    body = s3_store_yaml(garage) + f"""kinesis:
  streams:
    ks: {{ shards: 2 }}
streams:
  app:
    shards: 2
    buffering: {{ size_mb: 1, interval_secs: 1 }}
    destination: {{ type: s3, bucket: {bucket}, prefix: logs/ }}
"""
    cluster = nodes(nats, 3, body)
    turn = iter(range(1000))
    fh = Producers(lambda: cluster[next(turn) % 3].firehose(), threads=3, batch=50, pad=50).start()
    kp = KinesisProducers(cluster, "ks").start()
    time.sleep(2)
    leader = nats.stream_leader("hydrant_fh_app_0")
    nats.kill(leader)
    time.sleep(3)
    owners = lease_owners(cluster[(leader + 1) % 3], "hydrant_fh_app")
    busiest = max(range(3), key=lambda i: sum(1 for o in owners.values() if o == f"node{i}"))
    cluster[busiest].kill()
    time.sleep(3)
    nats.start_server(leader)
    cluster[busiest].start()
    time.sleep(2)
    fh.stop()
    kp.stop()
    assert len(fh.acked) > 1000 and len(kp.acked) > 1000, (len(fh.acked), len(kp.acked))

    s3 = garage.s3()

    def delivered():
        ids = [json.loads(x)["id"] for x in records_in(read_objects(s3, bucket, "logs/"))]
        return ids if fh.acked <= set(ids) else None

    ids = wait_until(delivered, timeout=120, what="every acknowledged Firehose record in Garage")
    dup = len(ids) - len(set(ids))
    got = [r["Data"].decode() for r in read_whole_stream(cluster[0].kinesis(), "ks")]
    missing = kp.acked - set(got)
    kdup = len(got) - len(set(got))
    print(f"\nFirehose: {len(fh.acked)} acknowledged, {len(ids)} delivered, {dup} duplicates; "
          f"Kinesis: {len(kp.acked)} acknowledged, {len(got)} read back, {kdup} duplicates, {len(missing)} missing")
    assert not missing, f"{len(missing)} acknowledged Kinesis records lost, e.g. {sorted(missing)[:5]}"


def test_an_iterator_from_one_node_reads_on_another_and_sequence_numbers_agree(nats, nodes):
    a, b = nodes(nats, 2, "")
    ka, kb = a.kinesis(), b.kinesis()
    ka.create_stream(StreamName="s", ShardCount=2)
    wait_until(lambda: "s" in kb.list_streams()["StreamNames"], timeout=10, what="the stream on the other node")
    put = kb.put_records(StreamName="s", Records=[{"Data": f"r{i}".encode(), "PartitionKey": f"p{i}"} for i in range(40)])
    assert put["FailedRecordCount"] == 0
    first = put["Records"][0]
    it = ka.get_shard_iterator(StreamName="s", ShardId=first["ShardId"], ShardIteratorType="AT_SEQUENCE_NUMBER",
                               StartingSequenceNumber=first["SequenceNumber"])["ShardIterator"]
    on_b = kb.get_records(ShardIterator=it)["Records"]
    on_a = ka.get_records(ShardIterator=it)["Records"]
    assert on_b and on_b[0]["SequenceNumber"] == first["SequenceNumber"] and on_b[0]["Data"] == b"r0"
    assert [r["SequenceNumber"] for r in on_a] == [r["SequenceNumber"] for r in on_b]
    # Retention is each shard stream's max age in JetStream.
    assert nats.stream_config("hydrant_kds_s_0")["max_age"] == 24 * 3600 * 10**9
    kb.increase_stream_retention_period(StreamName="s", RetentionPeriodHours=48)
    assert nats.stream_config("hydrant_kds_s_1")["max_age"] == 48 * 3600 * 10**9
    wait_until(lambda: ka.describe_stream(StreamName="s")["StreamDescription"]["RetentionPeriodHours"] == 48,
               timeout=10, what="the retention on the other node")
    da = ka.describe_stream(StreamName="s")["StreamDescription"]["Shards"]
    db = kb.describe_stream(StreamName="s")["StreamDescription"]["Shards"]
    assert da == db

    # A split on one node reaches the other: puts there go to the children,
    # the parent is closed with the same end on both.
    ka.split_shard(StreamName="s", ShardToSplit="shardId-000000000000", NewStartingHashKey=str(2**126))

    def split_seen():
        shards = kb.list_shards(StreamName="s")["Shards"]
        return shards if len(shards) == 4 else None

    wait_until(split_seen, timeout=10, what="the split on the other node")
    after = [kb.put_record(StreamName="s", Data=b"x", PartitionKey=f"q{i}") for i in range(20)]
    assert "shardId-000000000000" not in {r["ShardId"] for r in after}
    end_a = [s for s in ka.list_shards(StreamName="s")["Shards"] if s["ShardId"] == "shardId-000000000000"][0]
    end_b = [s for s in kb.list_shards(StreamName="s")["Shards"] if s["ShardId"] == "shardId-000000000000"][0]
    assert end_a["SequenceNumberRange"]["EndingSequenceNumber"] == end_b["SequenceNumberRange"]["EndingSequenceNumber"]

    # Two nodes resharding at once: one at a time (the other is told to
    # retry), and both end with the same shards, tiling the hash space.
    def split(k, shard):
        for _ in range(100):
            try:
                rng = [s for s in k.list_shards(StreamName="s")["Shards"] if s["ShardId"] == shard][0]["HashKeyRange"]
                mid = (int(rng["StartingHashKey"]) + int(rng["EndingHashKey"])) // 2
                k.split_shard(StreamName="s", ShardToSplit=shard, NewStartingHashKey=str(mid))
                return
            except k.exceptions.ResourceInUseException:
                time.sleep(0.1)
        raise AssertionError("never got to reshard")

    t1 = threading.Thread(target=split, args=(ka, "shardId-000000000001"))
    t2 = threading.Thread(target=split, args=(kb, "shardId-000000000002"))
    t1.start(); t2.start(); t1.join(); t2.join()

    def agreed():
        la, lb = ka.list_shards(StreamName="s")["Shards"], kb.list_shards(StreamName="s")["Shards"]
        return la if la == lb and len(la) == 8 else None

    try:
        shards = wait_until(agreed, timeout=10, what="both nodes with the same 8 shards")
    except TimeoutError:
        print([(x["ShardId"], x.get("ParentShardId"), "EndingSequenceNumber" in x["SequenceNumberRange"]) for x in ka.list_shards(StreamName="s")["Shards"]])
        print([(x["ShardId"], x.get("ParentShardId"), "EndingSequenceNumber" in x["SequenceNumberRange"]) for x in kb.list_shards(StreamName="s")["Shards"]])
        raise
    open_ranges = sorted((int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"]))
                         for s in shards if "EndingSequenceNumber" not in s["SequenceNumberRange"])
    assert open_ranges[0][0] == 0 and open_ranges[-1][1] == 2**128 - 1
    assert all(a[1] + 1 == b[0] for a, b in zip(open_ranges, open_ranges[1:]))

    ka.delete_stream(StreamName="s")
    wait_until(lambda: "s" not in kb.list_streams()["StreamNames"], timeout=10, what="the deletion on the other node")


@pytest.fixture(scope="module")
def postgres():
    pg = Postgres().start()
    yield pg
    pg.cleanup()


def test_a_paused_owner_is_fenced_and_postgres_loads_every_record_once(nats, nodes, postgres):
    table = f"events_{uuid.uuid4().hex[:8]}"
    postgres.psql(f"CREATE TABLE {table} (id text)")
    body = f"""streams:
  app:
    shards: 1
    buffering: {{ size_mb: 1, interval_secs: 1 }}
    destination:
      type: postgres
      connection: {postgres.dsn}
      table: {table}
      columns:
        - {{ column: id }}
"""
    a, b = nodes(nats, 2, body)
    turn = iter(range(1000))
    p = Producers(lambda: (a, b)[next(turn) % 2].firehose(), threads=2, batch=50, pad=10).start()
    owner = wait_until(lambda: lease_owners(a, "hydrant_fh_app").get("hydrant_fh_app.delivery.0"),
                       timeout=20, what="an owner of the shard's lease")
    paused, other = (a, b) if owner == "node0" else (b, a)
    time.sleep(1)
    paused.proc.send_signal(signal.SIGSTOP)
    other_id = "node1" if owner == "node0" else "node0"
    wait_until(lambda: lease_owners(other, "hydrant_fh_app").get("hydrant_fh_app.delivery.0") == other_id,
               timeout=30, what="the other node taking the lease over")
    time.sleep(2)
    paused.proc.send_signal(signal.SIGCONT)
    time.sleep(3)
    p.stop()
    wait_until(lambda: "lease" in paused.logs() and ("refused" in paused.logs() or "lost the shard" in paused.logs()),
               timeout=30, what="the resumed node noticing it was fenced")
    owners = lease_owners(other, "hydrant_fh_app")
    assert owners.get("hydrant_fh_app.delivery.0") == other_id, status(other)["cluster"]

    def loaded():
        ids = set(postgres.psql(f"SELECT id FROM {table}").split())
        return ids if p.acked <= ids else None

    wait_until(loaded, timeout=90, what="every acknowledged record in PostgreSQL")
    total, distinct = postgres.psql(f"SELECT count(*), count(DISTINCT id) FROM {table}").split("|")
    print(f"\n{len(p.acked)} acknowledged, {total} rows, {distinct} distinct, across a paused owner's takeover")
    assert total == distinct, f"{int(total) - int(distinct)} duplicate rows"


def test_a_nats_server_that_does_not_sync_every_write_is_refused(tmp_path):
    unsafe = NatsCluster(tmp_path / "nats", size=1, sync_always=False).start()
    try:
        node = Hydrant(tmp_path / "node", unsafe.yaml("n", replicas=1) + "streams: {}\n")
        node.start(wait=False)
        assert node.proc.wait(60) != 0
        logs = node.logs()
        assert "sync_interval" in logs and "allow_unsynced" in logs, logs[-2000:]
        # The user may accept the risk, explicitly.
        ok = Hydrant(tmp_path / "node2",
                     unsafe.yaml("n", replicas=1, nats_extra="    allow_unsynced: true\n") + "streams: {}\n")
        ok.start()
        assert "cluster mode" in ok.logs()
        ok.kill()
    finally:
        unsafe.stop()


def test_a_node_waits_for_a_forming_cluster_as_long_as_its_config_says(tmp_path):
    """One server of three up has no JetStream leader: a node told to wait 2 s
    (`start_wait_secs`) gives up soon, naming the setting; a node with the
    default wait rides it out and starts once the other two servers come up,
    and serves puts in cluster mode."""
    forming = NatsCluster(tmp_path / "nats", size=3)
    forming.start_server(0)
    try:
        wait_until(lambda: port_open(forming.ports[0]), timeout=30, what="the first NATS server's port")
        hasty = Hydrant(tmp_path / "hasty", forming.yaml(
            "hasty", nats_extra="    start_wait_secs: 2\n    patience_secs: 2\n    request_timeout_ms: 1000\n"
        ) + "streams: {}\n")
        started = time.monotonic()
        hasty.start(wait=False)
        assert hasty.proc.wait(60) != 0, "a node without JetStream started"
        waited = time.monotonic() - started
        logs = hasty.logs()
        assert "start_wait_secs" in logs and "JetStream" in logs, logs[-2000:]
        assert waited < 30, f"gave up after {waited:.0f} s, told to wait 2 s"
        assert logs.count("waiting for JetStream") >= 1, logs[-2000:]

        patient = Hydrant(tmp_path / "patient", forming.yaml("patient") + "streams: {}\n")
        patient.start(wait=False)
        time.sleep(3)
        assert patient.proc.poll() is None, patient.logs()[-2000:]
        forming.start_server(1)
        forming.start_server(2)
        wait_until(patient.healthy, timeout=90, what="the patient node, once JetStream formed")
        assert "waiting for JetStream" in patient.logs()
        k = patient.kinesis()
        k.create_stream(StreamName="formed", ShardCount=1)
        wait_until(lambda: k.describe_stream_summary(StreamName="formed")["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE",
                   timeout=30, what="the stream")
        r = k.put_record(StreamName="formed", Data=b"after the wait", PartitionKey="k")
        assert r["SequenceNumber"]
        patient.kill()
    finally:
        forming.stop()


def test_the_whole_nats_cluster_restarted_loses_nothing_acknowledged(nats, nodes):
    (a,) = nodes(nats, 1, "kinesis:\n  streams:\n    ks: { shards: 2 }\n")
    kp = KinesisProducers([a], "ks").start()
    time.sleep(2)
    nats.stop()
    time.sleep(1)
    for i in range(nats.size):
        nats.start_server(i)
    wait_until(nats.ready, timeout=60, what="the NATS cluster back")
    time.sleep(3)
    kp.stop()
    assert len(kp.acked) > 500

    def all_back():
        try:
            got = {r["Data"].decode() for r in read_whole_stream(a.kinesis(), "ks")}
        except Exception:  # noqa: BLE001 - JetStream may still be electing leaders
            return None
        return got if kp.acked <= got else None

    got = wait_until(all_back, timeout=60, what="every acknowledged record after the restart")
    print(f"\n{len(kp.acked)} acknowledged, {len(got)} distinct read back after the whole NATS cluster restarted")


def test_a_delivery_stream_created_on_one_node_runs_on_every_node(nats, nodes, garage, bucket):
    a, b = nodes(nats, 2, s3_store_yaml(garage))
    fa, fb = a.firehose(), b.firehose()
    fa.create_delivery_stream(
        DeliveryStreamName="api",
        ExtendedS3DestinationConfiguration={
            "RoleARN": "arn:aws:iam::000000000000:role/firehose",
            "BucketARN": f"arn:aws:s3:::{bucket}",
            "Prefix": "api/",
            "ErrorOutputPrefix": "err/",
            "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 1},
        },
    )
    wait_until(lambda: "api" in fb.list_delivery_streams()["DeliveryStreamNames"], timeout=10,
               what="the stream on the other node")
    with pytest.raises(fb.exceptions.ResourceInUseException):
        fb.create_delivery_stream(DeliveryStreamName="api", ExtendedS3DestinationConfiguration={
            "RoleARN": "r", "BucketARN": f"arn:aws:s3:::{bucket}"})
    sent = []
    for i, f in enumerate([fa, fb] * 5):
        batch = [json.dumps({"i": i, "j": j}) for j in range(20)]
        sent += batch
        assert f.put_record_batch(DeliveryStreamName="api", Records=[{"Data": (x + "\n").encode()} for x in batch])["FailedPutCount"] == 0
    s3 = garage.s3()
    got = wait_until(lambda: (lambda r: r if len(r) >= len(sent) else None)(records_in(read_objects(s3, bucket, "api/"))),
                     timeout=60, what="every record delivered")
    assert sorted(got) == sorted(sent)
    fb.delete_delivery_stream(DeliveryStreamName="api")
    wait_until(lambda: "api" not in fa.list_delivery_streams()["DeliveryStreamNames"], timeout=10,
               what="the deletion on the other node")
    # Created again, it starts empty: nothing of the old stream's log or checkpoints.
    wait_until(lambda: all("hydrant_fh_api" not in l.get("lease", "") for l in status(a)["cluster"]["leases"]),
               timeout=30, what="the deleted stream's leases gone")


def test_delivery_leases_even_out_over_the_nodes(nats, nodes, tmp_path):
    out = tmp_path / "out"
    body = f"""streams:
  app:
    shards: 4
    buffering: {{ size_mb: 1, interval_secs: 1 }}
    destination: {{ type: file, path: {out} }}
"""
    a, b = nodes(nats, 2, body)

    def even():
        owners = list(lease_owners(a, "hydrant_fh_app").values())
        return owners if sorted(owners) == ["node0", "node0", "node1", "node1"] else None

    owners = wait_until(even, timeout=60, what="two leases on each node")
    assert len(owners) == 4
    # Every record still delivered once the leases moved.
    sent = [json.dumps({"n": i}) for i in range(200)]
    for i in range(0, 200, 50):
        (a if i % 100 else b).firehose().put_record_batch(
            DeliveryStreamName="app", Records=[{"Data": (x + "\n").encode()} for x in sent[i:i + 50]])
    got = wait_until(lambda: (lambda r: r if len(r) >= 200 else None)(records_in(read_objects(None, out))),
                     timeout=30, what="every record delivered")
    assert sorted(got) == sorted(sent)


def test_a_full_shard_refuses_puts_and_keeps_every_record(nats, nodes):
    (a,) = nodes(nats, 1, "kinesis:\n  streams:\n    ks: { shards: 1 }\n")
    a.terminate()
    a.config.write_text(a.config.read_text().replace("    replicas: 3\n", "    replicas: 3\n    shard_bytes_max: 1048576\n"))
    a.start()
    k = a.kinesis()
    acked, refused = [], None
    for i in range(100):
        try:
            r = k.put_records(StreamName="ks", Records=[{"Data": f"{i}-{j}-".encode() + b"x" * 1000, "PartitionKey": "p"} for j in range(50)])
        except k.exceptions.ProvisionedThroughputExceededException as e:
            refused = e
            break
        if r["FailedRecordCount"]:
            refused = r["Records"][-1].get("ErrorCode")
            break
        acked += [f"{i}-{j}-" for j in range(50)]
    assert refused is not None, "a 1 MiB shard took 5 MB"
    assert len(acked) > 500
    got = [r["Data"].decode().rstrip("x") for r in read_whole_stream(k, "ks")]
    assert set(acked) <= set(got), "an acknowledged record was dropped to make room"


def test_a_channel_created_on_one_node_is_updated_and_deleted_on_another(nats, nodes, garage, bucket):
    a, b = nodes(nats, 2, s3_store_yaml(garage))
    ka, kb = a.kinesis(), b.kinesis()
    ka.create_stream(StreamName="src", ShardCount=2)
    wait_until(lambda: "src" in kb.list_streams()["StreamNames"], timeout=10, what="the stream on the other node")
    arn = ka.create_channel(
        ChannelName="to-s3", ServiceExecutionRoleARN="arn:aws:iam::000000000000:role/c",
        StreamConfigurationList=[{"StreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/src",
                                  "RecordConfiguration": {"RecordFormatType": "STRING"}}],
        S3DestinationConfiguration={"DataFreshnessInSeconds": 1, "StorageConfiguration": {
            "BucketARN": f"arn:aws:s3:::{bucket}", "ExpectedBucketOwner": "000000000000",
            "CompressionType": "NONE", "OutputKeyTemplate": "ch/"}},
    )["ChannelDescription"]["ChannelARN"]
    wait_until(lambda: [c["ChannelName"] for c in kb.list_channels()["ChannelSummaries"]] == ["to-s3"],
               timeout=10, what="the channel on the other node")
    sent = [f"line {i}" for i in range(600)]
    for i in range(0, 600, 100):
        k = (ka, kb)[i // 100 % 2]
        assert k.put_records(StreamName="src", Records=[{"Data": x.encode(), "PartitionKey": x} for x in sent[i:i + 100]])["FailedRecordCount"] == 0
    s3 = garage.s3()
    got = wait_until(lambda: (lambda r: r if len(r) >= 600 else None)(records_in(read_objects(s3, bucket, "ch/"))),
                     timeout=60, what="every record delivered")
    assert sorted(got) == sorted(sent)
    kb.update_channel(ChannelARN=arn, S3DestinationConfiguration={"DataFreshnessInSeconds": 3})
    wait_until(lambda: ka.describe_channel(ChannelARN=arn)["ChannelDescription"]["S3DestinationConfiguration"]["DataFreshnessInSeconds"] == 3,
               timeout=10, what="the update on the other node")
    more = [f"more {i}" for i in range(200)]
    assert ka.put_records(StreamName="src", Records=[{"Data": x.encode(), "PartitionKey": x} for x in more])["FailedRecordCount"] == 0
    got = wait_until(lambda: (lambda r: r if len(r) >= 800 else None)(records_in(read_objects(s3, bucket, "ch/"))),
                     timeout=60, what="the records after the update")
    time.sleep(4)
    assert sorted(records_in(read_objects(s3, bucket, "ch/"))) == sorted(sent + more), "each once across the update"
    ka.delete_channel(ChannelARN=arn)
    wait_until(lambda: kb.list_channels()["ChannelSummaries"] == [], timeout=10, what="the deletion on the other node")
