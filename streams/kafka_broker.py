"""Run a real Apache Kafka 4.x broker (single node, KRaft) for local use and tests.

The broker is the `org.apache.kafka:kafka_2.13` jar from Maven Central, run with
the machine's `java` (17+). Its runtime jars are resolved once with `mvn` into a
cache outside the git tree (default ~/.cache/servicewatch/kafka/<version>/libs,
about 45 jars / 43 MB) and reused from then on; only `java` is needed after that.

It offers the same interface as streams.embedded_broker.EmbeddedBroker (Tansu),
with two differences that matter to tests:

* Topic auto-creation is OFF (`auto.create.topics.enable=false`), as on most
  real clusters: code that produces to, or subscribes to, a topic nobody created
  fails here instead of silently getting a 1-partition topic.
* The log is on disk. By default each start uses a fresh temporary directory,
  removed on stop(). Pass `data_dir=` to keep the log across stop()/start()
  (restart and recovery tests): that directory is never removed, is formatted on
  the first start only, and may be reused by another ApacheKafkaBroker later.

    with ApacheKafkaBroker() as broker:          # free port, fresh cluster
        ensure_topics(broker.bootstrap, specs)
        ...
"""

from __future__ import annotations

import base64
import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from streams.broker_process import ANSI_ESCAPE as _ANSI_ESCAPE
# port_is_free and wait_until_accepting: importable from here, as before.
from streams.broker_process import BrokerProcess, free_port, port_is_free, wait_until_accepting  # noqa: F401

KAFKA_ARTIFACT = "org.apache.kafka:kafka_2.13"
DEFAULT_KAFKA_VERSION = "4.4.0"  # latest 4.x on Maven Central when written; 4.1.2 also tested
KAFKA_VERSION_ENV = "SERVICEWATCH_KAFKA_VERSION"
KAFKA_VERSION = os.environ.get(KAFKA_VERSION_ENV, "").strip() or DEFAULT_KAFKA_VERSION
# Kafka 4.x logs through slf4j 1.7; without a binding it prints nothing, errors included.
LOG4J_VERSION = "2.25.5"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
CACHE_ENV = "SERVICEWATCH_KAFKA_CACHE"
DEFAULT_CACHE_DIR = Path("~/.cache/servicewatch/kafka")
INSTALL_HINT = "apt-get install openjdk-17-jre-headless maven"
MIN_JAVA = 17
_MARKER = "resolved.ok"
_VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.\-]*$")
_POLL_INTERVAL = 0.05
_LOG_TAIL_LINES = 30
_OUTPUT_TAIL_LINES = 30

_POM_TEMPLATE = """\
<?xml version="1.0" encoding="UTF-8"?>
<!-- Throwaway pom written by servicewatch: only used to resolve the broker's jars. -->
<project xmlns="http://maven.apache.org/POM/4.0.0"
         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xsi:schemaLocation="http://maven.apache.org/POM/4.0.0 http://maven.apache.org/xsd/maven-4.0.0.xsd">
  <modelVersion>4.0.0</modelVersion>
  <groupId>servicewatch.local</groupId>
  <artifactId>kafka-broker-libs</artifactId>
  <version>{kafka_version}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{kafka_version}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j_version}</version>
    </dependency>
  </dependencies>
</project>
"""

# Root level WARN keeps the broker quiet; the one INFO logger says when it is up.
_LOG4J2_CONFIG = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stdout.ref = STDOUT
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
"""


class KafkaBrokerError(RuntimeError):
    """The Apache Kafka broker could not be resolved, started or reached."""


class KafkaToolsMissing(KafkaBrokerError):
    """`java` (17+) or `mvn` is not installed; the message says how to install them."""


# --- resolving the jars -------------------------------------------------------------

def kafka_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Root of the jar cache: `cache_dir`, else $SERVICEWATCH_KAFKA_CACHE, else
    ~/.cache/servicewatch/kafka. Holds <version>/libs and the Maven repository m2/."""
    chosen = cache_dir if cache_dir is not None else (os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR)
    return Path(chosen).expanduser().absolute()


def _check_version(version: str) -> str:
    version = str(version).strip()
    if not _VERSION_RE.match(version):
        raise KafkaBrokerError(f"invalid Kafka version {version!r}; expected e.g. {DEFAULT_KAFKA_VERSION}")
    return version


def find_java() -> str:
    """The `java` to run: $JAVA_HOME/bin/java if JAVA_HOME is set, else `java` on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise KafkaToolsMissing(f"Apache Kafka needs Java {MIN_JAVA}+, and no `java` was found on PATH "
                                f"(nor in $JAVA_HOME); install it: {INSTALL_HINT}")
    return found


_java_checked: set[str] = set()


def _check_java_version(java: str) -> None:
    if java in _java_checked:
        return
    try:
        result = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KafkaToolsMissing(f"cannot run {java} -version ({exc}); install Java: {INSTALL_HINT}") from exc
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if match:
        major = int(match.group(1))
        if major == 1 and match.group(2):  # "1.8.0_392" style
            major = int(match.group(2))
        if major < MIN_JAVA:
            raise KafkaToolsMissing(f"Apache Kafka 4.x needs Java {MIN_JAVA}+, but {java} is Java {major}; "
                                    f"install a newer one ({INSTALL_HINT}) or set JAVA_HOME to it")
    _java_checked.add(java)


def _find_mvn() -> str:
    found = shutil.which("mvn")
    if found is None:
        raise KafkaToolsMissing("resolving the Apache Kafka jars needs Maven, and no `mvn` was found on "
                                f"PATH; install it: {INSTALL_HINT}")
    return found


def _is_complete(version_dir: Path, libs: Path) -> bool:
    return (version_dir / _MARKER).is_file() and libs.is_dir()


def resolve_kafka_jars(version: str = KAFKA_VERSION, cache_dir: str | os.PathLike | None = None) -> Path:
    """Return the directory holding Kafka `version`'s runtime jars, resolving them first if needed.

    The first call per version runs Maven against Maven Central (~20 s, 43 MB);
    later calls return at once (a marker file is written after a complete
    resolution). A file lock makes concurrent callers, in other processes too,
    wait for one download instead of racing. Needs `java` and `mvn` only when it
    has to download.
    """
    version = _check_version(version)
    root = kafka_cache_dir(cache_dir)
    version_dir = root / version
    libs = version_dir / "libs"
    if _is_complete(version_dir, libs):
        return libs
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = open(root / ".resolve.lock", "a")
    except OSError as exc:
        raise KafkaBrokerError(f"cannot use the Kafka jar cache {root} ({exc}); "
                               f"set {CACHE_ENV} to a writable directory") from exc
    with lock:
        # One lock for the whole cache: every version shares the Maven repository m2/.
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if _is_complete(version_dir, libs):  # another process finished it while we waited
                return libs
            _download(version, root, version_dir, libs)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return libs


def _download(version: str, root: Path, version_dir: Path, libs: Path) -> None:
    find_java()  # Maven needs it too; say so before Maven does, less clearly
    mvn = _find_mvn()
    print(f"Resolving Apache Kafka {version} from Maven Central (first time only, ~20-40 s)...",
          file=sys.stderr, flush=True)
    started = time.monotonic()
    if libs.exists():  # leftovers of an interrupted run
        shutil.rmtree(libs)
    libs.mkdir(parents=True)
    pom = version_dir / "pom.xml"
    pom.write_text(_POM_TEMPLATE.format(kafka_version=version, log4j_version=LOG4J_VERSION))
    # -U: retry artifacts an earlier failed run recorded as missing.
    command = [mvn, "-q", "-B", "-U", "-Dstyle.color=never", f"-Dmaven.repo.local={root / 'm2'}", "-f", str(pom),
               f"{DEPENDENCY_PLUGIN}:copy-dependencies",
               "-DincludeScope=runtime", f"-DoutputDirectory={libs}"]
    try:
        result = subprocess.run(command, cwd=version_dir, stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired as exc:
        raise KafkaBrokerError(f"Maven did not finish resolving Apache Kafka {version} within "
                               f"{exc.timeout:.0f} s (is Maven Central reachable?)") from exc
    except OSError as exc:
        raise KafkaToolsMissing(f"cannot run {mvn} ({exc}); install Maven: {INSTALL_HINT}") from exc
    jars = sorted(libs.glob("*.jar"))
    if result.returncode != 0 or not any(jar.name.startswith("kafka_2.13-") for jar in jars):
        output = _ANSI_ESCAPE.sub("", result.stdout + result.stderr).strip().splitlines()
        output = [line for line in output if line.strip() not in ("", "[ERROR]")][-_OUTPUT_TAIL_LINES:]
        hint = ""
        if any(f"org.apache.kafka:kafka_2.13:jar:{version}" in line for line in output):
            hint = (f"\nKafka {version} does not seem to exist on Maven Central; "
                    f"unset {KAFKA_VERSION_ENV} or set it to e.g. {DEFAULT_KAFKA_VERSION}")
        raise KafkaBrokerError(
            f"Maven failed to resolve Apache Kafka {version} (exit code {result.returncode}):\n"
            f"  {' '.join(command)}\n--- last lines of Maven's output ---\n" + "\n".join(output) + hint)
    (version_dir / _MARKER).write_text("".join(f"{jar.name}\n" for jar in jars))
    size_mb = sum(jar.stat().st_size for jar in jars) / 1e6
    print(f"Resolved Apache Kafka {version}: {len(jars)} jars, {size_mb:.0f} MB in {libs} "
          f"({time.monotonic() - started:.1f} s)", file=sys.stderr, flush=True)


# --- the broker ------------------------------------------------------------------------

def new_cluster_id() -> str:
    """A random KRaft cluster id (a Kafka Uuid: 22 chars of URL-safe base64)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):  # as Kafka's Uuid.randomUuid: not mistaken for an option
            return cluster_id


def _read_properties(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")) and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


class ApacheKafkaBroker(BrokerProcess):
    """An Apache Kafka broker+controller (KRaft, one node) child process on HOST:PORT.

    port=None picks a free port. The controller listener gets its own free port,
    also on `host`. `log_file` receives the JVM's output (WARN and above, plus a
    "Kafka Server started" line); without one a temporary file is used and
    deleted on stop, its tail still shown in errors. `data_dir` (see the module
    doc) holds server.properties and the log directory `kafka-logs/`; it is kept
    on stop so a restart finds its topics and messages. Without it a temporary
    directory is used and removed on stop, so each start is an empty cluster.

    start() first resolves the jars (see resolve_kafka_jars; not counted in its
    `timeout`), formats the storage if it is new, then starts the JVM and waits
    until a metadata request is answered with our cluster id.
    """

    name = "Apache Kafka"
    error_class = KafkaBrokerError
    log_prefix = "servicewatch-kafka-"
    log_tail_lines = _LOG_TAIL_LINES
    metadata_timeout = 2.0
    answer_poll_interval = _POLL_INTERVAL
    exit_stop_timeout = 2.0  # a JVM takes longer to stop

    def __init__(self, port: int | None = None, host: str = "127.0.0.1",
                 log_file: str | os.PathLike | None = None, version: str = KAFKA_VERSION,
                 data_dir: str | os.PathLike | None = None):
        super().__init__(port=port, host=host, log_file=log_file)
        self.controller_port: int | None = None
        self.version = _check_version(version)
        self.data_dir = Path(data_dir).absolute() if data_dir is not None else None
        self.resolve_seconds: float | None = None  # jar resolution (≈0 when cached)
        self.format_seconds: float | None = None   # StorageTool format (None when reused)
        # startup_seconds and ready_seconds (see BrokerProcess) count from the JVM launch.
        self._java: str | None = None
        self._classpath: str | None = None
        self._run_dir: Path | None = None
        self._owns_run_dir = False

    @property
    def run_dir(self) -> Path | None:
        """Directory of server.properties and kafka-logs/ (data_dir, or the temporary one)."""
        return self._run_dir

    def start(self, timeout: float = 60.0) -> "ApacheKafkaBroker":
        return super().start(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the broker's process group, SIGKILL it after `timeout` s. Idempotent.

        Removes the temporary data directory, never a `data_dir` given by the caller.
        """
        super().stop(timeout)
        if self._owns_run_dir and self._run_dir is not None:
            shutil.rmtree(self._run_dir, ignore_errors=True)
            self._run_dir, self._owns_run_dir = None, False

    # -- start-up steps (the BrokerProcess hooks) --

    def _find_tools(self) -> None:
        # Not counted in start()'s timeout: the first resolution downloads the jars.
        java = find_java()
        _check_java_version(java)
        began = time.monotonic()
        libs = resolve_kafka_jars(self.version)
        self.resolve_seconds = time.monotonic() - began
        self._java, self._classpath = java, f"{libs}{os.sep}*"

    def _prepare_launch(self, deadline: float) -> None:
        self._prepare_run_dir()
        self._open_log()
        self._format_if_new(self._java, self._classpath, deadline)

    def _command(self) -> list[str]:
        return [self._java, "-Xms256m", "-Xmx512m", "-XX:+ExitOnOutOfMemoryError",
                "-Djava.awt.headless=true", "-Dlog4j2.shutdownHookEnabled=false",
                f"-Dlog4j2.configurationFile={self._run_dir / 'log4j2.properties'}",
                "-cp", self._classpath, "kafka.Kafka", str(self._run_dir / "server.properties")]

    def _popen_options(self) -> dict:
        return {"cwd": self._run_dir}

    def _launch_error(self, exc: OSError) -> Exception:
        return KafkaToolsMissing(f"cannot run {self._java}: {exc}; install Java: {INSTALL_HINT}")

    def _port_lost_in(self, log_tail: str) -> int | None:
        if "Address already in use" not in log_tail:
            return None
        taken = re.search(rf":{self.controller_port}\b.*Address already in use", log_tail)
        return self.controller_port if taken else self.port

    def _port_in_use_message(self, port: int) -> str:
        if port == self.port:
            return super()._port_in_use_message(port)
        return (f"the Kafka controller port {port} on {self.host} was taken by another process "
                "during startup — try again")

    # -- the run directory and the storage --

    def _prepare_run_dir(self) -> None:
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._run_dir, self._owns_run_dir = self.data_dir, False
        else:
            self._run_dir = Path(tempfile.mkdtemp(prefix="servicewatch-kafka-"))
            self._owns_run_dir = True
        logs_dir = self._run_dir / "kafka-logs"
        meta = logs_dir / "meta.properties"
        if meta.is_file():  # an existing log (restart): keep its cluster id
            self.cluster_id = _read_properties(meta).get("cluster.id") or self.cluster_id
        else:  # formatted below, as a new cluster
            self.cluster_id = new_cluster_id()
        # A fresh free controller port per start: a single-node quorum elects itself
        # whatever its endpoint, so a restart does not need the old one.
        self.controller_port = free_port(self.host)
        while self.controller_port == self.port:
            self.controller_port = free_port(self.host)
        (self._run_dir / "server.properties").write_text(self._server_properties(logs_dir))
        (self._run_dir / "log4j2.properties").write_text(_LOG4J2_CONFIG)

    def _server_properties(self, logs_dir: Path) -> str:
        controller = f"{self.host}:{self.controller_port}"
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": controller,
            "listeners": f"PLAINTEXT://{self.bootstrap},CONTROLLER://{controller}",
            "advertised.listeners": f"PLAINTEXT://{self.bootstrap}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(logs_dir),
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",  # 50 by default: slower first group join
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # As on most real clusters: tests catch code that relies on auto-creation.
            "auto.create.topics.enable": "false",
        }
        header = "# Written by servicewatch (streams/kafka_broker.py) on every start.\n"
        return header + "".join(f"{key}={value}\n" for key, value in properties.items())

    def _format_if_new(self, java: str, classpath: str, deadline: float) -> None:
        if (self._run_dir / "kafka-logs" / "meta.properties").is_file():
            self.format_seconds = None
            return
        started = time.monotonic()
        command = [java, "-Xmx256m", f"-Dlog4j2.configurationFile={self._run_dir / 'log4j2.properties'}",
                   "-cp", classpath, "kafka.tools.StorageTool", "format",
                   "-t", self.cluster_id, "-c", str(self._run_dir / "server.properties"), "--standalone"]
        try:
            result = subprocess.run(command, cwd=self._run_dir, stdin=subprocess.DEVNULL,
                                    capture_output=True, text=True,
                                    timeout=max(deadline - time.monotonic(), 1.0))
        except subprocess.TimeoutExpired as exc:
            raise KafkaBrokerError(f"formatting the Kafka storage in {self._run_dir} took longer than "
                                   f"{exc.timeout:.0f} s") from exc
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip().splitlines()[-_LOG_TAIL_LINES:]
            raise KafkaBrokerError(f"formatting the Kafka storage in {self._run_dir} failed (exit code "
                                   f"{result.returncode}):\n" + "\n".join(output))
        self.format_seconds = time.monotonic() - started
