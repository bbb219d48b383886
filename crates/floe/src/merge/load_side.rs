//! The load side of the join: the load's keys, sorted (spilling past the budget), and its rows
//! in input order when they cannot be read again.

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch, UInt8Array, UInt64Array};
use arrow_schema::{DataType, Field, Schema as ArrowSchema, SchemaRef};

use super::SEQ_COLUMN;
use super::keys::KeyColumns;
use super::prune::{KeyRanges, PartitionFilter};
use crate::error::{FloeError, Result, ResultExt};
use crate::spill::{ExternalSorter, QueueStream, SortedStream, SpillQueue};

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
    /// Marked keys pushed so far (delete and only).
    marked: u64,
    deleted_keys: u64,
    schema: SchemaRef,
}

/// Keys the load side sorts besides the load's rows, each row of them marked as one kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyMarkers {
    /// Keys that only delete: every table row with one of them leaves first.
    pub delete: bool,
    /// The only keys the load's rows may have: rows with other keys are left out.
    pub only: bool,
}

/// What a marked key row is (the marker column's value; load rows have 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Marker {
    Delete = 1,
    Only = 2,
}

/// Sequence numbers of marked keys start here: above any load row's, never written.
const MARKED_SEQ: u64 = 1 << 63;

impl LoadSide {
    /// `budget` bounds the key sort and the row queue each. Without `queue_rows` only the
    /// keys are kept: the caller reads the winning rows from its input again. With `markers`
    /// the sorted batches carry a marker column for the kinds of keys pushed besides the rows.
    pub fn new(
        table_arrow: &SchemaRef,
        keys: KeyColumns,
        budget: usize,
        spill_dir: Option<&std::path::Path>,
        queue_rows: bool,
        markers: KeyMarkers,
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
        if markers.delete || markers.only {
            sorted_keys.marker = Some(fields.len());
            fields.push(Arc::new(Field::new(
                "__floe_marker",
                DataType::UInt8,
                false,
            )));
        }
        sorted_keys.only_marked = markers.only;
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
            marked: 0,
            deleted_keys: 0,
            schema,
        })
    }

    /// Key columns as positions in the sorted batches (what the join reads).
    pub fn sorted_keys(&self) -> &KeyColumns {
        &self.sorted_keys
    }

    /// Adds one conformed batch; a null key is an error naming the column and the input.
    pub fn push(&mut self, batch: RecordBatch, origin: &str) -> Result<()> {
        no_null_keys(&self.keys, &batch, origin)?;
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
        if self.sorted_keys.marker.is_some() {
            columns.push(Arc::new(UInt8Array::from(vec![0; n as usize])));
        }
        columns.push(Arc::new(seq));
        let tagged = RecordBatch::try_new(self.schema.clone(), columns)
            .context(|| "cannot tag load rows".into())?;
        self.sorter.push(tagged)?;
        match self.rows.as_mut() {
            Some(rows) => rows.push(batch),
            None => Ok(()),
        }
    }

    /// Adds keys of one [`Marker`] kind: keys that only delete (every table row with one of
    /// them leaves; partition values are then no longer tracked, as these rows carry none),
    /// or the only keys the load's rows may have. No row is written for them. `keys` names
    /// the key columns' positions in `batch` (conformed to the key columns' types); the side
    /// must have been made with that kind in its [`KeyMarkers`].
    pub fn push_marked(
        &mut self,
        keys: &KeyColumns,
        batch: &RecordBatch,
        origin: &str,
        marker: Marker,
    ) -> Result<()> {
        debug_assert!(self.sorted_keys.marker.is_some(), "made without markers");
        no_null_keys(keys, batch, origin)?;
        let n = batch.num_rows();
        if marker == Marker::Delete {
            self.ranges.update(keys, batch);
            self.partitions = None;
            self.deleted_keys += n as u64;
        }
        let mut columns: Vec<ArrayRef> = keys
            .indices
            .iter()
            .map(|&i| batch.column(i).clone())
            .collect();
        for field in &self.schema.fields()[columns.len()..self.schema.fields().len() - 2] {
            columns.push(arrow_array::new_null_array(field.data_type(), n));
        }
        columns.push(Arc::new(UInt8Array::from(vec![marker as u8; n])));
        let first = MARKED_SEQ + self.marked;
        self.marked += n as u64;
        columns.push(Arc::new(UInt64Array::from_iter_values(
            first..first + n as u64,
        )));
        let tagged = RecordBatch::try_new(self.schema.clone(), columns)
            .context(|| "cannot tag marked keys".into())?;
        self.sorter.push(tagged)
    }

    /// Load rows pushed (marked keys not counted).
    pub fn rows(&self) -> u64 {
        self.next_seq
    }

    /// Delete-only keys pushed.
    pub fn deleted_keys(&self) -> u64 {
        self.deleted_keys
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
        if !filter.is_empty() {
            self.partitions = Some(filter);
        }
    }

    /// The partition values of the load's keys, when tracked.
    pub fn partition_filter(&self) -> Option<&PartitionFilter> {
        self.partitions.as_ref()
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

/// A null key is an error naming the column and the input.
fn no_null_keys(keys: &KeyColumns, batch: &RecordBatch, origin: &str) -> Result<()> {
    for (k, &i) in keys.indices.iter().enumerate() {
        let nulls = batch.column(i).null_count();
        if nulls > 0 {
            return Err(FloeError::NullKey {
                origin: origin.to_string(),
                column: keys.names[k].clone(),
                nulls,
            });
        }
    }
    Ok(())
}
