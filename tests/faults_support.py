"""Support for fault tests: a private RabbitMQ node, a TCP proxy that cuts or slows
connections, and a small tmpfs that fills up or turns read-only."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 1).close()
        return True
    except OSError:
        return False


class RabbitNode:
    """A RabbitMQ node of the test's own, on its own port and data folder, so that restarting
    it never disturbs the machine's broker."""

    def __init__(self) -> None:
        # Not under pytest's tmp_path: the server runs as the rabbitmq user, which cannot
        # enter root's 0700 pytest folders.
        base = Path(tempfile.mkdtemp(prefix="tess-ffi-rabbit-", dir="/tmp"))
        base.chmod(0o755)
        self.base = base
        self.port = free_port()
        self.name = f"tessfault{uuid.uuid4().hex[:6]}@localhost"
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/"
        for sub in ("mnesia", "log"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        (base / "plugins").write_text("[].\n")
        (base / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        if os.geteuid() == 0:
            # The server script drops to the rabbitmq user: it must own its folders.
            with contextlib.suppress(KeyError):
                user = pwd.getpwnam("rabbitmq")
                for path in [base, *base.rglob("*")]:
                    os.chown(path, user.pw_uid, user.pw_gid)
        self.env = {
            **os.environ,
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "plugins"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq"),
        }

    def _ctl(self, *args: str, timeout: float = 120) -> None:
        subprocess.run(["rabbitmqctl", "-n", self.name, "-q", *args], env=self.env,
                       check=True, capture_output=True, timeout=timeout)

    def start(self, timeout: float = 120) -> None:
        subprocess.run(["rabbitmq-server", "-detached"], env=self.env, check=True,
                       capture_output=True, timeout=60)
        self.wait_up(timeout)

    def wait_up(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if port_open(self.port):
                with contextlib.suppress(subprocess.SubprocessError):
                    self._ctl("await_startup", timeout=30)
                    return
            time.sleep(0.5)
        logs = "\n".join(p.read_text()[-2000:] for p in (self.base / "log").glob("*.log"))
        raise RuntimeError(f"RabbitMQ node {self.name} did not start:\n{logs}")

    def restart(self) -> None:
        """Stop and start the broker application: connections drop, transient messages in
        queues are lost, durable queues and persistent messages come back."""
        self._ctl("stop_app")
        self._ctl("start_app")
        self.wait_up()

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self._ctl("stop", timeout=60)
        shutil.rmtree(self.base, ignore_errors=True)


class TCPProxy:
    """Forwards 127.0.0.1:port to a target; can cut every connection or add latency."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.delay_s = 0.0
        self.cuts = 0
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self._writers -= {writer, up_writer}

    def cut(self) -> None:
        """Drop every open connection, as a network failure would."""
        self.cuts += 1
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                writer.transport.abort()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


class SmallDisk:
    """A small tmpfs that can fill up or be remounted read-only (needs root)."""

    def __init__(self, path: Path, size: str) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                       check=True, capture_output=True)

    def remount(self, options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(self.path)], check=True,
                       capture_output=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)

    @staticmethod
    def available() -> bool:
        return os.geteuid() == 0 and shutil.which("mount") is not None
