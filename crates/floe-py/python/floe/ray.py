"""floe on Ray: a Ray Data sink whose workers write with floe and whose driver commits the
whole dataset as exactly one Iceberg snapshot.

    import ray, floe.ray
    ds = ray.data.read_parquet("s3://bucket/events/")
    sink = floe.ray.IcebergSink("analytics.events", catalog="lake")
    ds.write_datasink(sink)
    print(sink.summary.message)

How a load runs (append, replace, replace-partitions):

1. ``on_write_start`` (driver): floe plans the load against the table as it is: the table
   loaded or staged (a missing table is created by the commit, from the dataset's schema), the
   load id checked (a load id that already landed makes the whole job a no-op), the schema
   evolved over the dataset's schema (new columns, safe widening). Nothing is committed.
2. ``write`` (each Ray task): the task's blocks stream through floe's Rust writers in the task's
   process: conformed to the planned schema, split by partition, written as the table's data
   files (its codec, sizes and metrics) with a manifest listing them. The task commits nothing
   and talks to no catalog; it returns the manifests' paths and counts. Before each file is
   written its path goes to the job's ledger (a small Ray actor).
3. ``on_write_complete`` (driver): every task's manifests are read back and checked against the
   plan, and all files are committed as one snapshot (retried against concurrent commits, as any
   floe load). Files of task attempts that did not count (a task Ray retried after its worker
   died) are deleted; if the job fails, every file its tasks wrote is deleted.

A merge (``mode="merge"``) needs every key of the load matched against the table in one place:
its tasks stage their blocks as Parquet files in ``staging_dir`` and the driver runs floe's
bounded-memory merge over them (upsert, insert-only, delete-insert, hard deletes), one snapshot.
Each job stages in a folder of its own inside ``staging_dir``, removed when the job ends.
``staging_dir`` must be a folder every worker and the driver share: the default, a temporary
folder on the driver's machine, suits a single-node cluster.

Load ids: ``load_id`` (recommended for jobs that may be retried) makes a rerun a no-op; the
default, ``ray:<job id>:<table>:<n>`` (the n-th write to that table in this driver), keeps
writes of one driver apart but does not survive a new job.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
import uuid
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Union

try:
    import ray
    from ray.data.block import Block, BlockAccessor
    from ray.data.datasource.datasink import Datasink, WriteResult
except ImportError as e:  # pragma: no cover - exercised only without Ray
    raise ImportError("floe.ray needs Ray Data: pip install 'ray[data]'") from e

import floe

from . import _floe

__all__ = ["IcebergSink"]

_MODES = ("append", "replace", "merge")
_WRITES: Dict[str, "itertools.count[int]"] = {}


def _start_ledger() -> Any:
    """The job's ledger, a small actor that records every file the job's tasks start, by task
    attempt, before the file's first byte: what an attempt that died mid-write left behind can
    be found and deleted. Answers once the actor runs. The class is defined here, so it
    travels by value and the actor's process starts without importing floe or Ray Data."""

    class FloeJobLedger:
        def __init__(self) -> None:
            self._files: Dict[str, List[str]] = {}

        def record(self, attempt: str, path: str) -> None:
            self._files.setdefault(attempt, []).append(path)

        def files(self) -> Dict[str, List[str]]:
            return self._files

    handle = ray.remote(num_cpus=0)(FloeJobLedger).remote()
    ray.get(handle.files.remote())
    return handle


def _default_load_id(table: str) -> str:
    job = ray.get_runtime_context().get_job_id()
    n = next(_WRITES.setdefault(table, itertools.count()))
    return f"ray:{job}:{table}:{n}"


class IcebergSink(Datasink):
    """A Ray Data sink that loads a dataset into an Iceberg table with floe, as one snapshot.

    Use it as ``ds.write_datasink(IcebergSink(table, ...))``. The arguments mean what they mean
    in :func:`floe.load`: ``mode`` "append", "replace" (with ``replace_partitions=True`` only
    the partitions the dataset has) or "merge" (by ``key``; ``strategy``, ``merge_mode``,
    ``hard_delete_column``, ``dedup_sort``, ``on_duplicate_keys``, ``memory_limit``);
    ``partition_by``, ``location`` and ``table_properties`` for a table the load creates;
    ``schema_evolution``; ``load_id``; ``catalog`` (None, a name from .pyiceberg.yaml /
    PYICEBERG_CATALOG__*, or a dict of pyiceberg-style properties) and ``warehouse``;
    ``target_file_size``.

    staging_dir: merges only, where tasks stage their blocks, in a folder of the job's own
        (a folder the driver can read; default: the system's temporary folder).
    min_rows_per_write, min_bytes_per_write: rows, or bytes of Arrow data (default 128 MiB;
        rows win when both are given), Ray gathers into one write task before calling it:
        fewer, larger tasks and data files (each task writes its own files). Both None leaves
        it to Ray (a task per block or so).

    After the write, ``sink.summary`` is the :class:`floe.LoadSummary` of the commit (None for
    a merge of a dataset without rows). Errors are
    floe's exceptions (``floe.FloeError`` subclasses), raised on the driver.
    """

    def __init__(
        self,
        table: str,
        *,
        mode: str = "append",
        key: Union[str, Sequence[str], None] = None,
        strategy: str = "upsert",
        merge_mode: str = "copy-on-write",
        hard_delete_column: Optional[str] = None,
        dedup_sort: Optional[str] = None,
        on_duplicate_keys: str = "last",
        replace_partitions: bool = False,
        partition_by: Optional[str] = None,
        schema_evolution: str = "add-columns",
        load_id: Optional[str] = None,
        catalog: Union[None, str, Mapping[str, Any]] = None,
        warehouse: Union[str, "os.PathLike[str]", None] = None,
        memory_limit: Union[int, str, None] = None,
        target_file_size: Union[int, str, None] = None,
        location: Optional[str] = None,
        table_properties: Optional[Mapping[str, str]] = None,
        staging_dir: Union[str, "os.PathLike[str]", None] = None,
        min_rows_per_write: Optional[int] = None,
        min_bytes_per_write: Optional[int] = 128 * 1024 * 1024,
    ):
        if mode not in _MODES:
            raise floe.InvalidOptionError(f"mode {mode!r}: expected append, replace or merge")
        if mode == "merge" and not key:
            raise floe.InvalidOptionError("mode merge needs a key (one or more columns)")
        if mode != "merge" and key:
            raise floe.InvalidOptionError("key goes with mode merge")
        self.table = table
        self.mode = mode
        self._merge = dict(
            key=key,
            strategy=strategy,
            merge_mode=merge_mode,
            hard_delete_column=hard_delete_column,
            dedup_sort=dedup_sort,
            on_duplicate_keys=on_duplicate_keys,
            memory_limit=memory_limit,
        )
        self._replace_partitions = replace_partitions
        self._new_table = dict(
            partition_by=partition_by,
            location=location,
            table_properties=None if table_properties is None else {str(k): str(v) for k, v in table_properties.items()},
        )
        self._schema_evolution = schema_evolution
        self._given_load_id = load_id
        self._catalog = dict(catalog) if isinstance(catalog, Mapping) else catalog
        self._warehouse = None if warehouse is None else str(warehouse)
        self._target_file_size = target_file_size
        self._staging_dir = None if staging_dir is None else str(staging_dir)
        self._min_rows = min_rows_per_write
        self._min_bytes = min_bytes_per_write
        #: The commit's LoadSummary, once the write has finished.
        self.summary: Optional[floe.LoadSummary] = None
        self._reset()

    def _reset(self) -> None:
        self._load_id: Optional[str] = None
        self._plan: Optional[str] = None
        self._skipped: Optional[str] = None
        self._staging: Optional[str] = None
        self._ledger: Any = None
        self._settled = False

    def get_name(self) -> str:
        return "FloeIceberg"

    @property
    def min_rows_per_write(self) -> Optional[int]:
        return self._min_rows

    @property
    def min_bytes_per_write(self) -> Optional[int]:
        # Ray takes one bundling target: rows, when given, win.
        return None if self._min_rows is not None else self._min_bytes

    # -- driver ----------------------------------------------------------------------------

    def on_write_start(self, schema: Any = None) -> None:
        self._reset()
        self.summary = None
        self._load_id = self._given_load_id or _default_load_id(self.table)
        if self.mode == "merge":
            # The job's own folder: removing it removes every attempt's staged files.
            if self._staging_dir is not None:
                os.makedirs(self._staging_dir, exist_ok=True)
            self._staging = tempfile.mkdtemp(prefix="floe-ray-", dir=self._staging_dir)
            return
        if schema is None:
            raise floe.InvalidOptionError(f"{self.table}: Ray passed no schema for the dataset; nothing to plan the load with")
        self._plan, self._skipped = _floe.plan_load(
            self.table,
            schema,
            mode=self.mode,
            replace_partitions=self._replace_partitions,
            schema_evolution=self._schema_evolution,
            load_id=self._load_id,
            catalog=self._catalog,
            warehouse=self._warehouse,
            **self._new_table,
        )
        self._ledger = _start_ledger()

    def on_write_complete(self, write_result: WriteResult) -> None:
        results = [r for r in write_result.write_returns if r]
        kept: Set[str] = set()
        try:
            if self._skipped is not None:
                self.summary = floe.LoadSummary(json.loads(self._skipped))
            elif self.mode == "merge":
                self.summary = self._merge_staged(results)
            elif self._plan is not None:
                staged = [json.dumps({k: v for k, v in r.items() if k != "task_attempt"}) for r in results]
                text = _floe.commit_staged(self._plan, staged, catalog=self._catalog, warehouse=self._warehouse)
                self.summary = floe.LoadSummary(json.loads(text))
                kept = {r["task_attempt"] for r in results}
        except floe.CommitStateUnknownError:
            # The table may reference the files the commit took: only other attempts' go.
            self._settle(keep={r["task_attempt"] for r in results})
            raise
        except BaseException:
            self._settle(keep=set())
            raise
        self._settle(keep=kept)

    def on_write_failed(self, error: Exception) -> None:
        self._settle(keep=set())

    def _merge_staged(self, results: List[Dict[str, Any]]) -> Optional[floe.LoadSummary]:
        paths = sorted(p for r in results for p in r["paths"])
        if not paths:
            return None  # no rows: a merge of nothing changes nothing
        return floe.load(
            self.table,
            paths,
            mode="merge",
            schema_evolution=self._schema_evolution,
            load_id=self._load_id,
            catalog=self._catalog,
            warehouse=self._warehouse,
            target_file_size=self._target_file_size,
            **self._new_table,
            **self._merge,
        )

    def _settle(self, keep: Set[str]) -> None:
        """Deletes every file the job's tasks started except those of the attempts in `keep`
        (the ones the commit took), or the merge's staging folder; once per job."""
        if self._settled:
            return
        self._settled = True
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
        if self._ledger is None:
            return
        try:
            files = ray.get(self._ledger.files.remote())
        finally:
            ray.kill(self._ledger)
        doomed = [p for attempt, paths in files.items() if attempt not in keep for p in paths]
        if doomed and self._plan is not None:
            _floe.discard_staged(self._plan, doomed)

    # -- workers ---------------------------------------------------------------------------

    def write(self, blocks: Iterable[Block], ctx: Any) -> Optional[Dict[str, Any]]:
        if self._skipped is not None:
            return None
        attempt = uuid.uuid4().hex
        tables = (BlockAccessor.for_block(b).to_arrow() for b in blocks)
        if self.mode == "merge":
            return self._stage(tables, attempt)
        ledger = self._ledger

        def record(path: str) -> None:
            ray.get(ledger.record.remote(attempt, path))

        text = _floe.write_staged(
            self._plan,
            tables,
            name=f"{self.table} write task {getattr(ctx, 'task_idx', '?')}",
            target_file_size=self._target_file_size,
            record=record,
        )
        staged = json.loads(text)
        staged["task_attempt"] = attempt
        return staged

    def _stage(self, tables: Iterable[Any], attempt: str) -> Dict[str, Any]:
        """A merge task's blocks as Parquet files in the staging folder (zstd, so the driver's
        merge copies the winning rows' column chunks instead of encoding them again)."""
        import pyarrow.parquet as pq

        paths: List[str] = []
        rows = 0
        for i, table in enumerate(tables):
            if table.num_rows == 0:
                continue
            path = os.path.join(self._staging, f"{attempt}-{i:05}.parquet")
            pq.write_table(table, path, compression="zstd")
            paths.append(path)
            rows += table.num_rows
        return {"task_attempt": attempt, "paths": paths, "rows": rows}

