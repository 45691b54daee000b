"""What every local broker launcher shares: a child process on HOST:PORT and its log.

BrokerProcess starts the broker in its own process group with its output in a log
file, waits until it accepts connections and answers a metadata request with our
cluster id, and stops it with SIGTERM, then SIGKILL. An atexit hook stops any
broker still running when the interpreter exits.

A launcher (streams.embedded_broker.EmbeddedBroker for Tansu,
streams.kafka_broker.ApacheKafkaBroker for Apache Kafka) subclasses it and fills in:

* `name` and `error_class`: how errors name the broker, and what they raise;
* `_find_tools()`: locate what the launch needs (before the start-up clock runs);
* `_prepare_launch(deadline)`: files and directories (by default: open the log);
* `_command()` and `_popen_options()`: the child's command line, and its cwd/env;
* `_launch_error(exc)`: the error for a command that cannot run at all;
* `_port_lost_in(log_tail)`: which port a broker that died lost a race for, if any.
"""

from __future__ import annotations

import atexit
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

from streams.topics import BrokerUnreachable, wait_for_broker

_POLL_INTERVAL = 0.005
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


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


_live_brokers: set["BrokerProcess"] = set()


@atexit.register
def _kill_live_brokers() -> None:
    # Last resort so an interpreter exit never leaves an orphan broker holding the
    # port. It does not run if this process is SIGKILLed, or SIGTERMed without a
    # handler that turns SIGTERM into a normal exit.
    for broker in list(_live_brokers):
        broker.stop(timeout=broker.exit_stop_timeout)


class BrokerProcess:
    """A broker child process on HOST:PORT, stopped on exit from `with`.

    port=None picks a free port. `log_file` receives the broker's output; without
    one a temporary file is used (so a failed start can still show why) and
    deleted on stop.
    """

    name = "the broker"                  # in errors: "<name> exited during startup ..."
    error_class: type[Exception] = RuntimeError
    log_prefix = "servicewatch-broker-"  # of the temporary log file
    log_tail_lines = 20                  # log lines shown in errors
    metadata_timeout = 1.0               # per metadata request while waiting for an answer
    answer_poll_interval = _POLL_INTERVAL
    exit_stop_timeout = 1.0              # stop() timeout of the atexit hook
    tail_whole_log = False               # False: errors show only this start's log lines

    def __init__(self, port: int | None = None, host: str = "127.0.0.1",
                 log_file: str | os.PathLike | None = None):
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.log_file = Path(log_file) if log_file is not None else None
        self.cluster_id: str | None = None
        self.startup_seconds: float | None = None  # launch -> accepting TCP connections
        self.ready_seconds: float | None = None    # launch -> metadata request answered
        self._process: subprocess.Popen | None = None
        self._log_path: Path | None = None
        self._log_handle = None
        self._log_offset = 0
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

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self, timeout: float = 15.0) -> Self:
        if self.running:
            return self
        if not port_is_free(self.host, self.port):
            raise self.error_class(self._port_in_use_message(self.port))
        self._find_tools()
        deadline = time.monotonic() + timeout
        try:
            self._prepare_launch(deadline)
            launched = time.monotonic()
            try:
                self._process = subprocess.Popen(
                    self._command(), stdin=subprocess.DEVNULL,
                    stdout=self._log_handle, stderr=subprocess.STDOUT,
                    start_new_session=True,  # own process group: terminal Ctrl-C goes to us, we stop it
                    **self._popen_options())
            except OSError as exc:
                raise self._launch_error(exc) from exc
            _live_brokers.add(self)
            self._wait_until_accepting(deadline)
            self.startup_seconds = time.monotonic() - launched
            self._wait_until_answering(deadline)
            self.ready_seconds = time.monotonic() - launched
        except BaseException:
            self.stop()
            raise
        return self

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

    # -- hooks for the launchers --

    def _find_tools(self) -> None:
        """Locate what the launch needs; runs before the start-up clock and cleanup."""

    def _prepare_launch(self, deadline: float) -> None:
        """Everything up to the launch; stop() undoes it if start() fails."""
        self._open_log()

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _popen_options(self) -> dict:
        """Extra subprocess.Popen arguments (cwd, env)."""
        return {}

    def _launch_error(self, exc: OSError) -> Exception:
        return self.error_class(f"cannot start {self.name}: {exc}")

    def _port_lost_in(self, log_tail: str) -> int | None:
        """The port the exited broker could not bind, as its log tail tells, if any."""
        return None

    def _port_in_use_message(self, port: int) -> str:
        return (f"port {port} on {self.host} is already in use — stop whatever is using it "
                "or pass --broker-port with another port")

    # -- waiting for the broker --

    def _wait_until_accepting(self, deadline: float) -> None:
        # Not wait_until_accepting(): this loop also notices the broker dying early.
        while not _accepts(self.host, self.port):
            self._raise_if_exited()
            if time.monotonic() >= deadline:
                raise self.error_class(f"{self.name} did not accept connections on {self.bootstrap} "
                                       f"in time{self._log_tail()}")
            time.sleep(_POLL_INTERVAL)

    def _wait_until_answering(self, deadline: float) -> None:
        # The cluster id check proves the answer comes from our broker, not from
        # something that grabbed the port between our free-port check and its bind.
        while True:
            self._raise_if_exited()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self.error_class(f"{self.name} on {self.bootstrap} did not answer a metadata "
                                       f"request in time{self._log_tail()}")
            try:
                if wait_for_broker(self.bootstrap,
                                   timeout=min(remaining, self.metadata_timeout)) == self.cluster_id:
                    return
            except BrokerUnreachable:
                pass
            time.sleep(self.answer_poll_interval)

    def _raise_if_exited(self) -> None:
        if self._process.poll() is None:
            return
        tail = self._log_tail()
        port = self._port_lost_in(tail)
        if port is not None:  # lost a race for a port
            raise self.error_class(self._port_in_use_message(port) + tail)
        raise self.error_class(f"{self.name} exited during startup (exit code "
                               f"{self._process.returncode}){tail}")

    @staticmethod
    def _signal_group(process: subprocess.Popen, sig: int) -> None:
        try:
            os.killpg(process.pid, sig)  # pgid == pid thanks to start_new_session
        except ProcessLookupError:
            pass

    # -- the log file --

    def _open_log(self) -> None:
        # Without a log file we still keep output in a temp file, so a failed
        # start can show why; it is deleted on stop.
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            self._log_path, self._owns_log = self.log_file, False
        else:
            fd, name = tempfile.mkstemp(prefix=self.log_prefix, suffix=".log")
            os.close(fd)
            self._log_path, self._owns_log = Path(name), True
        self._log_handle = open(self._log_path, "ab")
        self._log_offset = 0 if self.tail_whole_log else self._log_handle.tell()

    def _close_log(self) -> None:
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None
        if self._owns_log and self._log_path is not None:
            self._log_path.unlink(missing_ok=True)
            self._log_path = None

    def _log_tail(self) -> str:
        if self._log_path is None:
            return ""
        try:
            with open(self._log_path, "rb") as handle:
                handle.seek(self._log_offset)
                text = handle.read().decode(errors="replace")
        except OSError:
            return ""
        lines = ANSI_ESCAPE.sub("", text).strip().splitlines()[-self.log_tail_lines:]
        return ("\n--- last lines of the broker log ---\n" + "\n".join(lines)) if lines else ""
