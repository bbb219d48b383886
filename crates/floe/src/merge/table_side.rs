//! The table side of the join: the key columns of the candidate files, each row tagged with
//! its file and position, sorted by key (spilling past the budget).

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch, UInt32Array, UInt64Array};
use arrow_schema::{DataType, Field, Schema as ArrowSchema, SchemaRef};

use super::keys::KeyColumns;
use super::{FILE_COLUMN, POS_COLUMN};
use crate::error::{Result, ResultExt};
use crate::spill::{ExternalSorter, SortedStream};

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

/// The candidate files' keys, sorted: only the key columns are read, and rows earlier delete
/// files already hide are skipped. Candidate `i` is file number `i` in the join's deletes.
/// Returns the sorted keys and how many runs the sort spilled.
pub async fn scan_candidates(
    file_io: &iceberg::io::FileIO,
    live: &super::table_files::LiveState<super::candidates::CandidateFiles>,
    schema: &iceberg::spec::Schema,
    mut side: TableSide,
    keys: &KeyColumns,
    progress: &crate::progress::Progress,
) -> Result<(SortedStream, usize)> {
    let (candidates, deleted) = (&live.files, &live.deleted);
    for idx in 0..candidates.len() {
        progress.check_cancelled()?;
        progress.stage_step();
        let candidate = candidates.get(idx)?;
        let path = candidate.path.as_str();
        let deleted = deleted.get(path)?;
        let mut reader = super::table_files::DataFileReader::open(
            file_io,
            path,
            schema,
            Some(&keys.field_ids),
            super::table_files::READ_BATCH_ROWS,
        )
        .await?;
        while let Some(item) = reader.next().await {
            let (first, batch) = item?;
            let positions = UInt64Array::from_iter_values(first..first + batch.num_rows() as u64);
            let (columns, positions) = match &deleted {
                None => (batch.columns().to_vec(), positions),
                Some(d) => live_rows(&batch, positions, d)?,
            };
            side.push(columns, idx as u32, positions)?;
        }
    }
    let spilled = side.spilled_runs();
    Ok((side.finish()?, spilled))
}

/// The columns and positions of the rows of `batch` that `deleted` does not hide.
fn live_rows(
    batch: &RecordBatch,
    positions: UInt64Array,
    deleted: &roaring::RoaringTreemap,
) -> Result<(Vec<ArrayRef>, UInt64Array)> {
    let keep = arrow_array::BooleanArray::from_iter(
        positions
            .values()
            .iter()
            .map(|p| Some(!deleted.contains(*p))),
    );
    let ctx = || "cannot filter deleted rows".to_string();
    let kept = arrow_select::filter::filter_record_batch(batch, &keep).context(ctx)?;
    let pos = arrow_select::filter::filter(&positions, &keep).context(ctx)?;
    let pos = pos
        .as_any()
        .downcast_ref::<UInt64Array>()
        .expect("positions stay u64")
        .clone();
    Ok((kept.columns().to_vec(), pos))
}
