//! Merge: match a load's keys against the table in bounded memory.
//!
//! ```text
//!  load batches --conform--> LoadSide: null-key check, +__floe_seq, key ranges
//!                              | rows: SpillQueue, input order         (spills)
//!                              | keys + seq: ExternalSorter by (keys, seq)  (spills)
//!  table: live files pruned by key bounds --> key columns + (file, pos)
//!                              | ExternalSorter by keys               (spills)
//!  sort-merge join, one key group at a time:
//!     strategy (upsert / insert-only / delete-insert), hard deletes, duplicate keys
//!     -> input positions of rows to write (a bitmap; the rows are read back
//!        from the queue in order afterwards)
//!     -> (file, pos) to delete --> ExternalSorter by (file, pos)
//!  deletes, file by file:
//!     copy-on-write: rewrite the file without those rows
//!     merge-on-read: one position-delete file per data file
//! ```
//!
//! Every load row and every candidate key is touched a constant number of times (plus the
//! sorts' O(n log n)); memory is set by the sort budget, never by the data.

pub mod position_deletes;
pub mod table_files;

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array, UInt64Array};
use arrow_ord::ord::make_comparator;
use arrow_row::{OwnedRow, RowConverter, Rows, SortField};
use arrow_schema::{DataType, Field, Schema as ArrowSchema, SchemaRef, SortOptions};
use iceberg::spec::{Datum, PrimitiveType, Schema, Type};
use serde::Serialize;

use crate::error::{FloeError, Result, ResultExt};
use crate::spill::{ExternalSorter, QueueStream, SortedStream, SpillQueue};

/// What to do with load rows whose key is already in the table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum MergeStrategy {
    /// A matching live row is replaced; other rows are inserted.
    #[default]
    Upsert,
    /// Load rows whose key exists are dropped; others are inserted.
    InsertOnly,
    /// Every live row whose key appears in the load is deleted; all load rows are inserted.
    DeleteInsert,
}

/// How deleted rows leave the table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum MergeMode {
    /// Files holding matched rows are rewritten without them.
    #[default]
    CopyOnWrite,
    /// Position-delete files hide matched rows (format v2).
    MergeOnRead,
}

/// Which load row wins when one key appears several times in a load (upsert, insert-only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DuplicateKeys {
    /// The last occurrence in input order.
    #[default]
    LastWins,
    /// The greatest (`descending`) or smallest value of a column; ties go to the last row.
    SortBy { column: String, descending: bool },
    /// Duplicates reject the load.
    Error,
}

/// The names the CLI and the Python package use (`upsert`, `insert-only`, `delete-insert`).
impl std::str::FromStr for MergeStrategy {
    type Err = FloeError;
    fn from_str(s: &str) -> Result<Self> {
        crate::error::parse_choice("merge strategy", s)
    }
}

/// `copy-on-write` or `merge-on-read`.
impl std::str::FromStr for MergeMode {
    type Err = FloeError;
    fn from_str(s: &str) -> Result<Self> {
        crate::error::parse_choice("merge mode", s)
    }
}

/// What a load does with one key appearing several times (upsert, insert-only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OnDuplicateKeys {
    /// The last occurrence in input order wins (or the dedup-sort winner).
    #[default]
    Last,
    /// Reject the load.
    Error,
}

/// `last` or `error`.
impl std::str::FromStr for OnDuplicateKeys {
    type Err = FloeError;
    fn from_str(s: &str) -> Result<Self> {
        crate::error::parse_choice("on-duplicate-keys", s)
    }
}

impl DuplicateKeys {
    /// From the faces' two settings: `dedup_sort` (`COLUMN[:asc|desc]`, default descending)
    /// and `on_duplicate_keys`, which exclude each other when it is `error`.
    pub fn from_settings(
        dedup_sort: Option<&str>,
        on_duplicate_keys: OnDuplicateKeys,
    ) -> Result<Self> {
        match (dedup_sort, on_duplicate_keys) {
            (Some(_), OnDuplicateKeys::Error) => Err(FloeError::InvalidOption(
                "dedup-sort and on-duplicate-keys error exclude each other".into(),
            )),
            (None, OnDuplicateKeys::Error) => Ok(Self::Error),
            (None, OnDuplicateKeys::Last) => Ok(Self::LastWins),
            (Some(spec), OnDuplicateKeys::Last) => {
                let (column, order) = spec.rsplit_once(':').unwrap_or((spec, "desc"));
                let descending = match order.to_ascii_lowercase().as_str() {
                    "desc" => true,
                    "asc" => false,
                    other => {
                        return Err(FloeError::InvalidOption(format!(
                            "dedup-sort {spec}: order must be asc or desc, not '{other}'"
                        )));
                    }
                };
                Ok(Self::SortBy {
                    column: column.to_string(),
                    descending,
                })
            }
        }
    }
}

/// The merge a load asks for.
#[derive(Debug, Clone)]
pub struct MergeSpec {
    pub keys: Vec<String>,
    pub strategy: MergeStrategy,
    pub mode: MergeMode,
    pub hard_delete_column: Option<String>,
    pub duplicates: DuplicateKeys,
    /// Memory the sorts may use together before spilling.
    pub memory_limit: usize,
}

/// What a merge did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct MergeCounts {
    pub rows_inserted: u64,
    pub rows_updated: u64,
    pub rows_deleted: u64,
    pub files_rewritten: u64,
    pub delete_files_added: u64,
    /// Sorted runs the merge's sorts spilled to disk (0: everything fit the memory limit).
    pub spill_runs: u64,
}

pub(crate) const SEQ_COLUMN: &str = "__floe_seq";
pub(crate) const FILE_COLUMN: &str = "__floe_file";
pub(crate) const POS_COLUMN: &str = "__floe_pos";

impl MergeSpec {
    /// Every column the join reads: keys, the hard-delete column, the dedup column.
    pub fn columns(&self) -> Vec<String> {
        let mut names = self.keys.clone();
        names.extend(self.hard_delete_column.clone());
        if let DuplicateKeys::SortBy { column, .. } = &self.duplicates {
            names.push(column.clone());
        }
        names
    }
}

/// Key columns resolved against the table schema.
#[derive(Debug, Clone)]
pub struct KeyColumns {
    pub names: Vec<String>,
    pub field_ids: Vec<i32>,
    /// Positions in the table's Arrow schema.
    pub indices: Vec<usize>,
    pub types: Vec<PrimitiveType>,
    pub hard_delete: Option<usize>,
    pub dedup: Option<(usize, bool)>,
}

impl KeyColumns {
    pub fn resolve(spec: &MergeSpec, schema: &Schema, table: &str) -> Result<Self> {
        let bad = |m: String| FloeError::InvalidOption(format!("table {table}: {m}"));
        if spec.keys.is_empty() {
            return Err(bad("a merge needs --key".into()));
        }
        let fields = schema.as_struct().fields();
        let index_of = |name: &str| fields.iter().position(|f| f.name == name);
        let mut out = KeyColumns {
            names: vec![],
            field_ids: vec![],
            indices: vec![],
            types: vec![],
            hard_delete: None,
            dedup: None,
        };
        for name in &spec.keys {
            let Some(i) = index_of(name) else {
                return Err(bad(format!(
                    "key column '{name}' is not a top-level column of the table"
                )));
            };
            let Type::Primitive(p) = fields[i].field_type.as_ref() else {
                return Err(bad(format!(
                    "key column '{name}' is {}, keys must be primitive",
                    fields[i].field_type
                )));
            };
            if matches!(p, PrimitiveType::Float | PrimitiveType::Double) {
                // As Iceberg refuses them as identifier fields: -0.0 = 0.0 and NaN != NaN make
                // float equality no basis for matching rows.
                return Err(bad(format!(
                    "key column '{name}' is {p}; floating-point columns cannot be merge keys (cast the key to a decimal, integer or string)"
                )));
            }
            out.names.push(name.clone());
            out.field_ids.push(fields[i].id);
            out.indices.push(i);
            out.types.push(p.clone());
        }
        if let Some(c) = &spec.hard_delete_column {
            out.hard_delete = Some(index_of(c).ok_or_else(|| {
                bad(format!(
                    "hard-delete column '{c}' is not in the input or the table"
                ))
            })?);
        }
        if let DuplicateKeys::SortBy { column, descending } = &spec.duplicates {
            let i = index_of(column)
                .ok_or_else(|| bad(format!("dedup column '{column}' is not in the table")))?;
            out.dedup = Some((i, *descending));
        }
        Ok(out)
    }

    fn converter(&self, arrow: &ArrowSchema) -> Result<RowConverter> {
        RowConverter::new(
            self.indices
                .iter()
                .map(|&i| SortField::new(arrow.field(i).data_type().clone()))
                .collect(),
        )
        .context(|| "cannot compare key columns".into())
    }
}

/// Min and max of every key column seen in the load, for pruning table files.
#[derive(Debug, Default, Clone)]
pub struct KeyRanges {
    ranges: Vec<Option<(Datum, Datum)>>,
}

impl KeyRanges {
    fn update(&mut self, keys: &KeyColumns, batch: &RecordBatch) {
        if self.ranges.is_empty() {
            self.ranges = vec![None; keys.indices.len()];
        }
        for (k, &i) in keys.indices.iter().enumerate() {
            let column = batch.column(i);
            let Some((lo, hi)) = min_max(column.as_ref(), &keys.types[k]) else {
                continue;
            };
            self.ranges[k] = Some(match self.ranges[k].take() {
                None => (lo, hi),
                Some((a, b)) => (if lo < a { lo } else { a }, if hi > b { hi } else { b }),
            });
        }
    }

    /// Whether a file with these bounds may hold one of the load's keys.
    pub fn may_match(&self, keys: &KeyColumns, file: &iceberg::spec::DataFile) -> bool {
        for (k, range) in self.ranges.iter().enumerate() {
            let Some((lo, hi)) = range else { continue };
            let id = keys.field_ids[k];
            if let Some(upper) = file.upper_bounds().get(&id)
                && upper.partial_cmp(lo) == Some(std::cmp::Ordering::Less)
            {
                return false;
            }
            if let Some(lower) = file.lower_bounds().get(&id)
                && lower.partial_cmp(hi) == Some(std::cmp::Ordering::Greater)
            {
                return false;
            }
        }
        true
    }
}

fn min_max(array: &dyn Array, ty: &PrimitiveType) -> Option<(Datum, Datum)> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Date32Type, Int32Type, Int64Type, TimestampMicrosecondType};
    macro_rules! prim {
        ($t:ty, $make:expr) => {{
            let a = array.as_primitive_opt::<$t>()?;
            let lo = arrow_arith::aggregate::min(a)?;
            let hi = arrow_arith::aggregate::max(a)?;
            Some(($make(lo), $make(hi)))
        }};
    }
    match (ty, array.data_type()) {
        (PrimitiveType::Int, DataType::Int32) => prim!(Int32Type, Datum::int),
        (PrimitiveType::Long, DataType::Int64) => prim!(Int64Type, Datum::long),
        (PrimitiveType::Date, DataType::Date32) => prim!(Date32Type, Datum::date),
        (PrimitiveType::Timestamp, DataType::Timestamp(_, _)) => {
            prim!(TimestampMicrosecondType, Datum::timestamp_micros)
        }
        (PrimitiveType::Timestamptz, DataType::Timestamp(_, _)) => {
            prim!(TimestampMicrosecondType, Datum::timestamptz_micros)
        }
        (PrimitiveType::String, DataType::Utf8) => {
            let a = array.as_string_opt::<i32>()?;
            let lo = arrow_arith::aggregate::min_string(a)?;
            let hi = arrow_arith::aggregate::max_string(a)?;
            Some((Datum::string(lo), Datum::string(hi)))
        }
        (PrimitiveType::String, DataType::LargeUtf8) => {
            let a = array.as_string_opt::<i64>()?;
            let lo = arrow_arith::aggregate::min_string(a)?;
            let hi = arrow_arith::aggregate::max_string(a)?;
            Some((Datum::string(lo), Datum::string(hi)))
        }
        _ => None,
    }
}

/// Most distinct partition values a load tracks per partition field before it stops pruning
/// by them (the set is the only thing here that grows with the load).
const MAX_TRACKED_PARTITIONS: usize = 100_000;

/// Partition values the load's keys fall in, for partition fields whose source is a key
/// column: a table file of the current spec whose value is not among them holds no load key.
pub struct PartitionFilter {
    spec_id: i32,
    fields: Vec<TrackedField>,
}

struct TrackedField {
    /// Position in the spec (and in a file's partition tuple).
    position: usize,
    /// Column of the conformed batch holding the source.
    column: usize,
    function: iceberg::transform::BoxedTransformFunction,
    result_type: Type,
    values: std::collections::HashSet<iceberg::spec::Literal>,
    overflowed: bool,
}

impl PartitionFilter {
    pub fn new(spec: &iceberg::spec::PartitionSpec, keys: &KeyColumns) -> Result<Self> {
        let mut fields = Vec::new();
        for (position, field) in spec.fields().iter().enumerate() {
            let Some(k) = keys.field_ids.iter().position(|id| *id == field.source_id) else {
                continue;
            };
            if field.transform == iceberg::spec::Transform::Void {
                continue;
            }
            let source = Type::Primitive(keys.types[k].clone());
            let ctx = || format!("cannot evaluate partition transform {}", field.transform);
            fields.push(TrackedField {
                position,
                column: keys.indices[k],
                function: iceberg::transform::create_transform_function(&field.transform)
                    .context(ctx)?,
                result_type: field.transform.result_type(&source).context(ctx)?,
                values: Default::default(),
                overflowed: false,
            });
        }
        Ok(Self {
            spec_id: spec.spec_id(),
            fields,
        })
    }

    fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        for f in self.fields.iter_mut().filter(|f| !f.overflowed) {
            let transformed = f
                .function
                .transform(batch.column(f.column).clone())
                .context(|| "cannot evaluate a partition transform".into())?;
            let literals = iceberg::arrow::arrow_primitive_to_literal(&transformed, &f.result_type)
                .context(|| "cannot read partition values".into())?;
            f.values.extend(literals.into_iter().flatten());
            if f.values.len() > MAX_TRACKED_PARTITIONS {
                f.overflowed = true;
                f.values.clear();
            }
        }
        Ok(())
    }

    /// Whether a file of `spec_id` with `partition` may hold a load key.
    pub fn may_match(&self, spec_id: i32, partition: &iceberg::spec::Struct) -> bool {
        if spec_id != self.spec_id {
            return true;
        }
        self.fields.iter().filter(|f| !f.overflowed).all(|f| {
            match partition.fields().get(f.position) {
                Some(Some(value)) => f.values.contains(value),
                _ => true,
            }
        })
    }
}

/// The load side. Only what the join needs is sorted: the key columns (plus the dedup and
/// hard-delete columns when used) and each row's input position (`__floe_seq`). The rows
/// themselves wait in input order in a [`SpillQueue`] (unless the caller can read its input
/// again); the join names the winners by position and they are read back once, in order.
pub struct LoadSide {
    sorter: ExternalSorter,
    /// `None` when the rows can be read again from the input files instead.
    rows: Option<SpillQueue>,
    keys: KeyColumns,
    /// The same columns as positions in the sorted (key-only) batches.
    sorted_keys: KeyColumns,
    /// Table-schema positions of the columns the sorted batches carry, in order.
    carried: Vec<usize>,
    ranges: KeyRanges,
    partitions: Option<PartitionFilter>,
    next_seq: u64,
    schema: SchemaRef,
}

impl LoadSide {
    /// `budget` bounds the key sort and the row queue each. Without `queue_rows` only the
    /// keys are kept: the caller reads the winning rows from its input again.
    pub fn new(
        table_arrow: &SchemaRef,
        keys: KeyColumns,
        budget: usize,
        spill_dir: Option<&std::path::Path>,
        queue_rows: bool,
    ) -> Result<Self> {
        let mut carried = keys.indices.clone();
        let mut fields: Vec<Arc<Field>> = carried
            .iter()
            .map(|&i| Arc::new(table_arrow.field(i).clone()))
            .collect();
        let mut sorted_keys = keys.clone();
        sorted_keys.indices = (0..keys.indices.len()).collect();
        if let Some((i, descending)) = keys.dedup {
            sorted_keys.dedup = Some((carried.len(), descending));
            carried.push(i);
            let f = table_arrow.field(i);
            fields.push(Arc::new(Field::new(
                "__floe_dedup",
                f.data_type().clone(),
                true,
            )));
        }
        if let Some(i) = keys.hard_delete {
            sorted_keys.hard_delete = Some(carried.len());
            carried.push(i);
            let f = table_arrow.field(i);
            fields.push(Arc::new(Field::new(
                "__floe_hard_delete",
                f.data_type().clone(),
                true,
            )));
        }
        fields.push(Arc::new(Field::new(SEQ_COLUMN, DataType::UInt64, false)));
        let schema = Arc::new(ArrowSchema::new(fields));
        let mut sort_keys = sorted_keys.indices.clone();
        sort_keys.push(schema.fields().len() - 1);
        Ok(Self {
            sorter: ExternalSorter::new(schema.clone(), sort_keys, budget, spill_dir)?,
            rows: if queue_rows {
                Some(SpillQueue::new(table_arrow.clone(), budget, spill_dir)?)
            } else {
                None
            },
            keys,
            sorted_keys,
            carried,
            ranges: KeyRanges::default(),
            partitions: None,
            next_seq: 0,
            schema,
        })
    }

    /// Key columns as positions in the sorted batches (what the join reads).
    pub fn sorted_keys(&self) -> &KeyColumns {
        &self.sorted_keys
    }

    /// Adds one conformed batch; a null key is an error naming the column and the input.
    pub fn push(&mut self, batch: RecordBatch, origin: &str) -> Result<()> {
        for (k, &i) in self.keys.indices.iter().enumerate() {
            let nulls = batch.column(i).null_count();
            if nulls > 0 {
                return Err(FloeError::NullKey {
                    origin: origin.to_string(),
                    column: self.keys.names[k].clone(),
                    nulls,
                });
            }
        }
        self.ranges.update(&self.keys, &batch);
        if let Some(p) = self.partitions.as_mut() {
            p.update(&batch)?;
        }
        let n = batch.num_rows() as u64;
        let seq = UInt64Array::from_iter_values(self.next_seq..self.next_seq + n);
        self.next_seq += n;
        let mut columns: Vec<ArrayRef> = self
            .carried
            .iter()
            .map(|&i| batch.column(i).clone())
            .collect();
        columns.push(Arc::new(seq));
        let tagged = RecordBatch::try_new(self.schema.clone(), columns)
            .context(|| "cannot tag load rows".into())?;
        self.sorter.push(tagged)?;
        match self.rows.as_mut() {
            Some(rows) => rows.push(batch),
            None => Ok(()),
        }
    }

    pub fn rows(&self) -> u64 {
        self.next_seq
    }

    /// The sorted batches' schema: keys, dedup and hard-delete columns, sequence column.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn ranges(&self) -> &KeyRanges {
        &self.ranges
    }

    /// Tracks the partition values of the load's keys (see [`PartitionFilter`]).
    pub fn track_partitions(&mut self, filter: PartitionFilter) {
        if !filter.fields.is_empty() {
            self.partitions = Some(filter);
        }
    }

    pub fn take_partition_filter(&mut self) -> Option<PartitionFilter> {
        self.partitions.take()
    }

    pub fn spilled_runs(&self) -> usize {
        self.sorter.spilled_runs() + usize::from(self.rows.as_ref().is_some_and(|r| r.spilled()))
    }

    /// The sorted keys, and the load's rows in input order (if they were queued).
    pub fn finish(self) -> Result<(SortedStream, Option<QueueStream>)> {
        let rows = self.rows.map(|r| r.finish()).transpose()?;
        Ok((self.sorter.finish()?, rows))
    }
}

/// The table side: key columns of candidate files with (file, pos), sorted by key.
pub struct TableSide {
    sorter: ExternalSorter,
    schema: SchemaRef,
}

impl TableSide {
    pub fn new(
        table_arrow: &SchemaRef,
        keys: &KeyColumns,
        budget: usize,
        spill_dir: Option<&std::path::Path>,
    ) -> Result<Self> {
        let mut fields: Vec<Arc<Field>> = keys
            .indices
            .iter()
            .map(|&i| Arc::new(table_arrow.field(i).clone()))
            .collect();
        fields.push(Arc::new(Field::new(FILE_COLUMN, DataType::UInt32, false)));
        fields.push(Arc::new(Field::new(POS_COLUMN, DataType::UInt64, false)));
        let schema = Arc::new(ArrowSchema::new(fields));
        let key_cols: Vec<usize> = (0..keys.indices.len()).collect();
        Ok(Self {
            sorter: ExternalSorter::new(schema.clone(), key_cols, budget, spill_dir)?,
            schema,
        })
    }

    /// Adds key columns (already in the table's current types) of rows `positions` of `file`.
    pub fn push(
        &mut self,
        mut key_columns: Vec<ArrayRef>,
        file: u32,
        positions: UInt64Array,
    ) -> Result<()> {
        let n = positions.len();
        key_columns.push(Arc::new(UInt32Array::from(vec![file; n])));
        key_columns.push(Arc::new(positions));
        let batch = RecordBatch::try_new(self.schema.clone(), key_columns)
            .context(|| "cannot tag table keys".into())?;
        self.sorter.push(batch)
    }

    pub fn spilled_runs(&self) -> usize {
        self.sorter.spilled_runs()
    }

    pub fn finish(self) -> Result<SortedStream> {
        self.sorter.finish()
    }
}

/// A sorted stream read one key group at a time.
struct Cursor {
    stream: Option<SortedStream>,
    batch: Option<RecordBatch>,
    rows: Option<Rows>,
    pos: usize,
    key_cols: Vec<usize>,
}

impl Cursor {
    fn new(
        stream: Option<SortedStream>,
        key_cols: Vec<usize>,
        converter: &RowConverter,
    ) -> Result<Self> {
        let mut c = Self {
            stream,
            batch: None,
            rows: None,
            pos: 0,
            key_cols,
        };
        c.fill(converter)?;
        Ok(c)
    }

    /// Makes sure `batch` has a row at `pos`, loading the next batch if needed.
    fn fill(&mut self, converter: &RowConverter) -> Result<()> {
        while self.batch.as_ref().is_none_or(|b| self.pos >= b.num_rows()) {
            let Some(stream) = self.stream.as_mut() else {
                self.batch = None;
                return Ok(());
            };
            match stream.next() {
                None => {
                    self.stream = None;
                    self.batch = None;
                    self.rows = None;
                    return Ok(());
                }
                Some(batch) => {
                    let batch = batch?;
                    let cols: Vec<ArrayRef> = self
                        .key_cols
                        .iter()
                        .map(|&i| batch.column(i).clone())
                        .collect();
                    self.rows = Some(
                        converter
                            .convert_columns(&cols)
                            .context(|| "cannot encode keys".into())?,
                    );
                    self.batch = Some(batch);
                    self.pos = 0;
                }
            }
        }
        Ok(())
    }

    fn key(&self) -> Option<OwnedRow> {
        self.batch.as_ref()?;
        Some(self.rows.as_ref()?.row(self.pos).owned())
    }

    /// Takes every row whose key equals `key` (rows arrive sorted, so they are contiguous).
    fn take_group(
        &mut self,
        key: &OwnedRow,
        converter: &RowConverter,
        out: &mut Vec<(RecordBatch, usize)>,
    ) -> Result<()> {
        loop {
            let (Some(batch), Some(rows)) = (&self.batch, &self.rows) else {
                return Ok(());
            };
            if rows.row(self.pos) != key.row() {
                return Ok(());
            }
            out.push((batch.clone(), self.pos));
            self.pos += 1;
            self.fill(converter)?;
        }
    }

    /// Skips rows whose key is below `key`.
    fn skip_below(&mut self, key: &OwnedRow, converter: &RowConverter) -> Result<()> {
        loop {
            let Some(rows) = &self.rows else {
                return Ok(());
            };
            if self.batch.is_none() || rows.row(self.pos) >= key.row() {
                return Ok(());
            }
            self.pos += 1;
            self.fill(converter)?;
        }
    }
}

/// Receives the join's decisions.
pub(crate) trait JoinSink {
    /// The load row at input position `seq` is to be written.
    fn insert(&mut self, seq: u64) -> Result<()>;
    /// A table row to delete.
    fn delete(&mut self, file: u32, pos: u64) -> Result<()>;
}

/// The input position of a sorted load row (its last column).
fn seq_of((batch, row): &(RecordBatch, usize)) -> u64 {
    batch
        .column(batch.num_columns() - 1)
        .as_any()
        .downcast_ref::<UInt64Array>()
        .expect("sequence column")
        .value(*row)
}

fn is_hard_delete(column: &ArrayRef, row: usize) -> bool {
    if column.is_null(row) {
        return false;
    }
    match column.as_any().downcast_ref::<BooleanArray>() {
        Some(b) => b.value(row),
        None => true,
    }
}

/// Runs the sort-merge join of the load against the table. `keys` are the load side's
/// [`LoadSide::sorted_keys`]; the table side carries the keys first as well.
pub(crate) fn join<S: JoinSink>(
    spec: &MergeSpec,
    keys: &KeyColumns,
    load_schema: &SchemaRef,
    load: SortedStream,
    table: Option<SortedStream>,
    sink: &mut S,
) -> Result<MergeCounts> {
    let converter = keys.converter(load_schema)?;
    let table_key_cols: Vec<usize> = (0..keys.indices.len()).collect();
    let mut a = Cursor::new(Some(load), keys.indices.clone(), &converter)?;
    let mut b = Cursor::new(table, table_key_cols, &converter)?;
    let mut counts = MergeCounts::default();
    let (mut l, mut t) = (Vec::new(), Vec::new());
    while let Some(key) = a.key() {
        l.clear();
        t.clear();
        a.take_group(&key, &converter, &mut l)?;
        b.skip_below(&key, &converter)?;
        b.take_group(&key, &converter, &mut t)?;
        let hard = |(batch, row): &(RecordBatch, usize)| {
            keys.hard_delete
                .is_some_and(|c| is_hard_delete(batch.column(c), *row))
        };
        let delete_all = |sink: &mut S, t: &[(RecordBatch, usize)]| -> Result<()> {
            for (batch, row) in t {
                let file = batch
                    .column(batch.num_columns() - 2)
                    .as_any()
                    .downcast_ref::<UInt32Array>()
                    .expect("file column");
                let pos = batch
                    .column(batch.num_columns() - 1)
                    .as_any()
                    .downcast_ref::<UInt64Array>()
                    .expect("pos column");
                sink.delete(file.value(*row), pos.value(*row))?;
            }
            Ok(())
        };
        match spec.strategy {
            MergeStrategy::DeleteInsert => {
                delete_all(sink, &t)?;
                counts.rows_deleted += t.len() as u64;
                for row in l.iter().filter(|r| !hard(r)) {
                    sink.insert(seq_of(row))?;
                    counts.rows_inserted += 1;
                }
            }
            MergeStrategy::Upsert | MergeStrategy::InsertOnly => {
                let winner = pick_winner(&l, keys, &spec.duplicates)?;
                if hard(winner) {
                    delete_all(sink, &t)?;
                    counts.rows_deleted += t.len() as u64;
                } else if spec.strategy == MergeStrategy::Upsert {
                    delete_all(sink, &t)?;
                    sink.insert(seq_of(winner))?;
                    if t.is_empty() {
                        counts.rows_inserted += 1;
                    } else {
                        counts.rows_updated += 1;
                        // More than one live row for a key (written by another tool): all go.
                        counts.rows_deleted += t.len() as u64 - 1;
                    }
                } else if t.is_empty() {
                    sink.insert(seq_of(winner))?;
                    counts.rows_inserted += 1;
                }
            }
        }
    }
    Ok(counts)
}

fn key_description((batch, row): &(RecordBatch, usize), keys: &KeyColumns) -> String {
    keys.indices
        .iter()
        .zip(&keys.names)
        .map(|(&i, name)| {
            let v = arrow_cast::display::array_value_to_string(batch.column(i), *row)
                .unwrap_or_default();
            format!("{name}={v}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn pick_winner<'a>(
    group: &'a [(RecordBatch, usize)],
    keys: &KeyColumns,
    policy: &DuplicateKeys,
) -> Result<&'a (RecordBatch, usize)> {
    // Rows of a group arrive in input order (the sort key ends with the sequence number).
    let last = group.last().expect("non-empty group");
    if group.len() == 1 {
        return Ok(last);
    }
    match (policy, keys.dedup) {
        (DuplicateKeys::Error, _) => Err(FloeError::DuplicateKey {
            rows: group.len(),
            key: key_description(last, keys),
        }),
        (DuplicateKeys::SortBy { .. }, Some((col, descending))) => {
            let mut best = &group[0];
            for candidate in &group[1..] {
                let cmp = make_comparator(
                    candidate.0.column(col).as_ref(),
                    best.0.column(col).as_ref(),
                    SortOptions {
                        descending: false,
                        nulls_first: true,
                    },
                )
                .context(|| "cannot compare the dedup column".into())?;
                let order = cmp(candidate.1, best.1);
                let better = if descending {
                    order.is_gt()
                } else {
                    order.is_lt()
                };
                // Ties go to the later row.
                if better || order.is_eq() {
                    best = candidate;
                }
            }
            Ok(best)
        }
        _ => Ok(last),
    }
}
