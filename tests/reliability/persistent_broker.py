"""A tansu broker whose data survives a restart: its `s3://` storage on a moto S3 server on loopback.

tansu's memory storage loses every topic and commit when the process ends; its S3 storage keeps
records, watermarks and group offsets as objects, so a killed broker restarted on the same port
serves the same log. moto (`moto_server`, PyPI `moto[server]`) runs as its own process so that its
request handling does not compete with the test for the GIL.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from service.embedded_broker import broker_binary, free_port

BUCKET = "tansu"
_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout_seconds: float) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)  # a port about to open: there is no event to await
    raise RuntimeError(f"nothing listens on port {port} after {timeout_seconds}s")


def moto_server_command(port: int) -> list[str]:
    found = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
    if found is None:
        raise RuntimeError("the persistent broker needs `pip install 'moto[server]'`")
    return [found, "-H", "127.0.0.1", "-p", str(port)]


class PersistentBroker:
    """`start()` / `kill()` / `start()` again: the same port, the same data."""

    def __init__(self) -> None:
        self.port = free_port()
        self.s3_port = free_port()
        self._s3: subprocess.Popen[bytes] | None = None
        self._broker: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        endpoint = f"http://127.0.0.1:{self.s3_port}"
        return {**os.environ, **_CREDENTIALS, "AWS_ENDPOINT": endpoint, "AWS_ENDPOINT_URL": endpoint}

    def start_storage(self) -> None:
        self._s3 = subprocess.Popen(moto_server_command(self.s3_port), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for_port(self.s3_port, self._s3, 30)
        import boto3  # ships with moto

        boto3.client("s3", endpoint_url=f"http://127.0.0.1:{self.s3_port}", aws_access_key_id="test",
                     aws_secret_access_key="test", region_name="us-east-1").create_bucket(Bucket=BUCKET)

    def start(self) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        storage = f"s3://{BUCKET}/"
        env = {**self._env(), "STORAGE_ENGINE": storage, "LISTENER_URL": url, "ADVERTISED_LISTENER_URL": url,
               "RUST_LOG": "warn"}
        self._broker = subprocess.Popen(
            [str(broker_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", storage],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        _wait_for_port(self.port, self._broker, 15)

    def kill(self) -> None:
        """SIGKILL: no flush, no goodbye; only what tansu already wrote to S3 survives."""
        broker, self._broker = self._broker, None
        if broker is not None and broker.poll() is None:
            broker.kill()
            broker.wait()

    def restart(self) -> None:
        self.kill()
        self.start()
        self.restarts += 1

    def stop(self) -> None:
        self.kill()
        s3, self._s3 = self._s3, None
        if s3 is not None and s3.poll() is None:
            s3.terminate()
            try:
                s3.wait(5)
            except subprocess.TimeoutExpired:
                s3.kill()
                s3.wait()

    def __enter__(self) -> PersistentBroker:
        self.start_storage()
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
