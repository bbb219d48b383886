"""floe against a live Iceberg REST catalog and S3 (SeaweedFS `weed mini` on 127.0.0.1).

Every mode runs the way a user runs it (`floe load --catalog lake ...` configured by
PYICEBERG_CATALOG__LAKE__* or .pyiceberg.yaml); pyiceberg and DuckDB read the tables back through
the same catalog and S3. A small proxy in front of the catalog injects the faults a real network
has: a commit that lands but whose answer is lost, a commit that never lands, a refused token.
"""

import http.server
import json
import os
import re
import subprocess
import threading
import urllib.error
import urllib.request
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import FLOE_BIN, sort_rows
from seaweed import SeaweedServer


@pytest.fixture(scope="module")
def seaweed():
    with SeaweedServer() as server:
        yield server


def env_for(props, name="lake"):
    """pyiceberg's environment-variable form of a catalog's properties."""
    env = {}
    for key, value in props.items():
        env[f"PYICEBERG_CATALOG__{name.upper()}__" + key.upper().replace(".", "__").replace("-", "_")] = value
    return env


class Lake:
    """One namespace of its own on the shared server, and helpers to load and read."""

    def __init__(self, server, root, props=None):
        self.server = server
        self.root = root
        self.ns = "t" + uuid.uuid4().hex[:10]
        self.props = props or server.catalog_props()

    def floe(self, *args, ok=True, props=None, extra_env=None):
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYICEBERG_")}
        env["PYICEBERG_HOME"] = str(self.root)  # no stray .pyiceberg.yaml from $HOME
        env.update(env_for(self.props if props is None else props))
        env.update(extra_env or {})
        progress = ["--no-progress"] if args[0] == "load" else []
        cmd = [FLOE_BIN, *map(str, args), "--catalog", "lake", "--json", *progress]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=self.root, env=env, timeout=300)
        if not ok:
            return proc
        assert proc.returncode == 0, f"floe failed ({proc.returncode}): {proc.stderr}"
        return json.loads(proc.stdout)

    def name(self, table):
        return f"{self.ns}.{table}"

    def table(self, table):
        return self.server.pyiceberg_catalog().load_table(self.name(table))

    def rows(self, table, key="id"):
        return sort_rows(self.table(table).scan().to_arrow().to_pylist(), key)

    def duckdb_rows(self, table, key="id"):
        loc = self.table(table).metadata_location
        assert loc.startswith("s3://"), loc
        con = self.server.duckdb_connection(extension_dir=str(self.root / "duckdb_ext"))
        got = con.execute(f"SELECT * FROM iceberg_scan('{loc}')").arrow()
        if hasattr(got, "read_all"):
            got = got.read_all()
        return sort_rows(got.to_pylist(), key)


@pytest.fixture
def lake(seaweed, tmp_path):
    return Lake(seaweed, tmp_path)


def write(path, rows, schema):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


SCHEMA = pa.schema([("id", pa.int64()), ("tenant", pa.string()), ("v", pa.string())])


def rows_for(ids, tag, tenants=("a", "b", "c")):
    return [{"id": i, "tenant": tenants[i % len(tenants)], "v": f"{tag}{i}"} for i in ids]


def test_append_replace_and_readers(lake):
    first = rows_for(range(0, 500), "x")
    second = rows_for(range(500, 800), "y")
    write(lake.root / "a" / "0.parquet", first[:250], SCHEMA)
    write(lake.root / "a" / "1.parquet", first[250:], SCHEMA)
    out = lake.floe("load", lake.name("t"), lake.root / "a")
    assert out["table_created"] and out["rows_written"] == 500
    assert out["metadata_location"].startswith("s3://")
    write(lake.root / "b.parquet", second, SCHEMA)
    lake.floe("load", lake.name("t"), lake.root / "b.parquet")
    assert lake.rows("t") == sort_rows(first + second, "id")
    assert lake.duckdb_rows("t") == sort_rows(first + second, "id")

    out = lake.floe("load", lake.name("t"), lake.root / "b.parquet", "--mode", "replace")
    assert out["operation"] == "overwrite" and out["files_removed"] >= 2
    table = lake.table("t")
    assert len(table.snapshots()) == 3, "one snapshot per load"
    assert lake.rows("t") == sort_rows(second, "id")
    assert lake.duckdb_rows("t") == sort_rows(second, "id")
    # Data and metadata live in the catalog's bucket, under the table location it chose.
    files = table.inspect.files().to_pylist()
    assert files and all(f["file_path"].startswith(table.location() + "/data/") for f in files)


def test_rerun_with_same_load_id_is_a_noop(lake):
    write(lake.root / "a.parquet", rows_for(range(100), "x"), SCHEMA)
    lake.floe("load", lake.name("t"), lake.root / "a.parquet", "--load-id", "job-1")
    out = lake.floe("load", lake.name("t"), lake.root / "a.parquet", "--load-id", "job-1")
    assert out["skipped"]
    assert len(lake.rows("t")) == 100


def test_nested_namespace_is_created(lake):
    write(lake.root / "a.parquet", rows_for(range(7), "x"), SCHEMA)
    lake.floe("load", lake.name("inner.t"), lake.root / "a.parquet")
    catalog = lake.server.pyiceberg_catalog()
    assert (lake.ns, "inner") in catalog.list_namespaces(lake.ns)
    assert len(lake.rows("inner.t")) == 7


def test_partitioned_table_and_replace_partitions(lake):
    rows = rows_for(range(300), "x")
    write(lake.root / "a.parquet", rows, SCHEMA)
    lake.floe("load", lake.name("p"), lake.root / "a.parquet", "--partition-by", "identity(tenant), bucket(4, id)")
    table = lake.table("p")
    assert [f.name for f in table.spec().fields] == ["tenant", "id_bucket"]
    files = table.inspect.files().to_pylist()
    assert len(files) == 12, "one file per (tenant, bucket) value"

    # Replace only tenant 'a': the other partitions keep their rows.
    fresh = [{"id": i, "tenant": "a", "v": f"new{i}"} for i in range(1000, 1010)]
    write(lake.root / "fix.parquet", fresh, SCHEMA)
    out = lake.floe("load", lake.name("p"), lake.root / "fix.parquet", "--mode", "replace", "--replace-partitions")
    assert out["operation"] == "overwrite"
    expected = [r for r in rows if r["tenant"] != "a"] + fresh
    assert lake.rows("p") == sort_rows(expected, "id")
    assert lake.duckdb_rows("p") == sort_rows(expected, "id")
    # A partition filter prunes files in pyiceberg's planning.
    planned = list(lake.table("p").scan(row_filter="tenant == 'b'").plan_files())
    assert 0 < len(planned) <= 4


@pytest.mark.parametrize("mode", ["copy-on-write", "merge-on-read"])
def test_merge_upsert_and_hard_deletes(lake, mode):
    schema = pa.schema([("id", pa.int64()), ("v", pa.string()), ("deleted", pa.bool_())])
    base = [{"id": i, "v": f"old{i}", "deleted": None} for i in range(200)]
    write(lake.root / "base.parquet", base, schema)
    lake.floe("load", lake.name("m"), lake.root / "base.parquet")
    load = [{"id": i, "v": f"new{i}", "deleted": None} for i in range(150, 250)]
    load += [{"id": i, "v": "gone", "deleted": True} for i in range(0, 20)]
    write(lake.root / "load.parquet", load, schema)
    out = lake.floe(
        "load", lake.name("m"), lake.root / "load.parquet", "--mode", "merge", "--key", "id",
        "--merge-mode", mode, "--hard-delete-column", "deleted",
    )
    assert out["rows_updated"] == 50 and out["rows_inserted"] == 50 and out["rows_deleted"] == 20
    expected = {r["id"]: r["v"] for r in base}
    for r in load:
        if r["deleted"]:
            expected.pop(r["id"], None)
        else:
            expected[r["id"]] = r["v"]
    got = {r["id"]: r["v"] for r in lake.rows("m")}
    assert got == expected
    assert {r["id"]: r["v"] for r in lake.duckdb_rows("m")} == expected
    assert len(lake.table("m").snapshots()) == 2


def test_schema_evolution_adds_a_column(lake):
    write(lake.root / "a.parquet", rows_for(range(10), "x"), SCHEMA)
    lake.floe("load", lake.name("e"), lake.root / "a.parquet")
    wider = pa.schema([*SCHEMA, ("score", pa.float64())])
    more = [{**r, "score": r["id"] / 2} for r in rows_for(range(10, 20), "y")]
    write(lake.root / "b.parquet", more, wider)
    out = lake.floe("load", lake.name("e"), lake.root / "b.parquet")
    assert out["schema_changes"], out
    rows = lake.rows("e")
    assert [r["score"] for r in rows] == [None] * 10 + [i / 2 for i in range(10, 20)]
    assert [r["score"] for r in lake.duckdb_rows("e")] == [None] * 10 + [i / 2 for i in range(10, 20)]


def test_pyiceberg_yaml_configuration(lake):
    """The README's configuration: a .pyiceberg.yaml, nothing in the environment."""
    lines = ["catalog:", "  lake:", "    type: rest"]
    lines += [f"    {k}: '{v}'" for k, v in lake.props.items()]
    (lake.root / ".pyiceberg.yaml").write_text("\n".join(lines) + "\n")
    write(lake.root / "a.parquet", rows_for(range(5), "x"), SCHEMA)
    proc = lake.floe("load", lake.name("y"), lake.root / "a.parquet", ok=False, props={})
    assert proc.returncode == 0, proc.stderr
    assert len(lake.rows("y")) == 5


def test_four_concurrent_loaders_all_land(lake):
    for n in range(4):
        write(lake.root / f"in{n}.parquet", rows_for(range(n * 1000, n * 1000 + 1000), f"w{n}"), SCHEMA)
    write(lake.root / "seed.parquet", rows_for(range(100000, 100010), "s"), SCHEMA)
    lake.floe("load", lake.name("c"), lake.root / "seed.parquet")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYICEBERG_")}
    env["PYICEBERG_HOME"] = str(lake.root)
    env.update(env_for(lake.props))
    procs = [
        subprocess.Popen(
            [FLOE_BIN, "load", lake.name("c"), str(lake.root / f"in{n}.parquet"), "--catalog", "lake", "--json", "--no-progress"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=lake.root,
        )
        for n in range(4)
    ]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    for out, err, code in results:
        assert code == 0, err
    attempts = [json.loads(out)["commit_attempts"] for out, _, _ in results]
    ids = [r["id"] for r in lake.rows("c")]
    assert len(ids) == 4010 and len(set(ids)) == 4010, "every row exactly once"
    assert len(lake.table("c").snapshots()) == 5
    print("commit attempts per loader:", attempts)


def test_wrong_catalog_credentials_fail_clearly(lake):
    write(lake.root / "a.parquet", rows_for(range(5), "x"), SCHEMA)
    props = {**lake.props, "credential": "admin:not-the-password"}
    proc = lake.floe("load", lake.name("w"), lake.root / "a.parquet", ok=False, props=props)
    assert proc.returncode == 1
    assert "authentication failed" in proc.stderr, proc.stderr
    assert "not-the-password" not in proc.stderr + proc.stdout
    with pytest.raises(Exception):
        lake.table("w")


def test_wrong_storage_credentials_leave_the_table_untouched(lake):
    write(lake.root / "a.parquet", rows_for(range(5), "x"), SCHEMA)
    lake.floe("load", lake.name("s"), lake.root / "a.parquet")
    before = lake.table("s").metadata_location
    props = {**lake.props, "s3.secret-access-key": "wrong-s3-secret"}
    proc = lake.floe("load", lake.name("s"), lake.root / "a.parquet", ok=False, props=props)
    assert proc.returncode == 1
    assert "wrong-s3-secret" not in proc.stderr + proc.stdout
    assert lake.table("s").metadata_location == before
    assert len(lake.rows("s")) == 5


class FaultProxy:
    """An HTTP proxy in front of the REST catalog that can misbehave on purpose."""

    def __init__(self, upstream, tls=None):
        self.upstream = upstream
        self.commit_fault = None  # "lose-answer": forward, answer 502; "drop": answer 503; "late": 504, forward later
        self.token_lifetime = None  # rewrite expires_in of token responses
        self.reject_next_request = False  # answer 401 once, as for an expired token
        self.token_requests = 0
        self.commits = 0
        self.headers_seen = []  # request headers of every non-token request
        self.vend = None  # a `config` to hand out with every table response (vended credentials)
        self.refuse_staged_create = False  # answer 400 to "stage-create": true, as some catalogs do
        self.refused = 0
        self.landed_before_conflict = False
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self.relay("GET")

            def do_POST(self):
                self.relay("POST")

            def do_HEAD(self):
                self.relay("HEAD")

            def do_DELETE(self):
                self.relay("DELETE")

            def relay(self, method):
                # Where redirects point: the same origin, so a client keeps its credentials.
                if self.path.startswith("/moved/"):
                    self.path = self.path[len("/moved"):]
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                is_token = self.path.endswith("/oauth/tokens")
                is_commit = method == "POST" and re.search(r"/namespaces/[^/]+/tables/[^/?]+$", self.path) is not None
                if is_token:
                    proxy.token_requests += 1
                else:
                    proxy.headers_seen.append({k.lower(): v for k, v in self.headers.items()})
                if not is_token and proxy.reject_next_request:
                    proxy.reject_next_request = False
                    return self.answer(401, b'{"error":{"message":"expired","type":"NotAuthorizedException","code":401}}')
                if proxy.refuse_staged_create and method == "POST" and body and b'"stage-create":true' in body:
                    proxy.refused += 1
                    return self.answer(400, b'{"error":{"message":"stage-create not supported","type":"BadRequestException","code":400}}')
                if is_commit:
                    proxy.commits += 1
                    fault, proxy.commit_fault = proxy.commit_fault, None
                    if fault == "drop":
                        return self.answer(503, b'{"error":{"message":"unavailable","type":"ServiceUnavailable","code":503}}')
                    if fault == "late":
                        # The catalog applies the commit a moment after the client gave up.
                        def later(method=method, body=body):
                            threading.Event().wait(0.3)
                            self.forward(method, body)

                        threading.Thread(target=later).start()
                        return self.answer(504, b"gateway timeout")
                    if fault in ("redirect-301", "redirect-307"):
                        # A misconfigured front: a client that follows 301 re-sends the POST as
                        # a GET, whose answer (the table) parses like a commit response.
                        code = int(fault[-3:])
                        self.send_response(code)
                        self.send_header("Location", f"{proxy.uri}/moved{self.path}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                status, data = self.forward(method, body)
                if is_commit and fault == "lose-answer":
                    return self.answer(502, b"bad gateway")
                if is_commit and fault == "duplicate-409":
                    # A proxy that retried the POST: the first copy landed, the client is told
                    # about the second one's conflict.
                    if status == 200:
                        proxy.landed_before_conflict = True
                    return self.answer(409, b'{"error":{"message":"Requirement failed: branch main has changed","type":"CommitFailedException","code":409}}')
                if proxy.vend is not None and status == 200 and "/tables" in self.path and not is_commit:
                    doc = json.loads(data)
                    if isinstance(doc, dict) and "metadata" in doc:
                        doc["config"] = {**doc.get("config", {}), **proxy.vend}
                        data = json.dumps(doc).encode()
                if is_token and status == 200 and proxy.token_lifetime is not None:
                    doc = json.loads(data)
                    doc["expires_in"] = proxy.token_lifetime
                    data = json.dumps(doc).encode()
                self.answer(status, data)

            def forward(self, method, body):
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                req = urllib.request.Request(proxy.upstream + self.path, data=body, method=method, headers=headers)
                try:
                    with urllib.request.urlopen(req, timeout=60) as r:
                        return r.status, r.read()
                except urllib.error.HTTPError as e:
                    return e.code, e.read()

            def answer(self, status, data):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.scheme = "http"
        if tls:
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def uri(self):
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(seaweed):
    p = FaultProxy(seaweed.rest_uri)
    yield p
    p.close()


@pytest.mark.parametrize("fault", ["lose-answer", "drop", "late"])
def test_commit_with_unknown_outcome_is_neither_lost_nor_doubled(lake, proxy, fault):
    props = {**lake.props, "uri": proxy.uri}
    write(lake.root / "seed.parquet", rows_for(range(10), "s"), SCHEMA)
    lake.floe("load", lake.name("u"), lake.root / "seed.parquet", props=props)
    write(lake.root / "a.parquet", rows_for(range(100, 200), "x"), SCHEMA)
    proxy.commit_fault = fault
    out = lake.floe("load", lake.name("u"), lake.root / "a.parquet", props=props)
    assert not out["skipped"]
    # "lose-answer": the first commit landed, floe found it; "drop": it did not, floe retried;
    # "late": it lands while floe retries, one of the two attempts wins.
    expected_attempts = {"lose-answer": 1, "drop": 2, "late": (1, 2)}[fault]
    assert out["commit_attempts"] in (expected_attempts if isinstance(expected_attempts, tuple) else (expected_attempts,)), out
    ids = [r["id"] for r in lake.rows("u")]
    assert sorted(ids) == list(range(10)) + list(range(100, 200))
    assert len(lake.table("u").snapshots()) == 2
    # Every data file the table references exists (none was cleaned up by mistake).
    assert len(lake.duckdb_rows("u")) == 110


@pytest.mark.parametrize("fault", ["redirect-301", "redirect-307"])
def test_redirected_commit_is_never_reported_as_landed(lake, proxy, fault):
    props = {**lake.props, "uri": proxy.uri}
    write(lake.root / "seed.parquet", rows_for(range(10), "s"), SCHEMA)
    lake.floe("load", lake.name("r"), lake.root / "seed.parquet", props=props)
    before = lake.table("r").metadata_location
    write(lake.root / "a.parquet", rows_for(range(100, 200), "x"), SCHEMA)
    proxy.commit_fault = fault
    proc = lake.floe("load", lake.name("r"), lake.root / "a.parquet", props=props, ok=False)
    assert proc.returncode != 0, proc.stdout
    assert "redirect" in proc.stderr and "the table is unchanged" in proc.stderr, proc.stderr
    assert "panicked" not in proc.stderr
    assert lake.table("r").metadata_location == before
    assert [r["id"] for r in lake.rows("r")] == list(range(10))
    assert len(lake.duckdb_rows("r")) == 10


def test_conflict_answer_after_the_commit_landed_keeps_the_files(lake, proxy):
    """A 409 for a retried POST whose first copy landed: floe finds its snapshot, deletes nothing."""
    props = {**lake.props, "uri": proxy.uri}
    write(lake.root / "seed.parquet", rows_for(range(10), "s"), SCHEMA)
    lake.floe("load", lake.name("d"), lake.root / "seed.parquet", props=props)
    write(lake.root / "a.parquet", rows_for(range(100, 200), "x"), SCHEMA)
    proxy.commit_fault = "duplicate-409"
    out = lake.floe("load", lake.name("d"), lake.root / "a.parquet", props=props)
    assert proxy.landed_before_conflict
    assert not out["skipped"] and out["commit_attempts"] == 1, out
    assert sorted(r["id"] for r in lake.rows("d")) == list(range(10)) + list(range(100, 200))
    assert len(lake.table("d").snapshots()) == 2
    # Every file the table references still exists.
    assert len(lake.duckdb_rows("d")) == 110


def noise_table(first_id, count, seed):
    """Rows with random text: slow to encode, so a load takes a while even in a fast build."""
    import pyarrow.compute as pc

    ids = pa.array(range(first_id, first_id + count), pa.int64())
    tenant = pc.take(pa.array(["a", "b", "c"]), pc.remainder(ids, 3))
    noise = pc.cast(pc.random(count, initializer=seed), pa.string())
    return pa.table({"id": ids, "tenant": tenant, "v": noise})


def test_tokens_are_refreshed(lake, proxy):
    props = {**lake.props, "uri": proxy.uri}
    # A token that expires at once is due for renewal before every request (a real one is
    # renewed a minute before expiry, or half-way through a short life).
    proxy.token_lifetime = 0
    pq.write_table(noise_table(0, 2_000_000, 1), lake.root / "a.parquet")
    lake.floe("load", lake.name("r"), lake.root / "a.parquet", props=props)
    assert proxy.token_requests >= 3, proxy.token_requests
    # The catalog revokes the token (401): floe asks for a new one and sends the request again.
    proxy.token_lifetime = None
    before = proxy.token_requests
    proxy.reject_next_request = True
    write(lake.root / "b.parquet", rows_for(range(10), "x"), SCHEMA)
    lake.floe("load", lake.name("r"), lake.root / "b.parquet", props=props)
    assert proxy.token_requests == before + 2, (before, proxy.token_requests)
    assert len(lake.rows("r")) == 2_000_010


def test_server_restart_mid_load_then_rerun_completes(lake, seaweed):
    total = 6_000_000
    (lake.root / "big").mkdir()
    for n in range(6):
        pq.write_table(noise_table(n * 1_000_000, 1_000_000, n), lake.root / "big" / f"{n}.parquet")
    write(lake.root / "seed.parquet", rows_for(range(10_000_000, 10_000_010), "s"), SCHEMA)
    lake.floe("load", lake.name("k"), lake.root / "seed.parquet")

    env = {k: v for k, v in os.environ.items() if not k.startswith("PYICEBERG_")}
    env["PYICEBERG_HOME"] = str(lake.root)
    env.update(env_for(lake.props))
    cmd = [FLOE_BIN, "load", lake.name("k"), str(lake.root / "big"), "--catalog", "lake", "--json",
           "--no-progress", "--load-id", "restart-1", "--target-file-size", "4MiB"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=lake.root)
    threading.Event().wait(0.7)
    assert proc.poll() is None, f"the load ended before the server went down: {proc.communicate()}"
    seaweed.restart(kill=True)
    out, err = proc.communicate(timeout=300)
    # Either outcome is fine, as long as it is clean: success, or exit 1 with a message.
    assert proc.returncode in (0, 1), err
    if proc.returncode == 1:
        assert "error" in err.lower() and "panicked" not in err, err
    count = len(lake.rows("k"))
    assert count in (10, total + 10), f"table inconsistent after the restart: {count} rows"

    rerun = lake.floe(*cmd[1:4], "--load-id", "restart-1", "--target-file-size", "4MiB")
    assert rerun["skipped"] == (proc.returncode == 0)
    ids = [r["id"] for r in lake.rows("k")]
    assert len(ids) == total + 10 and len(set(ids)) == total + 10, "every row exactly once"
    print("first run:", proc.returncode, err)


def test_bearer_token_and_extra_headers(lake, proxy):
    props = {k: v for k, v in lake.props.items() if k != "credential"}
    props.update({"uri": proxy.uri, "token": lake.server.token(), "header.X-Floe-Test": "hello"})
    write(lake.root / "a.parquet", rows_for(range(20), "x"), SCHEMA)
    lake.floe("load", lake.name("b"), lake.root / "a.parquet", props=props)
    assert proxy.token_requests == 0, "a fixed token needs no OAuth2 exchange"
    assert proxy.headers_seen and all(h.get("x-floe-test") == "hello" for h in proxy.headers_seen)
    assert all(h.get("authorization", "").startswith("Bearer ") for h in proxy.headers_seen)
    assert len(lake.rows("b")) == 20


def test_vended_credentials_are_used_for_storage(lake, proxy):
    """The catalog hands out S3 credentials with each table; floe's own config has none."""
    props = {k: v for k, v in lake.props.items() if k not in ("s3.access-key-id", "s3.secret-access-key")}
    props["uri"] = proxy.uri
    proxy.vend = {"s3.access-key-id": lake.server.access_key, "s3.secret-access-key": lake.server.secret_key}
    write(lake.root / "a.parquet", rows_for(range(30), "x"), SCHEMA)
    lake.floe("load", lake.name("v"), lake.root / "a.parquet", props=props)
    lake.floe("load", lake.name("v"), lake.root / "a.parquet", props=props)
    assert len(lake.rows("v")) == 60
    # Without them, the same configuration cannot write: the credentials really came vended.
    proxy.vend = None
    proc = lake.floe("load", lake.name("v"), lake.root / "a.parquet", props=props, ok=False)
    assert proc.returncode == 1
    assert len(lake.rows("v")) == 60


def test_https_catalog_with_a_private_ca(lake, seaweed, tmp_path):
    # A private CA, and a server certificate for 127.0.0.1 signed by it.
    ca, ca_key = tmp_path / "ca.pem", tmp_path / "ca.key"
    cert, key, csr, ext = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "srv.csr", tmp_path / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n")
    for cmd in (
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "1", "-subj", "/CN=floe test CA"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=localhost"],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert, "-days", "1", "-extfile", ext],
    ):
        subprocess.run(["openssl", *map(str, cmd)], check=True, capture_output=True)
    proxy = FaultProxy(seaweed.rest_uri, tls=(str(cert), str(key)))
    try:
        write(lake.root / "a.parquet", rows_for(range(10), "x"), SCHEMA)
        props = {**lake.props, "uri": proxy.uri}
        # An untrusted certificate is refused, clearly.
        proc = lake.floe("load", lake.name("h"), lake.root / "a.parquet", props=props, ok=False)
        assert proc.returncode == 1 and "certificate" in proc.stderr.lower(), proc.stderr
        lake.floe("load", lake.name("h"), lake.root / "a.parquet", props={**props, "ssl.cabundle": str(ca)})
        assert len(lake.rows("h")) == 10
    finally:
        proxy.close()


def test_catalog_without_staged_create(lake, proxy):
    """Some catalogs refuse stage-create: floe creates the table first, then commits the load."""
    proxy.refuse_staged_create = True
    props = {**lake.props, "uri": proxy.uri}
    write(lake.root / "a.parquet", rows_for(range(40), "x"), SCHEMA)
    out = lake.floe("load", lake.name("n"), lake.root / "a.parquet", props=props)
    assert out["table_created"] and out["rows_written"] == 40
    assert proxy.refused == 1
    table = lake.table("n")
    assert len(table.snapshots()) == 1
    assert len(lake.rows("n")) == 40


@pytest.mark.parametrize("mode", ["copy-on-write", "merge-on-read"])
def test_merge_commit_landing_late_is_kept(lake, proxy, mode):
    """A merge whose commit is applied after the client gave up must not be cleaned away."""
    props = {**lake.props, "uri": proxy.uri}
    write(lake.root / "base.parquet", rows_for(range(100), "old"), SCHEMA)
    lake.floe("load", lake.name("ml"), lake.root / "base.parquet", props=props)
    write(lake.root / "up.parquet", rows_for(range(50, 150), "new"), SCHEMA)
    proxy.commit_fault = "late"
    proc = lake.floe("load", lake.name("ml"), lake.root / "up.parquet", "--mode", "merge", "--key", "id",
                     "--merge-mode", mode, props=props, ok=False)
    threading.Event().wait(1.0)  # let a late commit land before looking
    print("merge with a late commit:", proc.returncode, proc.stdout[-300:], proc.stderr[-300:])
    expected = {i: (f"old{i}" if i < 50 else f"new{i}") for i in range(150)}
    got = {r["id"]: r["v"] for r in lake.rows("ml")}
    if proc.returncode == 0:
        assert got == expected
    else:
        # A clean refusal is allowed only if the table shows the merge fully or not at all.
        assert "outcome is unknown" in proc.stderr or "conflict" in proc.stderr.lower(), proc.stderr
        assert got in (expected, {i: f"old{i}" for i in range(100)})
    # Every file the table references exists.
    assert {r["id"]: r["v"] for r in lake.duckdb_rows("ml")} == got


def test_failed_copy_leaves_no_multipart_upload_or_object(lake, seaweed):
    """A copy-path load that fails in its last row group on S3 (after ~13 MB were sent): the
    file it was writing is closed and deleted, so the bucket holds neither an open multipart
    upload nor an object. (SeaweedFS lists no open upload here even for the build that dropped
    the writer without closing it, so the upload half of this check is weaker than it looks.)"""
    import boto3

    t = noise_table(0, 1_500_000, seed=7)
    path = lake.root / "big.parquet"
    pq.write_table(t, path, compression="zstd", row_group_size=300_000)
    out = lake.floe("load", lake.name("mp"), path)
    assert out["rows_copied"] == 1_500_000, out
    meta = pq.ParquetFile(path).metadata.row_group(4).column(2)
    end = (meta.dictionary_page_offset or meta.data_page_offset) + meta.total_compressed_size
    bad = lake.root / "bad.parquet"
    data = bytearray(path.read_bytes())
    data[end - 64:end - 32] = b"\xff" * 32
    bad.write_bytes(bytes(data))
    before = lake.table("mp").metadata_location
    proc = lake.floe("load", lake.name("mp"), bad, ok=False)
    assert proc.returncode != 0 and "row group 4" in proc.stderr, proc.stderr
    assert lake.table("mp").metadata_location == before
    s3 = boto3.client("s3", endpoint_url=seaweed.s3_endpoint, aws_access_key_id=seaweed.access_key,
                      aws_secret_access_key=seaweed.secret_key, region_name=seaweed.region)
    uploads = []
    for bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        listing = s3.list_multipart_uploads(Bucket=bucket)
        uploads += [u["Key"] for u in listing.get("Uploads", []) if lake.ns in u["Key"]]
    assert uploads == []
    table = lake.table("mp")
    live = {task.file.file_path for task in table.scan().plan_files()}
    location = table.location().removeprefix("s3://")
    bucket, prefix = location.split("/", 1)
    objects = {f"s3://{bucket}/{o['Key']}" for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/data/").get("Contents", [])}
    assert objects == live, objects - live


def test_expire_and_inspect_on_rest_and_s3(lake):
    for i in range(3):
        write(lake.root / f"a{i}.parquet", rows_for(range(i * 100, i * 100 + 100), "x"), SCHEMA)
        lake.floe("load", lake.name("t"), lake.root / f"a{i}.parquet")
    old_files = [f["file_path"] for f in lake.table("t").inspect.files().to_pylist()]
    write(lake.root / "r.parquet", rows_for(range(1000, 1050), "r"), SCHEMA)
    lake.floe("load", lake.name("t"), lake.root / "r.parquet", "--mode", "replace")
    report = lake.floe("inspect", lake.name("t"))
    assert len(report["snapshots"]) == 4 and report["files"]["data_rows"] == 50
    out = lake.floe("expire", lake.name("t"), "--older-than", "0s")
    assert len(out["expired_snapshot_ids"]) == 3 and out["data_files"] == len(old_files) == 3
    assert out["files_deleted"] == out["data_files"] + out["manifests"] + out["manifest_lists"]
    table = lake.table("t")
    assert [s.snapshot_id for s in table.snapshots()] == [table.metadata.current_snapshot_id]
    assert not any(table.io.new_input(f).exists() for f in old_files)
    live = [f["file_path"] for f in table.inspect.files().to_pylist()]
    assert live and all(table.io.new_input(f).exists() for f in live)
    expected = sort_rows(rows_for(range(1000, 1050), "r"), "id")
    assert lake.rows("t") == expected == lake.duckdb_rows("t")


def test_compact_on_rest_and_s3(lake):
    for i in range(6):
        write(lake.root / f"c{i}.parquet", rows_for(range(i * 50, i * 50 + 50), "c"), SCHEMA)
        lake.floe("load", lake.name("c"), lake.root / f"c{i}.parquet")
    before = lake.rows("c")
    out = lake.floe("compact", lake.name("c"))
    assert out["operation"] == "replace" and out["files_removed"] == 6 and out["files_added"] == 1
    assert len(lake.table("c").inspect.files().to_pylist()) == 1
    assert lake.rows("c") == before == lake.duckdb_rows("c")


def test_remove_orphans_on_s3(lake):
    import boto3

    write(lake.root / "a.parquet", rows_for(range(40), "a"), SCHEMA)
    lake.floe("load", lake.name("o"), lake.root / "a.parquet")
    table = lake.table("o")
    bucket, prefix = table.location().removeprefix("s3://").split("/", 1)
    props = lake.server.catalog_props()
    s3 = boto3.client(
        "s3",
        endpoint_url=props["s3.endpoint"],
        aws_access_key_id=props["s3.access-key-id"],
        aws_secret_access_key=props["s3.secret-access-key"],
        region_name=props.get("s3.region", "us-east-1"),
    )
    s3.put_object(Bucket=bucket, Key=f"{prefix}/data/orphan.parquet", Body=b"left behind")
    kept = lake.floe("remove-orphans", lake.name("o"))
    assert kept["orphans"] == 0 and kept["recent_unreferenced"] >= 1
    out = lake.floe("remove-orphans", lake.name("o"), "--older-than", "0s")
    # The orphan, and any metadata file the catalog wrote but no longer lists.
    assert out["files_deleted"] == out["orphans"] >= 1
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]]
    assert f"{prefix}/data/orphan.parquet" not in keys
    assert lake.rows("o") == sort_rows(rows_for(range(40), "a"), "id") == lake.duckdb_rows("o")


def test_expire_and_compact_beside_concurrent_loads(lake):
    import threading

    write(lake.root / "c0.parquet", rows_for(range(0, 20), "c"), SCHEMA)
    lake.floe("load", lake.name("cc"), lake.root / "c0.parquet")
    loaded, errors = [], []

    def loader(first):
        for n in range(6):
            ids = range(first + n * 10, first + n * 10 + 10)
            path = write(lake.root / f"l{first}-{n}.parquet", rows_for(ids, "l"), SCHEMA)
            proc = lake.floe("load", lake.name("cc"), path, ok=False)
            if proc.returncode == 0:
                loaded.extend(ids)
            else:
                errors.append(proc.stderr)

    threads = [threading.Thread(target=loader, args=(first,)) for first in (1000, 2000)]
    for t in threads:
        t.start()
    rounds = 0
    while any(t.is_alive() for t in threads):
        lake.floe("expire", lake.name("cc"), "--older-than", "0s", "--retain-last", "2")
        compacted = lake.floe("compact", lake.name("cc"), "--min-input-files", "2", ok=False)
        # A compaction that loses to a concurrent commit either rebased (appends only) or
        # failed cleanly; it never loses or doubles a row.
        assert compacted.returncode == 0 or "changed by another writer" in compacted.stderr, compacted.stderr
        rounds += 1
    for t in threads:
        t.join()
    assert not errors, errors
    assert rounds >= 1
    expected = sorted(list(range(0, 20)) + loaded)
    assert [r["id"] for r in lake.rows("cc")] == expected
    assert [r["id"] for r in lake.duckdb_rows("cc")] == expected
    table = lake.table("cc")
    live = [f["file_path"] for f in table.inspect.files().to_pylist()]
    assert all(table.io.new_input(f).exists() for f in live)


def test_expire_and_compact_killed_at_any_moment_on_rest_and_s3(lake):
    """`floe expire` and `floe compact` against the REST catalog and S3, each SIGKILLed at a
    random moment, 4 rounds: the table is at its old or its new state, every file a snapshot
    reaches is in the bucket, and pyiceberg and DuckDB read the same rows."""
    import random
    import signal
    import time

    rng = random.Random(5)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYICEBERG_")}
    env["PYICEBERG_HOME"] = str(lake.root)
    env.update(env_for(lake.props))

    def killed(*args, within):
        proc = subprocess.Popen([FLOE_BIN, *args, "--catalog", "lake"], env=env, cwd=lake.root,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.0, within))
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def check(table_name, expected, before):
        table = lake.table(table_name)
        now = table.metadata.current_snapshot_id
        assert now in before, f"snapshot {now}: neither the old nor the new state"
        io = table.io
        for snap in table.metadata.snapshots:
            assert io.new_input(snap.manifest_list).exists()
            for m in snap.manifests(io):
                assert io.new_input(m.manifest_path).exists()
                for entry in m.fetch_manifest_entry(io, discard_deleted=True):
                    assert io.new_input(entry.data_file.file_path).exists(), entry.data_file.file_path
        assert lake.rows(table_name) == expected == lake.duckdb_rows(table_name)

    expected = []
    for round_ in range(4):
        for i in range(6):
            rows = rows_for(range(round_ * 1000 + i * 20, round_ * 1000 + i * 20 + 20), f"k{round_}")
            write(lake.root / f"k{round_}-{i}.parquet", rows, SCHEMA)
            lake.floe("load", lake.name("k"), lake.root / f"k{round_}-{i}.parquet")
            expected = sort_rows(expected + rows, "id")
        # compact: the table stays at the last load's snapshot or gains one `replace`.
        before = lake.table("k").metadata.current_snapshot_id
        killed("compact", lake.name("k"), within=0.4)
        table = lake.table("k")
        after = {before} | {s.snapshot_id for s in table.metadata.snapshots
                            if s.parent_snapshot_id == before and s.summary.operation.value == "replace"}
        check("k", expected, after)
        # expire: snapshots go in one commit, their files after it; main stays where it is.
        before = lake.table("k").metadata.current_snapshot_id
        killed("expire", lake.name("k"), "--older-than", "0s", within=0.4)
        check("k", expected, {before})
    lake.floe("expire", lake.name("k"), "--older-than", "0s")
    check("k", expected, {lake.table("k").metadata.current_snapshot_id})


def test_register_table_through_rest(lake):
    """floe.register_table through the REST catalog's `register` endpoint: the catalog names a
    second table at the same metadata file; registering a name that exists is refused."""
    floe = pytest.importorskip("floe")
    catalog = {"name": "lake", **lake.props}
    floe.load(lake.name("src"), pa.table({"id": pa.array(range(50), pa.int64())}), catalog=catalog)
    metadata = lake.table("src").metadata_location
    assert floe.register_table(lake.name("again"), metadata, catalog=catalog) == metadata
    assert lake.table("again").metadata_location == metadata
    # SeaweedFS 4.48 answers later loads of a registered table without its snapshots (pyiceberg's
    # own register_table shows the same), so rows are compared on the SQL catalog only
    # (test_python.py::test_register_table_names_a_table_in_another_catalog).
    with pytest.raises(floe.CatalogRefusedError, match="already exists"):
        floe.register_table(lake.name("again"), metadata, catalog=catalog)
