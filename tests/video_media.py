"""Test helpers for Kinesis Video: ffmpeg-made MKV, a PutMedia client that
signs as the producer SDK signs (SigV4 over an empty payload) and reads the
acknowledgements while it uploads, and MKV surgery for bad-input cases."""

import json
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def make_mkv(path: Path, seconds=6, gop=25, bframes=0, audio=False, extra_audio=0) -> Path:
    """An H.264 test pattern (25 fps, a key frame every `gop` frames) as
    live MKV, optionally with AAC audio and extra audio tracks."""
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size=320x240:rate=25:duration={seconds}"]
    inputs = 1
    if audio or extra_audio:
        for i in range(max(1, extra_audio) if audio or extra_audio else 0):
            cmd += ["-f", "lavfi", "-i", f"sine=frequency={440 + 110 * i}:sample_rate=48000:duration={seconds}"]
            inputs += 1
    cmd += ["-map", "0:v"]
    for i in range(1, inputs):
        cmd += ["-map", f"{i}:a"]
    cmd += ["-c:v", "libx264", "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
            "-bf", str(bframes), "-pix_fmt", "yuv420p"]
    cmd += ["-preset", "fast" if bframes else "ultrafast"]
    if inputs > 1:
        cmd += ["-c:a", "aac", "-b:a", "64k"]
    cmd += ["-f", "matroska", "-live", "1", "-cluster_time_limit", "100000", "-cluster_size_limit", "50000000", str(path)]
    subprocess.run(cmd, check=True)
    return path


def framemd5(path_or_url, stream="v:0") -> list:
    """The decoded frames' MD5s (`ffmpeg -f framemd5`), without the header."""
    out = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path_or_url), "-map", f"0:{stream}", "-f", "framemd5", "-"],
                         capture_output=True, check=True).stdout.decode()
    return [line.split(",")[-1].strip() for line in out.splitlines() if line and not line.startswith("#")]


def frame_count(path_or_url) -> int:
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
                          "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", str(path_or_url)],
                         capture_output=True, check=True).stdout.decode().strip()
    # An HLS source lists its stream once per program: the first is enough.
    return int(next(line for line in out.splitlines() if line.strip()).split(",")[0])


def signed_headers(url: str, stream: str, key=("test", "test"), extra=None) -> dict:
    """The headers the producer SDK sends, signed over an empty payload."""
    headers = {
        "x-amzn-stream-name": stream,
        "x-amzn-fragment-timecode-type": "RELATIVE",
        "x-amzn-producer-start-timestamp": f"{time.time():.3f}",
        "x-amzn-fragment-acknowledgment-required": "1",
        **(extra or {}),
    }
    req = AWSRequest(method="POST", url=url + "/putMedia", data=b"", headers=headers)
    SigV4Auth(Credentials(*key), "kinesisvideo", "us-east-1").add_auth(req)
    return dict(req.headers.items())


class PutMedia:
    """A chunked PutMedia upload on a raw socket, its acknowledgement lines
    read on a thread as they arrive."""

    def __init__(self, port: int, headers: dict):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        lines = ["POST /putMedia HTTP/1.1", f"Host: 127.0.0.1:{port}", "Transfer-Encoding: chunked",
                 "Content-Type: application/octet-stream"]
        lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() not in ("host", "content-length")]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.acks = []  # (seconds since start, ack)
        self.error_body = b""
        self.status = None
        self.started = time.monotonic()
        self.done_reading = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def send(self, data: bytes):
        """Sends a chunk; False once the server has closed the connection
        (it refused the upload)."""
        try:
            self.sock.sendall(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def finish(self, timeout=30):
        self.finished_at = time.monotonic() - self.started
        try:
            self.sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.done_reading.wait(timeout)
        self.sock.close()

    def _read(self):
        f = self.sock.makefile("rb")
        try:
            status = f.readline().decode()
            self.status = int(status.split()[1])
            chunked, length = False, None
            while True:
                h = f.readline().decode().strip()
                if not h:
                    break
                if h.lower().startswith("transfer-encoding") and "chunked" in h.lower():
                    chunked = True
                if h.lower().startswith("content-length:"):
                    length = int(h.split(":", 1)[1])
            if length is not None:
                self.error_body = f.read(length)
                return
            buf = b""
            while True:
                if chunked:
                    size = int(f.readline().strip() or b"0", 16)
                    if size == 0:
                        break
                    buf += f.read(size)
                    f.readline()
                else:
                    piece = f.read1(65536)
                    if not piece:
                        break
                    buf += piece
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        self.acks.append((time.monotonic() - self.started, json.loads(line)))
        except (OSError, ValueError):
            pass
        finally:
            self.done_reading.set()

    def events(self, kind=None):
        return [a for _, a in self.acks if kind is None or a["EventType"] == kind]


def upload(port, headers, data: bytes, chunk=4096, pace=0.0) -> PutMedia:
    """Uploads `data` in chunks and waits for the acknowledgements to end."""
    p = PutMedia(port, headers)
    for i in range(0, len(data), chunk):
        if not p.send(data[i:i + chunk]):
            break
        if pace:
            time.sleep(pace)
    p.finish()
    return p


# --- MKV surgery: enough EBML to find clusters and their timecodes -----------

CLUSTER, TIMECODE, SEGMENT = 0x1F43B675, 0xE7, 0x18538067


def read_id(b, i):
    first = b[i]
    n = 1 if first & 0x80 else 2 if first & 0x40 else 3 if first & 0x20 else 4
    return int.from_bytes(b[i:i + n], "big"), i + n


def read_size(b, i):
    first = b[i]
    n = next(k for k in range(8) if first & (0x80 >> k)) + 1
    v = first & (0xFF >> n)
    for x in b[i + 1:i + n]:
        v = (v << 8) | x
    unknown = v == (1 << (7 * n)) - 1
    return (None if unknown else v), i + n


def clusters(b: bytes):
    """(start, timecode position, timecode size, timecode) of every Cluster."""
    out, i = [], 0
    while i < len(b):
        i = b.find(struct.pack(">I", CLUSTER), i)
        if i < 0:
            break
        _, j = read_id(b, i)
        _, j = read_size(b, j)
        # The Timecode comes first, after a CRC-32 or Void element if any.
        for _ in range(3):
            eid, k = read_id(b, j)
            size, k2 = read_size(b, k)
            if eid == TIMECODE:
                out.append((i, k2, size, int.from_bytes(b[k2:k2 + size], "big")))
                break
            j = k2 + (size or 0)
        i += 4
    return out


def with_timecode(b: bytes, n: int, value: int) -> bytes:
    """`b` with the nth cluster's timecode replaced (same width)."""
    _, pos, size, _ = clusters(b)[n]
    return b[:pos] + value.to_bytes(size, "big") + b[pos + size:]
