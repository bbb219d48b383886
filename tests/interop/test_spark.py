"""Spark-written tables (format v1 and v2) loaded by floe, and floe's commits read back by Spark.

Spark 3.5 with Iceberg 1.10 runs locally with a Hadoop catalog; its tables are registered in
floe's SQL catalog (pyiceberg's register_table), then floe appends and replaces, and Spark reads
floe's newest metadata file directly.
"""

import glob
import site

import pyarrow as pa
import pytest

from test_interop import write

pytest.importorskip("pyspark")


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    from pyspark.sql import SparkSession

    jars = glob.glob(f"{site.getsitepackages()[0]}/snowpark_connect_deps_iceberg/jars/iceberg-spark-runtime-3.5_2.12-*.jar")
    if not jars:
        pytest.skip("no Iceberg Spark runtime jar")
    warehouse = tmp_path_factory.mktemp("spark-warehouse")
    session = (
        SparkSession.builder.master("local[1]")
        .config("spark.jars", jars[0])
        .config("spark.sql.extensions", "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions")
        .config("spark.sql.catalog.hl", "org.apache.iceberg.spark.SparkCatalog")
        .config("spark.sql.catalog.hl.type", "hadoop")
        .config("spark.sql.catalog.hl.warehouse", str(warehouse))
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "1")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session, warehouse
    session.stop()


@pytest.mark.parametrize("version,partitioned", [(1, False), (2, True)])
def test_spark_tables_load_and_read_back(wh, spark, version, partitioned):
    session, warehouse = spark
    name = f"t_v{version}"
    part = "PARTITIONED BY (cat)" if partitioned else ""
    session.sql(
        f"CREATE TABLE hl.db.{name} (id bigint, cat string, amount decimal(10,2)) USING iceberg {part} "
        f"TBLPROPERTIES ('format-version'='{version}')"
    )
    session.sql(f"INSERT INTO hl.db.{name} VALUES (1, 'a', 1.50), (2, 'b', 2.25), (3, 'a', NULL)")
    metadata = sorted(glob.glob(f"{warehouse}/db/{name}/metadata/v*.metadata.json"), key=lambda p: int(p.split("/v")[-1].split(".")[0]))[-1]
    cat = wh.catalog()
    cat.create_namespace("spark")
    cat.register_table(f"spark.{name}", metadata)

    import decimal

    more = pa.table({"id": pa.array([10, 11], pa.int64()), "cat": ["b", "c"], "amount": pa.array([decimal.Decimal("9.99"), None], pa.decimal128(10, 2))})
    write(wh.root / "more.parquet", more)
    out = wh.floe("load", f"spark.{name}", wh.root / "more.parquet")
    assert out["operation"] == "append"
    assert sorted(r["id"] for r in wh.pyiceberg_rows(f"spark.{name}")) == [1, 2, 3, 10, 11]

    location = wh.table(f"spark.{name}").metadata_location
    rows = session.read.format("iceberg").load(location).orderBy("id").collect()
    assert [(r.id, r.cat) for r in rows] == [(1, "a"), (2, "b"), (3, "a"), (10, "b"), (11, "c")]

    out = wh.floe("load", f"spark.{name}", wh.root / "more.parquet", "--mode", "replace")
    assert out["files_removed"] >= 2
    location = wh.table(f"spark.{name}").metadata_location
    rows = session.read.format("iceberg").load(location).orderBy("id").collect()
    assert [(r.id, r.cat, None if r.amount is None else str(r.amount)) for r in rows] == [(10, "b", "9.99"), (11, "c", None)]

    if version == 2:
        upd = pa.table({"id": pa.array([10], pa.int64()), "cat": ["z"], "amount": pa.array([decimal.Decimal("1.00")], pa.decimal128(10, 2))})
        write(wh.root / "upd.parquet", upd)
        wh.floe("load", f"spark.{name}", wh.root / "upd.parquet", "--mode", "merge", "--key", "id", "--merge-mode", "merge-on-read")
        location = wh.table(f"spark.{name}").metadata_location
        rows = session.read.format("iceberg").load(location).orderBy("id").collect()
        assert [(r.id, r.cat) for r in rows] == [(10, "z"), (11, "c")]
