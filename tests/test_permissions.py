"""Per-key permissions: a key's IAM-shaped policy allows operations on
resources; everything else is AccessDeniedException naming the action and
resource, and explicit deny wins over allow. Keys without a policy keep
full access."""

import subprocess

import botocore
import pytest

from harness import hydrant_bin


def config(tmp):
    return f"""auth:
  access_keys:
    - access_key_id: PRODUCER
      secret_access_key: producer-secret
      policy:
        Statement:
          - Effect: Allow
            Action: "firehose:PutRecord*"
            Resource: "logs-*"
    - access_key_id: OPS
      secret_access_key: ops-secret
      policy: '{{"Statement": [{{"Effect": "Allow", "Action": "*", "Resource": "*"}}, {{"Effect": "Deny", "Action": ["firehose:Delete*", "kinesis:DeleteStream"], "Resource": "*"}}]}}'
    - access_key_id: ADMIN
      secret_access_key: admin-secret
streams:
  logs-app:
    destination: {{ type: file, path: {tmp}/logs-app }}
  orders:
    destination: {{ type: file, path: {tmp}/orders }}
"""


def denied(call):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call()
    assert e.value.response["Error"]["Code"] == "AccessDeniedException", e.value.response
    return e.value.response["Error"]["Message"]


def test_a_key_may_do_what_its_policy_allows_and_nothing_else(hydrant_factory, tmp_path):
    h = hydrant_factory(config(tmp_path)).start()
    producer = h.firehose(key="PRODUCER", secret="producer-secret")
    assert producer.put_record(DeliveryStreamName="logs-app", Record={"Data": b"x\n"})["RecordId"]
    assert producer.put_record_batch(DeliveryStreamName="logs-app", Records=[{"Data": b"y\n"}])["FailedPutCount"] == 0
    msg = denied(lambda: producer.put_record(DeliveryStreamName="orders", Record={"Data": b"x\n"}))
    assert "firehose:PutRecord" in msg and "deliverystream/orders" in msg and "PRODUCER" in msg
    denied(lambda: producer.delete_delivery_stream(DeliveryStreamName="logs-app"))
    denied(lambda: producer.list_delivery_streams())
    pk = h.kinesis(key="PRODUCER", secret="producer-secret")
    denied(lambda: pk.list_streams())
    denied(lambda: pk.create_stream(StreamName="k", ShardCount=1))

    ops = h.kinesis(key="OPS", secret="ops-secret")
    ops.create_stream(StreamName="k", ShardCount=1)
    assert ops.put_record(StreamName="k", Data=b"z", PartitionKey="p")["ShardId"]
    msg = denied(lambda: ops.delete_stream(StreamName="k"))
    assert "kinesis:DeleteStream" in msg and "stream/k" in msg, "explicit deny wins over allow"
    ops_fh = h.firehose(key="OPS", secret="ops-secret")
    assert "orders" in ops_fh.list_delivery_streams()["DeliveryStreamNames"]
    denied(lambda: ops_fh.delete_delivery_stream(DeliveryStreamName="orders"))

    admin = h.kinesis(key="ADMIN", secret="admin-secret")
    admin.delete_stream(StreamName="k")
    assert h.metric("access_denied_requests", operation="firehose:PutRecord") == 1
    assert h.metric("access_denied_requests", operation="kinesis:DeleteStream") == 1


def test_hydrant_validate_checks_policies(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("""auth:
  access_keys:
    - access_key_id: A
      secret_access_key: s
      policy:
        Statement:
          - Effect: Permit
            Action: "firehose:*"
            Resource: "*"
""")
    r = subprocess.run([hydrant_bin(), "validate", str(cfg)], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "auth.access_keys[0].policy.Statement[0].Effect" in r.stdout + r.stderr, r.stdout + r.stderr
