"""The HTTPS listener (`listen_tls`): boto3 over TLS with a CA bundle and
with client certificates, wrong certificates refused, TLS 1.2 and 1.3, a
renewed certificate picked up on SIGHUP while a producer keeps sending,
and bad TLS settings refused as config errors."""

import datetime
import json
import signal
import socket
import ssl
import subprocess
import threading
import time

import boto3
import botocore
import pytest
from botocore.config import Config as BotoConfig
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from harness import free_port, hydrant_bin, read_objects, records_in, wait_until


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn="hydrant test CA"):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def make_leaf(ca, cn, client=False):
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca_cert.subject).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
         .not_valid_after(now + datetime.timedelta(days=10))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
    if not client:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]), critical=False)
    return key, b.sign(ca_key, hashes.SHA256())


def write_pair(d, stem, pair):
    key, cert = pair
    (d / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / f"{stem}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
    return d / f"{stem}.pem", d / f"{stem}.key"


@pytest.fixture
def pki(tmp_path):
    d = tmp_path / "pki"
    d.mkdir()
    ca = make_ca()
    other = make_ca("some other CA")
    out = {"dir": d, "ca": ca}
    out["ca_pem"], _ = write_pair(d, "ca", ca)
    out["other_ca_pem"], _ = write_pair(d, "other-ca", other)
    out["server"] = write_pair(d, "server", make_leaf(ca, "localhost"))
    out["client"] = write_pair(d, "client", make_leaf(ca, "producer", client=True))
    out["stranger"] = write_pair(d, "stranger", make_leaf(other, "stranger", client=True))
    return out


def tls_yaml(pki, port, mtls=False):
    ca = f"\n  client_ca_file: {pki['ca_pem']}" if mtls else ""
    return (f"listen_tls:\n  address: 127.0.0.1:{port}\n  cert_file: {pki['server'][0]}\n  key_file: {pki['server'][1]}{ca}\n"
            "streams:\n  app:\n    buffering: { size_mb: 1, interval_secs: 1 }\n    destination: { type: file, path: OUT }\n")


def start(hydrant_factory, pki, mtls=False):
    port = free_port()
    h = hydrant_factory("")
    h.config.write_text(h.config.read_text() + tls_yaml(pki, port, mtls).replace("OUT", str(h.dir / "out")))
    h.start()
    return h, port


def firehose(port, verify, cert=None):
    return boto3.client("firehose", endpoint_url=f"https://localhost:{port}", region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test", verify=str(verify),
                        config=BotoConfig(retries={"total_max_attempts": 1}, client_cert=cert and tuple(map(str, cert))))


def served_serial(port, ca):
    ctx = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s, ctx.wrap_socket(s, server_hostname="localhost") as t:
        return x509.load_der_x509_certificate(t.getpeercert(binary_form=True)).serial_number


def test_boto3_over_https_with_a_ca_bundle_beside_plain_http(hydrant_factory, pki):
    h, port = start(hydrant_factory, pki)
    fh = firehose(port, pki["ca_pem"])
    r = fh.put_record_batch(DeliveryStreamName="app", Records=[{"Data": json.dumps({"n": i}).encode() + b"\n"} for i in range(100)])
    assert r["FailedPutCount"] == 0
    h.firehose().put_record(DeliveryStreamName="app", Record={"Data": b'{"n": 100}\n'})
    lines = wait_until(lambda: (lambda x: x if len(x) >= 101 else None)(records_in(read_objects(None, h.dir / "out"))),
                       timeout=30, what="101 records")
    assert sorted(json.loads(x)["n"] for x in lines) == list(range(101))
    # A client that trusts another CA refuses the server.
    with pytest.raises(botocore.exceptions.SSLError):
        firehose(port, pki["other_ca_pem"]).list_delivery_streams()
    # TLS 1.2 and TLS 1.3 both.
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = ssl.create_default_context(cafile=str(pki["ca_pem"]))
        ctx.minimum_version = ctx.maximum_version = version
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s, ctx.wrap_socket(s, server_hostname="localhost") as t:
            assert t.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
    # A client that never finishes its handshake holds nothing up.
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(50)]
    assert firehose(port, pki["ca_pem"]).list_delivery_streams()["DeliveryStreamNames"] == ["app"]
    for s in idle:
        s.close()


def test_client_certificates_are_required_with_a_client_ca(hydrant_factory, pki):
    h, port = start(hydrant_factory, pki, mtls=True)
    ok = firehose(port, pki["ca_pem"], cert=pki["client"])
    assert ok.list_delivery_streams()["DeliveryStreamNames"] == ["app"]
    for cert in (None, pki["stranger"]):
        with pytest.raises((botocore.exceptions.SSLError, botocore.exceptions.EndpointConnectionError,
                            botocore.exceptions.ConnectionClosedError)):
            firehose(port, pki["ca_pem"], cert=cert).list_delivery_streams()
    # Plain HTTP on loopback is unaffected (its own listener).
    assert h.firehose().list_delivery_streams()["DeliveryStreamNames"] == ["app"]


def test_sighup_serves_a_renewed_certificate_while_a_producer_keeps_sending(hydrant_factory, pki):
    h, port = start(hydrant_factory, pki)
    before = served_serial(port, pki["ca_pem"])
    sent, errors, stop = [], [], threading.Event()

    def produce():
        fh = firehose(port, pki["ca_pem"])
        i = 0
        while not stop.is_set():
            try:
                fh.put_record(DeliveryStreamName="app", Record={"Data": json.dumps({"n": i}).encode() + b"\n"})
                sent.append(i)
            except Exception as e:  # noqa: BLE001 - counted, asserted below
                errors.append(repr(e))
            i += 1
            time.sleep(0.005)

    t = threading.Thread(target=produce)
    t.start()
    time.sleep(1)
    renewed = make_leaf(pki["ca"], "localhost")
    write_pair(pki["dir"], "server", renewed)
    h.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: served_serial(port, pki["ca_pem"]) != before, timeout=10, what="the renewed certificate served")
    assert served_serial(port, pki["ca_pem"]) == renewed[1].serial_number
    time.sleep(1)
    stop.set()
    t.join()
    assert errors == [], errors[:3]
    lines = wait_until(lambda: (lambda x: x if len(x) >= len(sent) else None)(records_in(read_objects(None, h.dir / "out"))),
                       timeout=30, what="every record sent")
    assert sorted(json.loads(x)["n"] for x in lines) == sorted(sent)
    # A broken certificate on the next SIGHUP keeps the renewed one.
    (pki["dir"] / "server.pem").write_text("not a certificate")
    h.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "TLS certificate cannot be read" in h.logs(), timeout=10, what="the refusal logged")
    assert served_serial(port, pki["ca_pem"]) == renewed[1].serial_number


def test_bad_tls_settings_are_config_errors_naming_the_field(tmp_path, pki):
    cases = [
        (f"listen_tls:\n  address: 127.0.0.1:{free_port()}\n  cert_file: {tmp_path}/missing.pem\n  key_file: {pki['server'][1]}\n", "certificate"),
        (f"listen_tls:\n  address: 127.0.0.1:{free_port()}\n  cert_file: {pki['server'][0]}\n  key_file: {pki['client'][1]}\n", "do not make a certificate and its key"),
        (f"listen_tls:\n  address: nowhere\n  cert_file: {pki['server'][0]}\n  key_file: {pki['server'][1]}\n", "listen_tls.address"),
        (f"listen_tls:\n  address: 127.0.0.1:1\n  cert_file: {pki['server'][0]}\n  key_file: {pki['server'][1]}\n  client_ca: x\n", "client_ca"),
    ]
    for body, expected in cases:
        cfg = tmp_path / "bad.yaml"
        cfg.write_text(body)
        r = subprocess.run([hydrant_bin(), "validate", str(cfg)], capture_output=True, text=True, timeout=30)
        assert r.returncode != 0, body
        assert expected in r.stdout + r.stderr, (body, r.stdout + r.stderr)
