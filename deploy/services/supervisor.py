"""Starting and stopping the tracking services, on 127.0.0.1 only: PostgreSQL (Debian's
package), `mlflow server` with its backend store on that PostgreSQL, its artifacts served by
the server itself and MLflow's basic auth, and a ZenML server.

Everything lives under one folder (`ServicesConfig.root`): the database cluster, the MLflow
artifacts, the ZenML server's store, a log and a pid file per service, and the generated
credentials (`credentials.json`, readable by its owner only). Starting is idempotent: a service
already running is left alone; a port held by anything else is an error that names it.
Passwords never appear on a command line: PostgreSQL's is read from a password file
(`PGPASSFILE`), the servers' from their environment.

No ZenML here: the ZenML server is a process started by its command line.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from deploy.services.config import (
    ENGINE,
    LOOPBACK,
    MLFLOW_DATABASE,
    PORT_VARIABLES,
    POSTGRES_USER,
    SERVICES,
    USERNAME,
    Credentials,
    ServiceError,
    ServicesConfig,
    ServiceState,
)  # fmt: skip
from deploy.services.processes import (
    STOP_TIMEOUT_S,
    accepts,
    alive,
    answers,
    command_line,
    last_line,
    terminate,
    write_private,
)  # fmt: skip


class Services:
    """The three services under `config.root`."""

    def __init__(self, config: ServicesConfig) -> None:
        self.config = config
        self.root = config.root.resolve()
        self.logs = self.root / "logs"
        self.pg_data = self.root / "postgres" / "data"
        self.mlflow_dir = self.root / "mlflow"
        self.zenml_dir = self.root / "zenml"

    # -- what the clients need -----------------------------------------------------------

    @property
    def credentials(self) -> Credentials:
        return Credentials.load_or_create(self.root / "credentials.json")

    def url(self, service: str) -> str:
        if service == ENGINE:
            return f"unix://{self.engine_socket}"  # what DOCKER_HOST takes
        port = self.config.port(service)
        if service == "postgres":
            return f"postgresql://{MLFLOW_DATABASE}@{LOOPBACK}:{port}/{MLFLOW_DATABASE}"
        return f"http://{LOOPBACK}:{port}"

    @property
    def engine_socket(self) -> Path:
        return self.root / "podman.sock"

    # -- the three commands ----------------------------------------------------------------

    def up(self, engine: bool = False) -> list[ServiceState]:
        self.root.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        return [self.start(name) for name in (*SERVICES, *[ENGINE] * engine)]

    def down(self) -> list[ServiceState]:
        return [self.stop(name) for name in reversed(self._names())][::-1]

    def status(self) -> list[ServiceState]:
        return [self._state(name) for name in self._names()]

    def _names(self) -> tuple[str, ...]:
        """The three services, and the engine where it was started."""
        return (*SERVICES, *[ENGINE] * self._pid_file(ENGINE).exists())

    def start(self, name: str) -> ServiceState:
        ported = name != ENGINE  # the engine listens on a socket file, not a port
        if self._pid(name) is not None:
            port, wanted = (self._running_port(name), self.config.port(name)) if ported else (0, 0)
            if port != wanted:
                raise ServiceError(
                    f"{name}: already running on port {port}, not {wanted} "
                    f"({PORT_VARIABLES[name]}): `services down` first, to move it"
                )
            return self._state(name, "already running")
        if ported:
            self._check_port_free(name)
        {"postgres": self._start_postgres, "mlflow": self._start_mlflow,
         "zenml": self._start_zenml, ENGINE: self._start_engine}[name]()  # fmt: skip
        return self._state(name, "started")

    def stop(self, name: str) -> ServiceState:
        pid = self._pid(name)
        if pid is None:
            return self._state(name, "not running")
        if name == "postgres":
            self._pg_ctl("stop", "-m", "fast", "-w", "-t", str(int(STOP_TIMEOUT_S)))
        else:
            terminate(pid)
            self._pid_file(name).unlink(missing_ok=True)
        return self._state(name, "stopped")

    # -- state -----------------------------------------------------------------------------

    def _state(self, name: str, note: str = "") -> ServiceState:
        pid = self._pid(name)
        return ServiceState(
            name, pid is not None, self.url(name), pid, self.logs / f"{name}.log", note
        )

    def _pid(self, name: str) -> int | None:
        """The service's process id while it runs; None otherwise (a stale pid file is
        ignored: its process is gone, or another program has its id now)."""
        try:
            pid = int(self._pid_file(name).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        marker = "postgres" if name == "postgres" else name
        return pid if alive(pid) and marker in command_line(pid) else None

    def _running_port(self, name: str) -> int | None:
        """The port the running service was started on: PostgreSQL writes it on the 4th line
        of its pid file, `_spawn` on the 2nd of its own."""
        line = 3 if name == "postgres" else 1
        try:
            return int(self._pid_file(name).read_text().splitlines()[line])
        except (OSError, ValueError, IndexError):
            return None

    def _pid_file(self, name: str) -> Path:
        return self.pg_data / "postmaster.pid" if name == "postgres" else self.root / f"{name}.pid"

    def _check_port_free(self, name: str) -> None:
        port = self.config.port(name)
        with socket.socket() as probe:
            # as the servers bind: a port left in TIME_WAIT by a stopped server is free
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((LOOPBACK, port))
            except OSError as err:
                raise ServiceError(
                    f"{name}: port {port} on {LOOPBACK} is taken by another program "
                    f"({err.strerror}); set {PORT_VARIABLES[name]} to a free port, or stop it"
                ) from err

    # -- PostgreSQL ------------------------------------------------------------------------

    def _postgres_bin(self) -> Path:
        if self.config.postgres_bin:
            return self.config.postgres_bin
        installed = sorted(
            Path("/usr/lib/postgresql").glob("*/bin/initdb"),
            key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
        )
        if installed:
            return installed[-1].parent
        if found := shutil.which("initdb"):
            return Path(found).parent
        raise ServiceError(
            "postgres: PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb, no "
            "initdb on PATH): `make services` installs Debian's postgresql package"
        )

    def _as_postgres(self, *command: str | Path) -> list[str]:
        """PostgreSQL's command, run as the `postgres` user when this process is root."""
        if os.geteuid() != 0:
            return [str(c) for c in command]
        try:
            pwd.getpwnam(POSTGRES_USER)
        except KeyError as err:
            raise ServiceError(
                f"postgres: PostgreSQL refuses to run as root and there is no user "
                f"{POSTGRES_USER!r}: install Debian's postgresql package, which creates it"
            ) from err
        return ["runuser", "-u", POSTGRES_USER, "--", *map(str, command)]

    def _give_to_postgres(self, *paths: Path) -> None:
        if os.geteuid() == 0:
            for path in paths:
                shutil.chown(path, POSTGRES_USER, POSTGRES_USER)

    def _pg_ctl(self, *args: str) -> None:
        command = self._as_postgres(self._postgres_bin() / "pg_ctl", "-D", self.pg_data, *args)
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            problem = last_line(done.stderr or done.stdout)
            raise ServiceError(
                f"postgres: pg_ctl {args[0]} failed: {problem} (log: {self.logs / 'postgres.log'})"
            )

    def _start_postgres(self) -> None:
        credentials = self.credentials
        if not (self.pg_data / "PG_VERSION").is_file():
            self._initdb(credentials)
        log = self.logs / "postgres.log"
        log.touch()
        self._give_to_postgres(log)
        # TCP on the loopback address only; no Unix socket (nothing here needs one)
        options = f"-c listen_addresses={LOOPBACK} -p {self.config.postgres_port} -k ''"
        timeout = str(int(self.config.ready_timeout_s))
        self._pg_ctl("start", "-w", "-t", timeout, "-l", str(log), "-o", options)
        self._ensure_mlflow_database(credentials)

    def _initdb(self, credentials: Credentials) -> None:
        self.pg_data.mkdir(parents=True, exist_ok=True)
        self.pg_data.chmod(0o700)
        password_file = self.pg_data.parent / "initdb-password"
        write_private(password_file, credentials.postgres_password)
        self._give_to_postgres(self.pg_data, password_file)
        command = self._as_postgres(
            self._postgres_bin() / "initdb", "-D", self.pg_data, "-U", USERNAME,
            f"--pwfile={password_file}", "--auth-host=scram-sha-256",
            "--auth-local=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8",
            "--no-instructions",
        )  # fmt: skip
        try:
            done = subprocess.run(command, capture_output=True, text=True, check=False)
        finally:
            password_file.unlink(missing_ok=True)
        if done.returncode != 0:
            raise ServiceError(
                f"postgres: initdb {self.pg_data} failed: {last_line(done.stderr)}; "
                f"as root, PostgreSQL runs as {POSTGRES_USER!r}, who must be able to reach "
                "that folder (its parents need o+x)"
            )

    def _ensure_mlflow_database(self, credentials: Credentials) -> None:
        """The MLflow role and database, created once; the role's password is the
        generated one."""
        import psycopg2
        from psycopg2 import sql

        connection = psycopg2.connect(
            host=LOOPBACK, port=self.config.postgres_port, dbname="postgres",
            user=USERNAME, password=credentials.postgres_password, connect_timeout=10,
        )  # fmt: skip
        connection.autocommit = True  # CREATE DATABASE refuses to run in a transaction
        try:
            with connection.cursor() as cursor:
                role, database = sql.Identifier(MLFLOW_DATABASE), MLFLOW_DATABASE
                cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (database,))
                verb = "ALTER" if cursor.fetchone() else "CREATE"
                cursor.execute(
                    sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(
                        role, sql.Literal(credentials.mlflow_db_password)
                    )
                )
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
                if not cursor.fetchone():
                    cursor.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(role, role))
        finally:
            connection.close()

    # -- the MLflow server -----------------------------------------------------------------

    def _start_mlflow(self) -> None:
        if self._pid("postgres") is None:
            raise ServiceError("mlflow: its backend store, postgres, is not running: `up` first")
        credentials = self.credentials
        self.mlflow_dir.mkdir(parents=True, exist_ok=True)
        password_file = self.mlflow_dir / "pgpass"
        write_private(
            password_file,
            f"{LOOPBACK}:{self.config.postgres_port}:{MLFLOW_DATABASE}:{MLFLOW_DATABASE}:"
            f"{credentials.mlflow_db_password}\n",
        )
        auth_config = self.mlflow_dir / "basic_auth.ini"
        write_private(
            auth_config,
            "[mlflow]\ndefault_permission = READ\n"
            f"database_uri = sqlite:///{self.mlflow_dir / 'auth.db'}\n"
            f"admin_username = {USERNAME}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            # without it, every request hashes the password anew (PBKDF2): 0.3 s of CPU each,
            # most of a tiny run's time
            "auth_cache_ttl_seconds = 600\n",
        )
        loopback_hosts = f"{LOOPBACK},{LOOPBACK}:*,localhost,localhost:*"
        env = {
            "PGPASSFILE": str(password_file),
            "MLFLOW_AUTH_CONFIG_PATH": str(auth_config),
            "MLFLOW_AUTH_ADMIN_PASSWORD": credentials.mlflow_password,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": credentials.mlflow_flask_key,
            # the server's audience is this machine; MLflow's job runner (LLM judges) is
            # nothing sftcast uses
            "MLFLOW_SERVER_ALLOWED_HOSTS": loopback_hosts,
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
        command = [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", self.url("postgres"),
            "--serve-artifacts", "--artifacts-destination", str(self.mlflow_dir / "artifacts"),
            "--host", LOOPBACK, "--port", str(self.config.mlflow_port),
            # one worker: the auth app creates its admin at start, and two would race
            "--workers", "1", "--app-name", "basic-auth",
        ]  # fmt: skip
        self._spawn("mlflow", command, env)

    # -- the ZenML server ------------------------------------------------------------------

    def _start_zenml(self) -> None:
        credentials = self.credentials
        self.zenml_dir.mkdir(parents=True, exist_ok=True)
        env = {
            "ZENML_SERVER": "true",
            "ZENML_CONFIG_PATH": str(self.zenml_dir / "config"),
            "ZENML_LOCAL_STORES_PATH": str(self.zenml_dir / "stores"),
            "ZENML_STORE_URL": f"sqlite:///{self.zenml_dir / 'zenml.db'}",
            "ZENML_SECRETS_STORE_TYPE": "sql",
            "ZENML_SECRETS_STORE_ENCRYPTION_KEY": credentials.zenml_secrets_key,
            "ZENML_SERVER_AUTH_SCHEME": "OAUTH2_PASSWORD_BEARER",
            "ZENML_DEFAULT_USER_NAME": USERNAME,
            "ZENML_DEFAULT_USER_PASSWORD": credentials.zenml_password,
            "ZENML_SERVER_JWT_SECRET_KEY": credentials.zenml_jwt_key,
            "ZENML_SERVER_AUTO_ACTIVATE": "True",
            "ZENML_SERVER_DEPLOYMENT_TYPE": "local",
            # the local artifact store's files are on this machine: the dashboard may read them
            "ZENML_SERVER_ALLOW_LOCAL_FILE_ACCESS": "true",
            "ZENML_ANALYTICS_OPT_IN": "false",
            "ZENML_LOGGING_COLORS_DISABLED": "true",
        }
        command = [
            sys.executable, "-m", "uvicorn", "zenml.zen_server.zen_server_api:app",
            "--host", LOOPBACK, "--port", str(self.config.zenml_port), "--log-level", "warning",
        ]  # fmt: skip
        self._spawn("zenml", command, env)

    # -- podman's Docker API ----------------------------------------------------------------

    def _start_engine(self) -> None:
        if not shutil.which("podman"):
            raise ServiceError(
                f"{ENGINE}: podman is not installed: apt-get install podman buildah runc"
            )
        env = {"BUILDAH_ISOLATION": "chroot"}  # builds: the isolation that works without
        if self.config.containers_conf:  # cgroup delegation
            env["CONTAINERS_CONF"] = str(self.config.containers_conf)
        self.engine_socket.unlink(missing_ok=True)
        command = ["podman", "system", "service", "--time=0", self.url(ENGINE)]
        self._spawn(ENGINE, command, env)

    # -- processes -------------------------------------------------------------------------

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> None:
        """Start a server in its own session (so `down` stops its workers with it), then
        wait until its /health answers."""
        # the client's own ZenML and MLflow settings are not the server's
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("ZENML_", "MLFLOW_"))}
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                command, env={**inherited, **env}, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, cwd=self.root, start_new_session=True,
            )  # fmt: skip
        port = "" if name == ENGINE else self.config.port(name)
        self._pid_file(name).write_text(f"{process.pid}\n{port}\n")
        deadline = time.monotonic() + self.config.ready_timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self._pid_file(name).unlink(missing_ok=True)
                raise ServiceError(
                    f"{name}: the server exited ({process.returncode}) before it answered: "
                    f"{last_line(log.read_text(errors='replace'))} (log: {log})"
                )
            if answers(f"{self.url(name)}/health") or (
                name == ENGINE and accepts(self.engine_socket)
            ):
                return
            time.sleep(1.0)
        terminate(process.pid)
        self._pid_file(name).unlink(missing_ok=True)
        raise ServiceError(
            f"{name}: no answer at {self.url(name)}/health within "
            f"{self.config.ready_timeout_s:g} s (log: {log})"
        )
