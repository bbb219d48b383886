//! Writing a partitioned table in bounded memory, however many partitions a load touches.
//!
//! While a load touches at most `max_open_files` partitions, every batch is split and each part
//! goes to its partition's open writer (fan-out). The first batch that would need more open
//! files switches the load to clustering: open files are finished, and every further batch is
//! tagged with its partition values and pushed through an [`ExternalSorter`] (memory budget,
//! spills sorted runs to disk). At close the sorted stream arrives partition by partition, so
//! one writer at a time is open and each partition gets full-size files.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_row::{RowConverter, SortField};
use arrow_schema::{Field, Schema as ArrowSchema};
use iceberg::arrow::{PROJECTED_PARTITION_VALUE_COLUMN, RecordBatchPartitionSplitter};
use iceberg::spec::{DataFile, PartitionKey, PartitionSpecRef, SchemaRef, Struct};
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};

use super::partition_values::PartitionValues;
use super::{FileSettings, PartitionWriter, PartitionWriterBuilder};
use crate::commit::AddedFilesSink;
use crate::error::{Result, ResultExt};
use crate::spill::ExternalSorter;

const PARTITION_COLUMN: &str = "__floe_partition";

/// iceberg-rust 0.10.1 turns a partition tuple whose values are all null (a void transform,
/// or a null source value) into an empty struct, which manifests cannot record; give it its
/// fields back.
pub(super) fn complete_partition_key(key: PartitionKey, fields: usize) -> PartitionKey {
    if key.data().fields().len() == fields {
        return key;
    }
    let data: Struct = std::iter::repeat_n(None, fields).collect();
    key.copy_with_data(data)
}

pub(super) struct PartitionedWriter {
    splitter: RecordBatchPartitionSplitter,
    values: PartitionValues,
    partition_fields: usize,
    max_open: usize,
    writers: HashMap<Struct, PartitionWriter>,
    sorter: Option<ExternalSorter>,
    /// Memory the clustering sort buffers before it spills a run.
    sort_bytes: usize,
    /// Runs the clustering sort spilled (counted when it finishes).
    spilled_runs: usize,
    spill_dir: Option<std::path::PathBuf>,
    /// For errors: `table {name}`.
    table: String,
}

impl PartitionedWriter {
    pub(super) fn new(
        table: &str,
        schema: SchemaRef,
        spec: PartitionSpecRef,
        settings: &FileSettings,
    ) -> Result<Self> {
        let ctx = || format!("table {table}: cannot set up writers for its partition spec");
        Ok(Self {
            splitter: RecordBatchPartitionSplitter::try_new_with_precomputed_values(
                schema.clone(),
                spec.clone(),
            )
            .context(ctx)?,
            values: PartitionValues::try_new(&spec, &schema).context(ctx)?,
            partition_fields: spec.fields().len(),
            max_open: settings.max_open_files,
            writers: HashMap::new(),
            sorter: None,
            sort_bytes: settings.cluster_sort_bytes,
            spilled_runs: 0,
            spill_dir: settings.spill_dir.clone(),
            table: table.to_string(),
        })
    }

    /// What went wrong where, for errors.
    fn ctx(&self, what: &'static str) -> impl Fn() -> String + use<> {
        let table = self.table.clone();
        move || format!("table {table}: {what}")
    }

    fn partition_values(&self, batch: &RecordBatch) -> Result<arrow_array::ArrayRef> {
        let ctx = self.ctx("cannot compute partition values");
        self.values.calculate(batch.columns()).context(&ctx)
    }

    fn split(&self, batch: &RecordBatch) -> Result<Vec<(PartitionKey, RecordBatch)>> {
        let values = self.partition_values(batch)?;
        self.split_by(batch, values)
    }

    /// `batch` split by its partition `values`.
    fn split_by(
        &self,
        batch: &RecordBatch,
        values: arrow_array::ArrayRef,
    ) -> Result<Vec<(PartitionKey, RecordBatch)>> {
        let ctx = self.ctx("cannot split a batch by partition");
        // The splitter finds the values by name, first match: in front, they win over a table
        // column that happens to be called `_partition` too.
        let mut fields: Vec<Arc<Field>> = vec![Arc::new(Field::new(
            PROJECTED_PARTITION_VALUE_COLUMN,
            values.data_type().clone(),
            true,
        ))];
        fields.extend(batch.schema().fields().iter().cloned());
        let mut columns = vec![values];
        columns.extend(batch.columns().iter().cloned());
        let tagged =
            RecordBatch::try_new(Arc::new(ArrowSchema::new(fields)), columns).context(&ctx)?;
        let data: Vec<usize> = (1..=batch.num_columns()).collect();
        self.splitter
            .split(&tagged)
            .context(&ctx)?
            .into_iter()
            .map(|(key, part)| {
                let part = part.project(&data).context(&ctx)?;
                Ok((complete_partition_key(key, self.partition_fields), part))
            })
            .collect()
    }

    /// Whether `values` hold more than `limit` distinct partitions: counted on their row
    /// encoding before any split, since splitting a batch into one part per row (a load of
    /// one row per partition) costs a hundred times the batch.
    fn more_partitions_than(values: &arrow_array::ArrayRef, limit: usize) -> Result<bool> {
        let ctx = || "cannot compare partition values".to_string();
        let converter =
            RowConverter::new(vec![SortField::new(values.data_type().clone())]).context(ctx)?;
        let rows = converter
            .convert_columns(std::slice::from_ref(values))
            .context(ctx)?;
        let mut seen = std::collections::HashSet::new();
        Ok(rows
            .iter()
            .any(|row| seen.insert(row) && seen.len() > limit))
    }

    fn push_to_sorter(&mut self, batch: RecordBatch, values: arrow_array::ArrayRef) -> Result<()> {
        let ctx = self.ctx("cannot tag a batch with its partition values");
        let tagged = with_column(&batch, PARTITION_COLUMN, values).context(&ctx)?;
        if self.sorter.is_none() {
            let key = tagged.num_columns() - 1;
            let sorter = ExternalSorter::new(
                tagged.schema(),
                vec![key],
                self.sort_bytes,
                self.spill_dir.as_deref(),
            )?;
            self.sorter = Some(sorter);
        }
        self.sorter.as_mut().expect("sorter").push(tagged)
    }

    pub(super) async fn write(
        &mut self,
        builder: &PartitionWriterBuilder,
        sink: &AddedFilesSink,
        batch: RecordBatch,
    ) -> Result<()> {
        let table = self.table.clone();
        let ctx = || format!("table {table}: writing data files failed");
        let values = self.partition_values(&batch)?;
        if self.sorter.is_some() {
            return self.push_to_sorter(batch, values);
        }
        let too_many = Self::more_partitions_than(&values, self.max_open)?;
        let parts = if too_many {
            Vec::new()
        } else {
            self.split_by(&batch, values.clone())?
        };
        let new = parts
            .iter()
            .filter(|(k, _)| !self.writers.contains_key(k.data()))
            .count();
        if too_many || self.writers.len() + new > self.max_open {
            tracing::info!(
                open = self.writers.len(),
                cap = self.max_open,
                "the load touches more partitions than --max-open-files; clustering through a bounded sort"
            );
            for (_, mut w) in self.writers.drain() {
                hand_over(sink, w.close().await.context(ctx)?).await?;
            }
            return self.push_to_sorter(batch, values);
        }
        for (key, part) in parts {
            let data = key.data().clone();
            if !self.writers.contains_key(&data) {
                let w = builder.build(Some(key)).await.context(ctx)?;
                self.writers.insert(data.clone(), w);
            }
            self.writers
                .get_mut(&data)
                .expect("writer")
                .write(part)
                .await
                .context(ctx)?;
        }
        Ok(())
    }

    /// Runs the clustering sort spilled to disk (known once it has finished).
    pub(super) fn spilled_runs(&self) -> usize {
        self.spilled_runs + self.sorter.as_ref().map_or(0, |s| s.spilled_runs())
    }

    /// Finishes every file; each finished file goes to `sink` as soon as it is closed.
    pub(super) async fn close(
        &mut self,
        builder: &PartitionWriterBuilder,
        sink: &AddedFilesSink,
    ) -> Result<()> {
        let table = self.table.clone();
        let ctx = || format!("table {table}: finishing data files failed");
        for (_, mut w) in self.writers.drain() {
            hand_over(sink, w.close().await.context(ctx)?).await?;
        }
        let Some(sorter) = self.sorter.take() else {
            return Ok(());
        };
        self.spilled_runs = sorter.spilled_runs();
        let sorted = sorter.finish()?;
        // Sorted by partition: a partition never comes back once the next one starts.
        let mut current: Option<(Struct, PartitionWriter)> = None;
        let mut converter: Option<RowConverter> = None;
        for tagged in sorted {
            let tagged = tagged?;
            let tag = tagged.column(tagged.num_columns() - 1).clone();
            let converter = match &mut converter {
                Some(c) => c,
                None => converter.insert(
                    RowConverter::new(vec![SortField::new(tag.data_type().clone())])
                        .context(ctx)?,
                ),
            };
            let rows = converter.convert_columns(&[tag]).context(ctx)?;
            let batch = tagged
                .project(&(0..tagged.num_columns() - 1).collect::<Vec<_>>())
                .context(ctx)?;
            // Walk the runs of equal partition values in order.
            let mut start = 0;
            for end in 1..=batch.num_rows() {
                if end < batch.num_rows() && rows.row(end) == rows.row(start) {
                    continue;
                }
                let run = batch.slice(start, end - start);
                start = end;
                for (key, part) in self.split(&run)? {
                    if current.as_ref().is_none_or(|(k, _)| k != key.data()) {
                        if let Some((_, mut w)) = current.take() {
                            hand_over(sink, w.close().await.context(ctx)?).await?;
                        }
                        let data = key.data().clone();
                        current = Some((data, builder.build(Some(key)).await.context(ctx)?));
                    }
                    let writer = &mut current.as_mut().expect("writer").1;
                    writer.write(part).await.context(ctx)?;
                }
            }
        }
        if let Some((_, mut w)) = current.take() {
            hand_over(sink, w.close().await.context(ctx)?).await?;
        }
        Ok(())
    }
}

/// `batch` with one more column at the end.
fn with_column(
    batch: &RecordBatch,
    name: &str,
    column: arrow_array::ArrayRef,
) -> std::result::Result<RecordBatch, arrow_schema::ArrowError> {
    let mut fields: Vec<Arc<Field>> = batch.schema().fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new(name, column.data_type().clone(), true)));
    let mut columns = batch.columns().to_vec();
    columns.push(column);
    RecordBatch::try_new(Arc::new(ArrowSchema::new(fields)), columns)
}

/// Passes finished files on to the manifest sink.
async fn hand_over(sink: &AddedFilesSink, files: Vec<DataFile>) -> Result<()> {
    sink.lock().await.add_all(files).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, Int32Array, StringArray, StructArray};

    fn values(ints: Vec<Option<i32>>, strings: Vec<Option<&str>>) -> ArrayRef {
        Arc::new(StructArray::from(vec![
            (
                Arc::new(Field::new("a", arrow_schema::DataType::Int32, true)),
                Arc::new(Int32Array::from(ints)) as ArrayRef,
            ),
            (
                Arc::new(Field::new("b", arrow_schema::DataType::Utf8, true)),
                Arc::new(StringArray::from(strings)) as ArrayRef,
            ),
        ]))
    }

    #[test]
    fn partitions_are_counted_before_any_split() {
        // Distinct tuples: (1, x), (1, y), (None, x), (2, None); (1, x) comes back twice.
        let v = values(
            vec![Some(1), Some(1), None, Some(1), Some(2), Some(1)],
            vec![Some("x"), Some("y"), Some("x"), Some("x"), None, Some("x")],
        );
        let more = |limit| PartitionedWriter::more_partitions_than(&v, limit).unwrap();
        assert!(more(0));
        assert!(more(3));
        assert!(!more(4));
        assert!(!more(16));
    }
}
