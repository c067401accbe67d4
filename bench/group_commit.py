"""What grouping the shards' syncs would save: CPU per GB of write + sync.

    python bench/group_commit.py [--dir DIR] [--rounds 1500] [--write-kib 150]

Four 64 MiB files, written over (as the log writes over a reused segment, so
no write changes a file's size), one write of `--write-kib` to each per
round (150 KiB is a W2 `PutRecordBatch`: 500 records of ~300 B), arranged
three ways:

- `threads`: four threads, each `pwrite` + `fdatasync` on its own file, as
  the log's four shard writers do;
- `one`: one thread, four `pwrite`s then four `fdatasync`s;
- `one flush`: one thread, four `pwrite`s, `sync_file_range` (write and
  wait) on three files and `fdatasync` on the fourth: one device flush for
  all four. (Only sound for files whose size and blocks do not change.)

Prints MB/s, the process's CPU seconds (user + system) per GB and its
voluntary context switches per round, each arrangement twice, alternating.
Run it on an otherwise idle machine, on the disk the log would use.
"""

import argparse
import ctypes
import os
import resource
import threading
import time

SEG = 64 << 20
FILES = 4
SYNC_FILE_RANGE_WAIT_BEFORE = 1
SYNC_FILE_RANGE_WRITE = 2
SYNC_FILE_RANGE_WAIT_AFTER = 4

libc = ctypes.CDLL(None, use_errno=True)
libc.sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]


def sync_range(fd, off, length):
    flags = SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER
    if libc.sync_file_range(fd, off, length, flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def prepare(directory):
    paths = [os.path.join(directory, f"segment-{i}") for i in range(FILES)]
    for p in paths:
        if not os.path.exists(p) or os.path.getsize(p) != SEG:
            with open(p, "wb") as f:
                for _ in range(SEG >> 20):
                    f.write(os.urandom(1 << 20))
                f.flush()
                os.fsync(f.fileno())
    return paths


def run(mode, fds, rounds, size):
    buf = os.urandom(size)
    span = SEG - size

    def shard(fd):
        off = 0
        for _ in range(rounds):
            os.pwrite(fd, buf, off)
            os.fdatasync(fd)
            off = (off + size) % span

    before = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    if mode == "threads":
        threads = [threading.Thread(target=shard, args=(fd,)) for fd in fds]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:
        off = 0
        for _ in range(rounds):
            for fd in fds:
                os.pwrite(fd, buf, off)
            if mode == "one":
                for fd in fds:
                    os.fdatasync(fd)
            else:
                for fd in fds[1:]:
                    sync_range(fd, off, size)
                os.fdatasync(fds[0])
            off = (off + size) % span
    took = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF)
    gb = FILES * size * rounds / 1e9
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    switches = (after.ru_nvcsw - before.ru_nvcsw) / rounds
    print(
        f"{mode:>9}: {gb * 1e3 / took:7.0f} MB/s, {cpu / gb:.2f} CPU s/GB "
        f"(system {(after.ru_stime - before.ru_stime) / gb:.2f}), "
        f"{switches:.1f} voluntary switches per round"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="/tmp/hydrant-group-commit")
    ap.add_argument("--rounds", type=int, default=1500)
    ap.add_argument("--write-kib", type=int, default=150)
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    paths = prepare(args.dir)
    fds = [os.open(p, os.O_WRONLY) for p in paths]
    try:
        for _ in range(2):
            for mode in ("threads", "one", "one flush"):
                run(mode, fds, args.rounds, args.write_kib * 1024)
    finally:
        for fd in fds:
            os.close(fd)
        for p in paths:
            os.unlink(p)


if __name__ == "__main__":
    main()
