"""Small probes used by scripts/services.sh: pick free loopback ports, wait for the S3 gateway.

Usage:
    _service_probes.py free-ports COUNT [--partner-offset N] [--taken FILE]
    _service_probes.py wait-s3 ENDPOINT ACCESS_KEY SECRET_KEY --pid PID [--timeout SECONDS]

Run with the project's venv python (it needs `minio`).
"""

from __future__ import annotations

import argparse
import io
import random
import socket
import sys
import time
import uuid
from pathlib import Path

from minio import Minio

# Below Linux's ephemeral range (32768-60999) so that a picked port is not taken a moment later by some
# process's outgoing connection; a partner port (port + offset, SeaweedFS's gRPC ports) stays below it too.
_LOW_PORT = 10000
_HIGH_PORT = 32000


def _is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int, partner_offset: int, taken_file: Path | None) -> list[int]:
    """Return `count` distinct free ports (and free `port + partner_offset` partners), never reusing any
    port listed in `taken_file`, to which the picked ports (and partners) are appended."""
    taken: set[int] = set()
    if taken_file is not None and taken_file.exists():
        taken = {int(line) for line in taken_file.read_text().split() if line.strip()}
    high = _HIGH_PORT - partner_offset
    picked: list[int] = []
    for _ in range(10_000):
        port = random.randrange(_LOW_PORT, high)
        group = [port, port + partner_offset] if partner_offset else [port]
        if any(p in taken for p in group) or not all(_is_free(p) for p in group):
            continue
        picked.append(port)
        taken.update(group)
        if taken_file is not None:
            with taken_file.open("a") as out:
                out.write("".join(f"{p}\n" for p in group))
        if len(picked) == count:
            return picked
    raise SystemExit(f"free-ports: could not find {count} free ports")


def wait_s3(endpoint: str, access_key: str, secret_key: str, pid: int, timeout: float) -> None:
    """Wait until the S3 gateway at `endpoint` can create a bucket and store and read back an object."""
    client = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=False)
    bucket = f"readiness-{uuid.uuid4().hex[:12]}"
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        if not _alive(pid):
            raise SystemExit(f"wait-s3: the SeaweedFS process {pid} has exited")
        try:
            if not client.bucket_exists(bucket):
                client.make_bucket(bucket)
            payload = b"ready"
            client.put_object(bucket, "probe", io.BytesIO(payload), len(payload))
            response = client.get_object(bucket, "probe")
            try:
                if response.read() == payload:
                    client.remove_object(bucket, "probe")
                    client.remove_bucket(bucket)
                    return
            finally:
                response.close()
                response.release_conn()
        except Exception as exc:  # not ready yet: connection refused, no writable volume, ...
            last_error = exc
        time.sleep(0.25)
    raise SystemExit(f"wait-s3: S3 at {endpoint} not ready after {timeout:.0f}s; last error: {last_error!r}")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    ports = commands.add_parser("free-ports")
    ports.add_argument("count", type=int)
    ports.add_argument("--partner-offset", type=int, default=0)
    ports.add_argument("--taken", type=Path)
    s3 = commands.add_parser("wait-s3")
    s3.add_argument("endpoint")
    s3.add_argument("access_key")
    s3.add_argument("secret_key")
    s3.add_argument("--pid", type=int, required=True)
    s3.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    if args.command == "free-ports":
        print(" ".join(str(p) for p in free_ports(args.count, args.partner_offset, args.taken)))
    else:
        wait_s3(args.endpoint, args.access_key, args.secret_key, args.pid, args.timeout)


if __name__ == "__main__":
    main(sys.argv[1:])
