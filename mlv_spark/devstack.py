"""Start, health-check and stop the local lakeFS and MLflow servers (local profile and tests).

lakeFS runs from the binary built by `make bootstrap` with a local metadata store and local
block storage under the run directory, or (`blockstore = "s3"`, conf/local-s3.toml) an S3 block
store on a SeaweedFS server started beside it (`make seaweedfs`); its admin credentials and the
S3 keys come from the settings and are handed over through the environment, never argv or files.
MLflow runs `mlflow server` with a sqlite backend and a local artifact root. All listen on
loopback only.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from mlv_spark.config import Settings, load_settings
from mlv_spark.errors import ServiceUnavailableError
from mlv_spark.log import get_logger

log = get_logger(__name__)


def pinned_version(root: Path, key: str) -> str:
    """A server release pinned in [tool.mlv-spark] of pyproject.toml (lakefs-version, seaweedfs-version)."""
    return tomllib.loads((root / "pyproject.toml").read_text())["tool"]["mlv-spark"][key]


def _built_binary(settings: Settings, name: str, override_var: str, make_target: str) -> Path:
    """.cache/bin/<name>-<pinned version>, or the path in `override_var`; the fix when missing."""
    override = os.environ.get(override_var)
    binary = Path(override) if override else \
        settings.root / ".cache" / "bin" / f"{name}-{pinned_version(settings.root, f'{name}-version')}"
    if not binary.is_file():
        raise ServiceUnavailableError(f"{name} binary not found at {binary}: run `make {make_target}` to build it")
    return binary


def lakefs_binary(settings: Settings) -> Path:
    return _built_binary(settings, "lakefs", "MLV_LAKEFS_BINARY", "bootstrap")


def seaweedfs_binary(settings: Settings) -> Path:
    """The S3 server of the `blockstore = "s3"` profile (conf/local-s3.toml): SeaweedFS's `weed`."""
    return _built_binary(settings, "seaweedfs", "MLV_SEAWEEDFS_BINARY", "seaweedfs")


def free_port() -> int:
    """An unused loopback port (for test sessions that must not collide)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_until(check, what: str, timeout: float, log_file: Path | None, proc: subprocess.Popen | None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.3)
    tail = ""
    if log_file is not None and log_file.exists():
        tail = "\n" + "\n".join(log_file.read_text(errors="replace").splitlines()[-20:])
    raise ServiceUnavailableError(f"{what} did not become healthy within {timeout:.0f}s{tail}")


@dataclass(frozen=True)
class Endpoints:
    lakefs: str
    mlflow: str


class LocalServices:
    """The embedded lakeFS + MLflow pair described by a settings object's [services] section."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.run_dir = settings.services.run_dir
        self.lakefs_url = f"http://127.0.0.1:{settings.services.lakefs_port}"
        self.mlflow_url = f"http://127.0.0.1:{settings.services.mlflow_port}"

    @property
    def endpoints(self) -> Endpoints:
        return Endpoints(lakefs=self.lakefs_url, mlflow=self.mlflow_url)

    def lakefs_healthy(self) -> bool:
        return http_ok(f"{self.lakefs_url}/_health")

    def mlflow_healthy(self) -> bool:
        return http_ok(f"{self.mlflow_url}/health")

    @property
    def s3_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.services.s3_port}"

    def s3_healthy(self) -> bool:
        return http_ok(f"{self.s3_url}/healthz")

    def blockstore_healthy(self) -> bool:
        """lakeFS's storage is reachable: always for the local block store, else the S3 server."""
        return self.settings.services.blockstore == "local" or self.s3_healthy()

    def up(self) -> Endpoints:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.settings.services.blockstore == "s3":
            self._start_s3()
        self._start_lakefs()
        self._start_mlflow()
        return self.endpoints

    def down(self) -> None:
        for name in ("mlflow", "lakefs", "s3"):
            self.stop(name)

    def stop(self, name: str) -> None:
        """Stop the service `name` ("lakefs", "mlflow" or "s3") this run directory started, if running."""
        pid_file = self.run_dir / f"{name}.pid"
        if not pid_file.exists():
            return
        pid = int(pid_file.read_text().strip())
        try:
            os.killpg(pid, signal.SIGTERM)
            for _ in range(50):
                os.killpg(pid, 0)
                time.sleep(0.1)
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        pid_file.unlink(missing_ok=True)
        log.info("services: stopped %s (pid %d)", name, pid)

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        log_file = self.run_dir / f"{name}.log"
        handle = open(log_file, "ab")  # noqa: SIM115 - the child owns it
        proc = subprocess.Popen(
            argv, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, cwd=self.run_dir, start_new_session=True,
        )
        (self.run_dir / f"{name}.pid").write_text(str(proc.pid))
        return proc

    def _start_lakefs(self) -> None:
        if self.lakefs_healthy():
            log.info("services: lakeFS already up at %s", self.lakefs_url)
            return
        binary = lakefs_binary(self.settings)
        home = self.run_dir / "lakefs"
        home.mkdir(parents=True, exist_ok=True)
        secret_file = home / "encrypt.key"
        if not secret_file.exists():
            secret_file.write_text(secrets.token_hex(32))
            secret_file.chmod(0o600)
        config = home / "config.yaml"
        config.write_text(
            "\n".join([
                f'listen_address: "127.0.0.1:{self.settings.services.lakefs_port}"',
                "logging:",
                "  format: text",
                "  level: WARN",
                "database:",
                "  type: local",
                "  local:",
                f'    path: "{home / "metadata"}"',
                *self._blockstore_config(home),
                "stats:",
                "  enabled: false",
                "usage_report:",
                "  enabled: false",
                # No sign-up page before the web UI's login, and no calls home (this machine may
                # have no Internet: the audit check would only log its failure).
                "email_subscription:",
                "  enabled: false",
                "security:",
                "  check_latest_version: false",
                '  audit_check_url: "http://127.0.0.1:9/audit"',
                "",
            ])
        )
        key_id, secret = self.settings.lakefs.require_credentials()
        env = dict(os.environ)
        env.update({
            "LAKEFS_AUTH_ENCRYPT_SECRET_KEY": secret_file.read_text().strip(),
            "LAKEFS_INSTALLATION_USER_NAME": "admin",
            "LAKEFS_INSTALLATION_ACCESS_KEY_ID": key_id,
            "LAKEFS_INSTALLATION_SECRET_ACCESS_KEY": secret,
            **self._blockstore_env(),
        })
        started = time.monotonic()
        proc = self._spawn("lakefs", [str(binary), "run", "--config", str(config)], env)
        wait_until(self.lakefs_healthy, f"lakeFS at {self.lakefs_url}", 60, self.run_dir / "lakefs.log", proc)
        log.info("services: lakeFS up at %s in %.1fs (data in %s)", self.lakefs_url, time.monotonic() - started, home)

    def _blockstore_config(self, home: Path) -> list[str]:
        """lakeFS's block store: its local store under the run directory, or the profile's S3
        server (keys in the environment, see _start_lakefs; never in this file)."""
        if self.settings.services.blockstore == "local":
            return ["blockstore:", "  type: local", "  local:", f'    path: "{home / "data"}"']
        return ["blockstore:", "  type: s3", "  s3:", f'    endpoint: "{self.s3_url}"', "    force_path_style: true",
                "    discover_bucket_region: false", '    region: "us-east-1"']

    def _blockstore_env(self) -> dict[str, str]:
        services = self.settings.services
        if services.blockstore == "local":
            return {}
        return {"LAKEFS_BLOCKSTORE_S3_CREDENTIALS_ACCESS_KEY_ID": services.s3_access_key_id,
                "LAKEFS_BLOCKSTORE_S3_CREDENTIALS_SECRET_ACCESS_KEY": services.s3_secret_access_key}

    def _start_s3(self) -> None:
        """SeaweedFS in one process (`weed mini`: master, volume, filer and S3 gateway) on
        loopback, with the profile's bucket and keys."""
        if self.s3_healthy():
            log.info("services: S3 (SeaweedFS) already up at %s", self.s3_url)
            return
        services = self.settings.services
        if not (services.s3_access_key_id and services.s3_secret_access_key):
            raise ServiceUnavailableError("services.blockstore is s3 but services.s3_access_key_id and "
                                          "s3_secret_access_key are not set (the profile or MLV_SERVICES_S3_*)")
        binary = seaweedfs_binary(self.settings)
        home = self.run_dir / "s3"
        home.mkdir(parents=True, exist_ok=True)
        # Only the S3 port is the profile's; every other listener gets a free loopback port of
        # its own (their defaults, e.g. gRPC at port+10000, would collide between two stacks).
        internal = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
                    "filer.port.grpc", "s3.port.grpc", "admin.port", "admin.port.grpc", "debug.port")
        argv = [str(binary), "mini", f"-dir={home}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-s3.port={services.s3_port}", *(f"-{flag}={free_port()}" for flag in internal),
                "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false", "-admin.ui=false",
                "-admin.port.legacy=0", "-master.telemetry=false", f"-bucket={services.s3_bucket}"]
        env = dict(os.environ, AWS_ACCESS_KEY_ID=services.s3_access_key_id,
                   AWS_SECRET_ACCESS_KEY=services.s3_secret_access_key, S3_BUCKET=services.s3_bucket)
        started = time.monotonic()
        proc = self._spawn("s3", argv, env)
        wait_until(self.s3_healthy, f"SeaweedFS S3 at {self.s3_url}", 90, self.run_dir / "s3.log", proc)
        log.info("services: S3 (SeaweedFS) up at %s in %.1fs (bucket %s, data in %s)", self.s3_url,
                 time.monotonic() - started, services.s3_bucket, home)

    def _start_mlflow(self) -> None:
        if self.mlflow_healthy():
            log.info("services: MLflow already up at %s", self.mlflow_url)
            return
        home = self.run_dir / "mlflow-server"
        (home / "artifacts").mkdir(parents=True, exist_ok=True)
        mlflow_cli = Path(sys.executable).with_name("mlflow")
        argv = [
            str(mlflow_cli), "server",
            "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}",
            "--artifacts-destination", str(home / "artifacts"),
            "--host", "127.0.0.1", "--port", str(self.settings.services.mlflow_port),
            "--workers", "1",
        ]
        started = time.monotonic()
        proc = self._spawn("mlflow", argv, dict(os.environ))
        wait_until(self.mlflow_healthy, f"MLflow at {self.mlflow_url}", 120, self.run_dir / "mlflow.log", proc)
        log.info("services: MLflow up at %s in %.1fs (store in %s)", self.mlflow_url, time.monotonic() - started, home)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlv_spark.devstack", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--profile", default=None, help="settings profile (default: MLV_PROFILE or local)")
    args = parser.parse_args(argv)
    services = LocalServices(load_settings(args.profile))
    if args.action == "up":
        endpoints = services.up()
        stored = ("metadata under {}, objects in the S3 server below" if services.settings.services.blockstore == "s3"
                  else "data under {}").format(services.run_dir / "lakefs")
        print(f"lakeFS  {endpoints.lakefs}   (web UI and S3 gateway; {stored}; log in with the [lakefs] keys of the profile)")
        print(f"MLflow  {endpoints.mlflow}   (tracking server and UI; store under {services.run_dir / 'mlflow-server'})")
        if services.settings.services.blockstore == "s3":
            print(f"S3      {services.s3_url}   (SeaweedFS, lakeFS's block store: bucket "
                  f"{services.settings.services.s3_bucket}; data under {services.run_dir / 's3'})")
    elif args.action == "down":
        services.down()
    else:
        if services.settings.services.blockstore == "s3":
            print(f"S3      {services.s3_url}  {'up' if services.s3_healthy() else 'down'}")
        print(f"lakeFS  {services.lakefs_url}  {'up' if services.lakefs_healthy() else 'down'}")
        print(f"MLflow  {services.mlflow_url}  {'up' if services.mlflow_healthy() else 'down'}")
    return 0


if __name__ == "__main__":
    from mlv_spark.cli import run

    run(main)
