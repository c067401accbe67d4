"""Kinesis queues through boto3: workers sharing a queue, visibility
timeouts, dead letters and their restore, long polling, SIGKILL while
workers receive and acknowledge, and the refusals of the model."""

import threading
import time

import boto3
import botocore
import pytest
from botocore.config import Config as BotoConfig
from harness import error_code

ACCOUNT = "000000000000"


def stream_arn(name):
    return f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/{name}"


def make_queue(k, name, stream, start="TRIM_HORIZON", **attributes):
    return k.create_queue(
        QueueName=name,
        StreamConfigurationList=[{"StreamARN": stream_arn(stream), "StartingPosition": {"Type": start}}],
        **({"QueueAttributes": attributes} if attributes else {}),
    )["QueueDescription"]["QueueARN"]


def put(k, stream, items):
    for i in range(0, len(items), 500):
        chunk = items[i:i + 500]
        r = k.put_records(StreamName=stream, Records=[{"Data": x.encode(), "PartitionKey": x} for x in chunk])
        assert r["FailedRecordCount"] == 0


def receive(k, arn, **kw):
    return k.receive_queue_records(QueueARN=arn, **{"WaitTimeSeconds": 1, **kw})["QueueRecords"]


def ack(k, arn, records, dead=False):
    op = k.acknowledge_dead_letter_queue_records if dead else k.acknowledge_queue_records
    r = op(QueueARN=arn, Entries=[{"ReceiptHandle": x["ReceiptHandle"]} for x in records])
    return r["Successful"], r["Failed"]


class Workers:
    """Threads that receive and acknowledge until told to stop; what each
    acknowledgement confirmed is recorded, and every delivery."""

    def __init__(self, h, arn, n=3):
        self.h, self.arn, self.n = h, arn, n
        self.acked = []          # data whose acknowledgement was confirmed
        self.delivered = []      # data of every delivery
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.unsure = []         # data whose acknowledgement got no answer
        self.threads = [threading.Thread(target=self.run) for _ in range(n)]

    def run(self):
        k = self.h.kinesis()
        lost = (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectionClosedError,
                botocore.exceptions.ReadTimeoutError)
        while not self.stop.is_set():
            try:
                got = receive(k, self.arn, Limit=10)
            except lost:
                time.sleep(0.2)
                continue
            if not got:
                continue
            with self.lock:
                self.delivered += [x["Data"].decode() for x in got]
            try:
                ok, failed = ack(k, self.arn, got)
            except lost:
                # The daemon died with the acknowledgement sent: it may or
                # may not have been made durable.
                with self.lock:
                    self.unsure += [x["Data"].decode() for x in got]
                time.sleep(0.2)
                continue
            assert not failed, failed
            done = {x["ReceiptHandle"] for x in ok}
            with self.lock:
                self.acked += [x["Data"].decode() for x in got if x["ReceiptHandle"] in done]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def join(self):
        self.stop.set()
        for t in self.threads:
            t.join()


def wait_for(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_three_workers_share_a_queue_and_each_record_is_acknowledged_once(hydrant_factory):
    h = hydrant_factory("").start()
    k = h.kinesis()
    k.create_stream(StreamName="jobs", ShardCount=4)
    sent = [f"job-{i}" for i in range(10_000)]
    put(k, "jobs", sent)
    arn = make_queue(k, "workers", "jobs", VisibilityTimeoutSeconds=60)
    w = Workers(h, arn).start()
    wait_for(lambda: len(w.acked) >= 10_000, 240, "10,000 acknowledged records")
    time.sleep(1)
    w.join()
    assert sorted(w.acked) == sorted(sent), "every record acknowledged, each once"
    assert len(w.delivered) == 10_000, "nothing delivered twice while acknowledged in time"
    assert receive(k, arn) == []
    assert h.metric("kinesis_queue_acknowledged_records", queue="workers") == 10_000
    assert h.metric("kinesis_queue_received_records", queue="workers") == 10_000
    assert h.metric("kinesis_queue_in_flight", queue="workers") == 0


def test_an_unacknowledged_record_comes_back_after_its_visibility_timeout(hydrant_factory):
    h = hydrant_factory("").start()
    k = h.kinesis()
    k.create_stream(StreamName="s", ShardCount=2)
    arn = make_queue(k, "q", "s", start="LATEST")
    put(k, "s", [f"r{i}" for i in range(5)])
    first = receive(k, arn, VisibilityTimeoutSeconds=1)
    assert sorted(x["Data"].decode() for x in first) == [f"r{i}" for i in range(5)]
    assert {x["ReceiveCount"] for x in first} == {1}
    assert receive(k, arn, WaitTimeSeconds=1) == [], "in flight: not visible"
    time.sleep(1.2)
    again = receive(k, arn, WaitTimeSeconds=2)
    assert sorted(x["Data"].decode() for x in again) == [f"r{i}" for i in range(5)]
    assert {x["ReceiveCount"] for x in again} == {2}
    assert {x["RecordId"] for x in again} == {x["RecordId"] for x in first}
    assert {x["FirstReceiveTimestamp"] for x in again} == {x["FirstReceiveTimestamp"] for x in first}
    # The first receive's handles expired with it.
    ok, failed = ack(k, arn, first[:2])
    assert ok == [] and {f["ErrorCode"] for f in failed} == {"InvalidArgumentException"}
    assert "received again" in failed[0]["ErrorMessage"]
    # Extending the visibility keeps a record out of sight; 0 shows it at once.
    r = k.update_queue_records_visibility(QueueARN=arn, Entries=[
        {"ReceiptHandle": again[0]["ReceiptHandle"], "VisibilityTimeoutSeconds": 0},
        {"ReceiptHandle": "garbage", "VisibilityTimeoutSeconds": 0},
    ])
    assert len(r["Successful"]) == 1 and r["Failed"][0]["ErrorCode"] == "InvalidArgumentException"
    shown = receive(k, arn)
    assert [x["Data"] for x in shown] == [again[0]["Data"]]
    ok, failed = ack(k, arn, shown + again[1:])
    assert len(ok) == 5 and failed == []
    # Acknowledging again is harmless.
    ok, failed = ack(k, arn, shown)
    assert len(ok) == 1 and failed == []
    time.sleep(1.2)
    assert receive(k, arn) == []


def test_records_received_too_often_become_dead_letters_that_can_be_restored(hydrant_factory):
    h = hydrant_factory("").start()
    k = h.kinesis()
    k.create_stream(StreamName="s", ShardCount=1)
    arn = make_queue(k, "q", "s", start="LATEST", VisibilityTimeoutSeconds=1,
                     DeadLetterConfiguration={"TargetType": "BUILT_IN", "MaxReceiveCount": 2})
    put(k, "s", ["a", "b", "c"])
    for n in (1, 2):
        got = receive(k, arn, WaitTimeSeconds=3)
        assert len(got) == 3 and {x["ReceiveCount"] for x in got} == {n}
        time.sleep(1.2)
    assert receive(k, arn, WaitTimeSeconds=2) == [], "received twice unacknowledged: dead letters now"
    dead = k.receive_dead_letter_queue_records(QueueARN=arn, WaitTimeSeconds=1)["QueueRecords"]
    assert sorted(x["Data"] for x in dead) == [b"a", b"b", b"c"]
    assert h.metric("kinesis_queue_dead_letters", queue="q", stream="s") == 3
    by = {x["Data"]: x for x in dead}
    # A dead letter's handle is not a live record's, and the other way round.
    ok, failed = ack(k, arn, [by[b"a"]])
    assert ok == [] and "dead letter" in failed[0]["ErrorMessage"]
    ok, failed = ack(k, arn, [by[b"a"]], dead=True)
    assert len(ok) == 1 and failed == []
    r = k.restore_dead_letter_queue_records(QueueARN=arn, Entries=[{"ReceiptHandle": by[b"b"]["ReceiptHandle"]}])
    assert len(r["Successful"]) == 1
    r = k.update_dead_letter_queue_records_visibility(
        QueueARN=arn, Entries=[{"ReceiptHandle": by[b"c"]["ReceiptHandle"], "VisibilityTimeoutSeconds": 0}])
    assert len(r["Successful"]) == 1
    back = receive(k, arn, WaitTimeSeconds=2)
    assert [(x["Data"], x["ReceiveCount"]) for x in back] == [(b"b", 1)], "restored, its count reset"
    still = k.receive_dead_letter_queue_records(QueueARN=arn, WaitTimeSeconds=1)["QueueRecords"]
    assert [x["Data"] for x in still] == [b"c"]
    # With dead-letter handling off, records are delivered until acknowledged.
    k.update_queue(QueueARN=arn, QueueAttributes={"DeadLetterConfiguration": {"TargetType": "NONE"}})
    d = k.describe_queue(QueueARN=arn)["QueueDescription"]
    assert d["QueueAttributes"]["DeadLetterConfiguration"] == {"TargetType": "NONE"}
    assert d["QueueAttributes"]["VisibilityTimeoutSeconds"] == 1


def test_a_waiting_receive_answers_when_a_record_arrives(hydrant_factory):
    h = hydrant_factory("").start()
    k = h.kinesis()
    k.create_stream(StreamName="s", ShardCount=1)
    arn = make_queue(k, "q", "s", start="LATEST")
    timer = threading.Timer(1.0, lambda: put(h.kinesis(), "s", ["late"]))
    timer.start()
    got = receive(k, arn, WaitTimeSeconds=10)
    timer.join()
    assert [x["Data"] for x in got] == [b"late"]
    assert got[0]["PartitionKey"] == "late"


def test_sigkill_while_workers_receive_and_acknowledge_loses_and_repeats_nothing_acknowledged(hydrant_factory):
    h = hydrant_factory("").start()
    k = h.kinesis()
    k.create_stream(StreamName="s", ShardCount=3)
    sent = [f"m{i}" for i in range(3000)]
    put(k, "s", sent)
    arn = make_queue(k, "q", "s", VisibilityTimeoutSeconds=2)
    w = Workers(h, arn).start()
    wait_for(lambda: len(w.acked) >= 1000, 120, "1000 acknowledged records")
    h.kill()
    w.join()
    before = set(w.acked)
    assert len(before) == len(w.acked), "nothing acknowledged twice before the kill"
    h.start()
    after = Workers(h, arn).start()
    unsure = set(w.unsure)
    wait_for(lambda: len(before | unsure | set(after.acked)) >= 3000, 180, "every record acknowledged")
    time.sleep(3)  # anything still to come back would after its 2 s visibility
    after.join()
    again = before & set(after.delivered)
    assert not again, f"{len(again)} records acknowledged before the kill were delivered after it"
    assert before | unsure | set(after.acked) == set(sent), "every record delivered until acknowledged"
    assert len(unsure) <= 30, "at most the acknowledgements in flight at the kill"
    assert len(after.acked) == len(set(after.acked))


def test_queue_control_plane_and_refusals(hydrant_factory):
    h = hydrant_factory("kinesis:\n  queues_max: 3\n").start()
    k = h.kinesis()
    k.create_stream(StreamName="s", ShardCount=1)
    k.create_stream(StreamName="t", ShardCount=1)
    a = make_queue(k, "a", "s")
    d = k.describe_queue(QueueARN=a)["QueueDescription"]
    assert d["QueueName"] == "a" and d["QueueStatus"] == "ACTIVE"
    assert d["QueueAttributes"] == {"VisibilityTimeoutSeconds": 30,
                                    "DeadLetterConfiguration": {"TargetType": "BUILT_IN", "MaxReceiveCount": 6}}
    assert d["StreamConfigurationList"][0]["StreamARN"] == stream_arn("s")
    assert a.startswith(f"arn:aws:kinesis:us-east-1:{ACCOUNT}:queue/") and not a.endswith("/a")
    make_queue(k, "b", "t")
    make_queue(k, "c", "s")
    code, _ = error_code(lambda: make_queue(k, "d", "s"))
    assert code == "LimitExceededException"
    code, _ = error_code(lambda: make_queue(k, "a", "t"))
    assert code == "ResourceInUseException"
    names, token = [], None
    while True:
        page = k.list_queues(MaxResults=2, **({"NextToken": token} if token else {}))
        names += [q["QueueName"] for q in page["QueueSummaries"]]
        token = page.get("NextToken")
        if not token:
            break
    assert names == ["a", "b", "c"]
    on_s = k.list_queues(StreamFilter=[{"StreamARN": stream_arn("s")}])["QueueSummaries"]
    assert [q["QueueName"] for q in on_s] == ["a", "c"]
    code, msg = error_code(lambda: k.delete_stream(StreamName="s"))
    assert code == "ResourceInUseException" and "queues" in msg
    updated = k.update_queue(QueueARN=a, QueueAttributes={"VisibilityTimeoutSeconds": 120})["QueueDescription"]
    assert updated["QueueAttributes"]["VisibilityTimeoutSeconds"] == 120
    assert updated["QueueAttributes"]["DeadLetterConfiguration"]["MaxReceiveCount"] == 6

    unchecked = boto3.client("kinesis", endpoint_url=h.url, region_name="us-east-1", aws_access_key_id="test",
                             aws_secret_access_key="test",
                             config=BotoConfig(parameter_validation=False, retries={"total_max_attempts": 1}))
    code, msg = error_code(lambda: unchecked.receive_queue_records(QueueARN=a, Limit=11))
    assert code == "ValidationException" and "limit" in msg
    code, msg = error_code(lambda: unchecked.update_queue(QueueARN=a, QueueAttributes={"VisibilityTimeoutSeconds": 50_000}))
    assert code == "ValidationException" and "visibilityTimeoutSeconds" in msg
    code, _ = error_code(lambda: k.update_queue(QueueARN=a, QueueAttributes={"DeadLetterConfiguration": {"TargetType": "BUILT_IN"}}))
    assert code == "InvalidArgumentException"
    code, _ = error_code(lambda: k.create_queue(QueueName="x", StreamConfigurationList=[
        {"StreamARN": stream_arn("s"), "StartingPosition": {"Type": "LATEST", "Timestamp": 1}}]))
    assert code == "ValidationException"
    code, _ = error_code(lambda: k.create_queue(QueueName="x", StreamConfigurationList=[{"StreamARN": stream_arn("nope")}]))
    assert code == "ResourceNotFoundException"
    code, _ = error_code(lambda: k.create_queue(QueueName="x", StreamConfigurationList=[{"StreamARN": stream_arn("s")}],
                                                Tags={f"k{i}": "v" for i in range(51)}))
    assert code == "InvalidArgumentException"
    missing = f"arn:aws:kinesis:us-east-1:{ACCOUNT}:queue/0123456789abcdef"
    assert error_code(lambda: k.describe_queue(QueueARN=missing))[0] == "ResourceNotFoundException"
    # A handle is scoped to its queue.
    put(k, "t", ["x"])
    b = [q["QueueARN"] for q in k.list_queues()["QueueSummaries"] if q["QueueName"] == "b"][0]
    k.delete_queue(QueueARN=b)
    b = make_queue(k, "b", "t")
    got = receive(k, b, WaitTimeSeconds=2)
    ok, failed = ack(k, a, got)
    assert ok == [] and "another queue" in failed[0]["ErrorMessage"]
    # Kept across a restart; deleted, gone, and the stream deletable.
    h.terminate()
    h.start()
    k = h.kinesis()
    assert [q["QueueName"] for q in k.list_queues()["QueueSummaries"]] == ["a", "b", "c"]
    assert k.describe_queue(QueueARN=a)["QueueDescription"]["QueueAttributes"]["VisibilityTimeoutSeconds"] == 120
    k.delete_queue(QueueARN=a)
    k.delete_queue(QueueARN=[q["QueueARN"] for q in k.list_queues()["QueueSummaries"] if q["QueueName"] == "c"][0])
    assert error_code(lambda: k.describe_queue(QueueARN=a))[0] == "ResourceNotFoundException"
    k.delete_stream(StreamName="s")


@pytest.mark.parametrize("failpoint", ["queue-acknowledged", "queue-received"])
def test_a_crash_after_a_change_is_durable_and_before_it_is_answered(hydrant_factory, failpoint):
    h = hydrant_factory("", env={"HYDRANT_FAILPOINT": failpoint}).start()
    k = h.kinesis()
    k.create_stream(StreamName="s", ShardCount=2)
    arn = make_queue(k, "q", "s", start="LATEST", VisibilityTimeoutSeconds=1)
    put(k, "s", [f"r{i}" for i in range(5)])
    lost = (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectionClosedError)
    if failpoint == "queue-received":
        with pytest.raises(lost):
            receive(k, arn)
    else:
        got = receive(k, arn, WaitTimeSeconds=3)
        assert len(got) == 5
        with pytest.raises(lost):
            ack(k, arn, got)
    h.proc.wait(30)
    assert f"failpoint {failpoint}" in h.logs()
    h.env.pop("HYDRANT_FAILPOINT")
    h.start()
    k = h.kinesis()
    time.sleep(1.2)
    back = receive(k, arn, WaitTimeSeconds=2)
    if failpoint == "queue-received":
        # The receive nobody heard of still counts: the records come back.
        assert sorted(x["Data"].decode() for x in back) == [f"r{i}" for i in range(5)]
        assert {x["ReceiveCount"] for x in back} == {2}
    else:
        assert back == [], "acknowledged, durable before the crash: never again"
