"""Real ``redis-server`` processes on free loopback ports, for tests: one server, or a cluster.

Each keeps nothing on disk. A test that kills or restarts Redis gets its own server.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time

import pytest

__all__ = ["RedisCluster3", "RedisSentinel", "RedisServer", "free_port", "redis_binary"]


def redis_binary(name: str = "redis-server") -> str:
    """The path of ``name``; fails the test (it is a Debian package .ci/run installs) if absent."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: install Debian's redis-server package (.ci/run does)")
    return path


def free_port(*, cluster: bool = False) -> int:
    """A free loopback port; for a cluster node one whose bus port (+10000) is free as well."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if not cluster:
            return port
        if port <= 55535 and _is_free(port + 10000):
            return port


def _is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class RedisServer:
    """One ``redis-server``; ``stop``/``start`` again on the same port to restart it."""

    def __init__(self, port: int | None = None, *extra: str) -> None:
        self.port = port or free_port(cluster="--cluster-enabled" in extra)
        self._extra = extra
        self._dir = tempfile.TemporaryDirectory(prefix="phonepatch-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        command = [
            redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", self._dir.name, *self._extra,
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as probe:
                    probe.sendall(b"PING\r\n")
                    if probe.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.02)
        self.close()
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()


class RedisCluster3:
    """Three masters with ``--cluster-enabled yes``, joined by ``redis-cli --cluster create``."""

    def __init__(self) -> None:
        self.nodes = [RedisServer(None, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf") for _ in range(3)]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def start(self) -> RedisCluster3:
        try:
            return self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> RedisCluster3:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [redis_binary("redis-cli"), "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, timeout=60,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            info = subprocess.run(
                [redis_binary("redis-cli"), "-p", str(self.nodes[0].port), "cluster", "info"],
                capture_output=True, text=True, timeout=10,
            )  # fmt: skip
            if "cluster_state:ok" in info.stdout:
                return self
            time.sleep(0.1)
        raise RuntimeError("the test cluster did not reach cluster_state:ok")

    def close(self) -> None:
        for node in self.nodes:
            node.close()



class RedisSentinel:
    """A master and one sentinel watching it (``redis-server --sentinel``) as service ``phonepatch``."""

    def __init__(self) -> None:
        self.master = RedisServer()
        self.port = free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="phonepatch-sentinel-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.port}/phonepatch"

    def start(self) -> RedisSentinel:
        self.master.start()
        config = f"{self._dir.name}/sentinel.conf"
        with open(config, "w") as file:
            file.write(
                f"port {self.port}\nbind 127.0.0.1\ndir {self._dir.name}\n"
                f"sentinel monitor phonepatch 127.0.0.1 {self.master.port} 1\n"
            )
        self.process = subprocess.Popen(
            [redis_binary(), config, "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            reply = subprocess.run(
                [redis_binary("redis-cli"), "-p", str(self.port), "sentinel", "get-master-addr-by-name", "phonepatch"],
                capture_output=True, text=True, timeout=5,
            )  # fmt: skip
            if str(self.master.port) in reply.stdout:
                return self
            time.sleep(0.05)
        self.close()
        raise RuntimeError("the test sentinel did not come up")

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.master.close()
        self._dir.cleanup()
