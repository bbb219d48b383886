"""Shared helpers for floe's interop tests: run the floe CLI, read tables back with readers we
did not write (pyiceberg, DuckDB) and compare rows exactly."""

import glob
import json
import os
import site
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FLOE_BIN = os.environ.get("FLOE_BIN", str(REPO / "target" / "debug" / "floe"))


class Warehouse:
    def __init__(self, root: Path):
        self.root = root
        self.dir = root / "warehouse"

    def floe(self, *args, ok=True, env=None):
        """Runs `floe load ... --warehouse <dir> --json`; returns the parsed summary (or the
        CompletedProcess when ok=False)."""
        cmd = [FLOE_BIN, *map(str, args), "--warehouse", str(self.dir), "--json"]
        run_env = dict(os.environ)
        run_env.update(env or {})
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=self.root, env=run_env)
        if not ok:
            return proc
        assert proc.returncode == 0, f"floe failed ({proc.returncode}): {proc.stderr}"
        return json.loads(proc.stdout)

    def catalog(self):
        from pyiceberg.catalog.sql import SqlCatalog

        self.dir.mkdir(parents=True, exist_ok=True)
        return SqlCatalog(
            "default",
            uri=f"sqlite:///{self.dir}/catalog.db",
            warehouse=f"file://{self.dir}",
        )

    def table(self, name):
        return self.catalog().load_table(name)

    def pyiceberg_rows(self, name, sort_key="id"):
        tbl = self.table(name).scan().to_arrow()
        return sort_rows(tbl.to_pylist(), sort_key)

    def duckdb_rows(self, name, sort_key="id"):
        loc = self.table(name).metadata_location
        con = duckdb_connection(self.root)
        tbl = con.execute(f"SELECT * FROM iceberg_scan('{loc}')").arrow()
        if hasattr(tbl, "read_all"):
            tbl = tbl.read_all()
        return sort_rows(tbl.to_pylist(), sort_key)


def sort_rows(rows, key):
    return sorted(rows, key=lambda r: (r[key] is None, r[key]))


def duckdb_connection(tmp: Path):
    import duckdb

    sp = site.getsitepackages()[0]
    avro = glob.glob(f"{sp}/duckdb_extension_avro/extensions/*/avro.duckdb_extension")[0]
    iceberg = glob.glob(f"{sp}/duckdb_extension_iceberg/extensions/*/iceberg.duckdb_extension")[0]
    ext_dir = tmp / "duckdb_extensions"
    ext_dir.mkdir(exist_ok=True)
    con = duckdb.connect(
        config={
            "extension_directory": str(ext_dir),
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        }
    )
    con.execute(f"LOAD '{avro}'")
    con.execute(f"LOAD '{iceberg}'")
    return con


@pytest.fixture
def wh(tmp_path):
    return Warehouse(tmp_path)
