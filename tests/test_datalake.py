"""The data-lake output read back by readers no one here wrote: Python's gzip,
zstandard and snappy modules, and `cryptography`'s AESGCM following
docs/encryption.md."""

import gzip
import io
import json
import subprocess

import pytest
import snappy
import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from conftest import s3_store_yaml
from harness import hydrant_bin, read_objects, wait_until

DECOMPRESS = {
    ".gz": gzip.decompress,
    ".zst": lambda b: zstandard.ZstdDecompressor().decompressobj().decompress(b),
    ".snappy": lambda b: (lambda out: (snappy.stream_decompress(io.BytesIO(b), out), out.getvalue())[1])(io.BytesIO()),
}


def stream(bucket, compression, extra=""):
    return f"""streams:
  lake:
    shards: 2
    buffering: {{ size_mb: 1, interval_secs: 1 }}
    compression: {compression}
{extra}    destination: {{ type: s3, bucket: {bucket}, prefix: lake/ }}
"""


def put_records(h, n):
    fh = h.firehose()
    sent = [json.dumps({"id": i, "msg": f"event {i} " + "x" * (i % 50)}) for i in range(n)]
    for i in range(0, n, 500):
        assert fh.put_record_batch(DeliveryStreamName="lake", Records=[{"Data": s.encode()} for s in sent[i:i + 500]])["FailedPutCount"] == 0
    return sent


@pytest.mark.parametrize("compression, ext, level", [("gzip", ".gz", 9), ("zstd", ".zst", 19), ("snappy", ".snappy", None)])
def test_python_decompresses_every_compression(hydrant_factory, garage, bucket, compression, ext, level):
    lvl = f"    compression_level: {level}\n" if level else ""
    h = hydrant_factory(s3_store_yaml(garage) + stream(bucket, compression, lvl)).start()
    sent = put_records(h, 3000)
    s3 = garage.s3()

    def lines():
        objs = read_objects(s3, bucket)
        assert all(k.endswith(ext) for k in objs), list(objs)
        got = [x for b in objs.values() for x in DECOMPRESS[ext](b).decode().splitlines()]
        return got if len(got) >= 3000 else None

    got = wait_until(lines, timeout=60, what=f"3000 {compression} records")
    assert sorted(got) == sorted(sent)


def decrypt_per_spec(blob: bytes, keys: dict) -> bytes:
    """Written from docs/encryption.md alone."""
    assert blob[:4] == b"HYE1", "magic"
    assert blob[4] == 1 and blob[5] == 1, "version and algorithm"
    chunk = int.from_bytes(blob[6:10], "little")
    prefix, id_len = blob[10:18], blob[18]
    header = blob[:19 + id_len]
    key_id = blob[19:19 + id_len].decode()
    aead = AESGCM(keys[key_id])
    body = blob[19 + id_len:]
    pieces = [body[p:p + chunk + 16] for p in range(0, len(body), chunk + 16)]
    if not pieces:
        raise ValueError("truncated")
    out = []
    for i, piece in enumerate(pieces):
        flag = b"\x01" if i == len(pieces) - 1 else b"\x00"
        out.append(aead.decrypt(prefix + i.to_bytes(4, "big"), piece, header + flag))
    return b"".join(out)


def test_encrypted_objects_decrypt_with_cryptography_and_detect_tampering(hydrant_factory, garage, bucket, tmp_path):
    new_key, old_key = bytes(range(32)), bytes(range(100, 132))
    (tmp_path / "new.key").write_text(new_key.hex() + "\n")
    enc = f"""    encryption:
      chunk_bytes: 1024
      keys:
        - {{ id: key-2026-11, file: {tmp_path / 'new.key'} }}
        - {{ id: key-2026-05, env: HYDRANT_TEST_OLD_KEY }}
"""
    import base64
    h = hydrant_factory(s3_store_yaml(garage) + stream(bucket, "gzip", enc), env={"HYDRANT_TEST_OLD_KEY": base64.b64encode(old_key).decode()}).start()
    sent = put_records(h, 2000)
    s3 = garage.s3()
    keys = {"key-2026-11": new_key, "key-2026-05": old_key}

    def decrypted():
        objs = read_objects(s3, bucket)
        got = [x for b in objs.values() for x in gzip.decompress(decrypt_per_spec(b, keys)).decode().splitlines()]
        return (objs, got) if len(got) >= 2000 else None

    objs, got = wait_until(decrypted, timeout=60, what="2000 encrypted records")
    assert sorted(got) == sorted(sent)
    assert all(k.endswith(".gz.enc") for k in objs)
    blob = max(objs.values(), key=len)
    assert blob[19:19 + blob[18]] == b"key-2026-11", "the first key encrypts"
    assert len(blob) > 19 + 11 + 3 * (1024 + 16), "the test needs an object of several chunks"

    # Tampering with any byte is detected (a sample of positions across header and body).
    step = max(1, len(blob) // 200)
    for pos in list(range(0, len(blob), step)) + [len(blob) - 1]:
        bad = bytearray(blob)
        bad[pos] ^= 0x01
        with pytest.raises((InvalidTag, AssertionError, KeyError, ValueError, UnicodeDecodeError)):
            decrypt_per_spec(bytes(bad), keys)
    # Truncation at a chunk boundary and reordering are detected too.
    header_len = 19 + blob[18]
    with pytest.raises(InvalidTag):
        decrypt_per_spec(blob[:header_len + 1024 + 16], keys)
    c = 1024 + 16
    swapped = blob[:header_len] + blob[header_len + c:header_len + 2 * c] + blob[header_len:header_len + c] + blob[header_len + 2 * c:]
    with pytest.raises(InvalidTag):
        decrypt_per_spec(swapped, keys)

    # hydrant decrypt reverses it, and refuses a tampered object with the reason.
    (tmp_path / "obj").write_bytes(blob)
    r = subprocess.run([hydrant_bin(), "decrypt", "--key-file", f"key-2026-11={tmp_path / 'new.key'}", str(tmp_path / "obj"), "-o", str(tmp_path / "plain.gz")], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert gzip.decompress((tmp_path / "plain.gz").read_bytes()) == gzip.decompress(decrypt_per_spec(blob, keys))
    bad = bytearray(blob)
    bad[len(blob) // 2] ^= 0xFF
    (tmp_path / "bad").write_bytes(bytes(bad))
    r = subprocess.run([hydrant_bin(), "decrypt", "--key-file", f"key-2026-11={tmp_path / 'new.key'}", str(tmp_path / "bad")], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "fails authentication" in r.stderr, r.stderr
    r = subprocess.run([hydrant_bin(), "decrypt", str(tmp_path / "obj")], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "key-2026-11" in r.stderr, r.stderr


def test_encryption_config_errors_name_their_path(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("""streams:
  a:
    encryption:
      keys:
        - { id: k1, env: HYDRANT_TEST_UNSET_VARIABLE }
        - { id: k2, file: /nonexistent/key }
    destination: { type: file, path: /tmp/x }
""")
    r = subprocess.run([hydrant_bin(), "validate", str(f)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "streams.a.encryption.keys[0].env: environment variable HYDRANT_TEST_UNSET_VARIABLE is not set" in r.stderr, r.stderr
    assert "streams.a.encryption.keys[1].file: cannot read /nonexistent/key" in r.stderr, r.stderr
