//! The sort-merge join: both sides sorted by key, read one key group at a time; marked keys
//! (only delete, only keys), the strategy, hard deletes and the duplicate-key policy decide
//! every row. Decisions go to a [`JoinSink`].

use arrow_array::{
    Array, ArrayRef, BooleanArray, RecordBatch, UInt8Array, UInt32Array, UInt64Array,
};
use arrow_ord::ord::make_comparator;
use arrow_row::{OwnedRow, RowConverter, Rows};
use arrow_schema::{SchemaRef, SortOptions};

use super::keys::KeyColumns;
use super::load_side::Marker;
use super::spec::{DuplicateKeys, MergeCounts, MergeSpec, MergeStrategy};
use crate::error::{FloeError, Result, ResultExt};
use crate::spill::SortedStream;

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

/// Marked keys apply first: when the group has a key that only deletes, the key's table rows
/// leave and the load's rows (if any) then merge into a table without them; with only-keys
/// in use, a group without one loses its load rows. Returns whether load rows are left.
fn markers_first<S: JoinSink>(
    keys: &KeyColumns,
    l: &mut Vec<(RecordBatch, usize)>,
    t: &mut Vec<(RecordBatch, usize)>,
    sink: &mut S,
    counts: &mut MergeCounts,
) -> Result<bool> {
    let Some(c) = keys.marker else {
        return Ok(true);
    };
    let (mut delete, mut only) = (false, false);
    l.retain(|(batch, row)| match marker(batch.column(c), *row) {
        m if m == Marker::Delete as u8 => {
            delete = true;
            false
        }
        m if m == Marker::Only as u8 => {
            only = true;
            false
        }
        _ => true,
    });
    if delete {
        delete_group(sink, t)?;
        counts.rows_deleted += t.len() as u64;
        t.clear();
    }
    if keys.only_marked && !only {
        l.clear();
    }
    Ok(!l.is_empty())
}

/// Deletes every table row of a key group.
fn delete_group<S: JoinSink>(sink: &mut S, t: &[(RecordBatch, usize)]) -> Result<()> {
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
}

/// A marker column's value.
fn marker(column: &ArrayRef, row: usize) -> u8 {
    column
        .as_any()
        .downcast_ref::<UInt8Array>()
        .expect("marker column")
        .value(row)
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
        if !markers_first(keys, &mut l, &mut t, sink, &mut counts)? {
            continue;
        }
        let hard = |(batch, row): &(RecordBatch, usize)| {
            keys.hard_delete
                .is_some_and(|c| is_hard_delete(batch.column(c), *row))
        };
        match spec.strategy {
            MergeStrategy::DeleteInsert => {
                delete_group(sink, &t)?;
                counts.rows_deleted += t.len() as u64;
                for row in l.iter().filter(|r| !hard(r)) {
                    sink.insert(seq_of(row))?;
                    counts.rows_inserted += 1;
                }
            }
            MergeStrategy::Upsert | MergeStrategy::InsertOnly => {
                let winner = pick_winner(&l, keys, &spec.duplicates)?;
                if hard(winner) {
                    delete_group(sink, &t)?;
                    counts.rows_deleted += t.len() as u64;
                } else if spec.strategy == MergeStrategy::Upsert {
                    delete_group(sink, &t)?;
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, BooleanArray, Int64Array, RecordBatch, UInt64Array};
    use arrow_schema::{DataType, Field, Schema as ArrowSchema, SchemaRef};
    use iceberg::spec::{NestedField, PrimitiveType, Schema, Type};

    use super::*;
    use crate::merge::{KeyMarkers, LoadSide, MergeMode, TableSide};

    /// Records the join's decisions.
    #[derive(Default, Debug)]
    struct Decisions {
        inserts: Vec<u64>,
        deletes: Vec<(u32, u64)>,
    }

    impl JoinSink for Decisions {
        fn insert(&mut self, seq: u64) -> Result<()> {
            self.inserts.push(seq);
            Ok(())
        }
        fn delete(&mut self, file: u32, pos: u64) -> Result<()> {
            self.deletes.push((file, pos));
            Ok(())
        }
    }

    /// `id long` (the key), `v long`, `gone boolean` (the hard-delete column).
    fn schemas() -> (Schema, SchemaRef) {
        let long = || Box::new(Type::Primitive(PrimitiveType::Long));
        let iceberg = Schema::builder()
            .with_fields(vec![
                Arc::new(NestedField::required(1, "id", *long())),
                Arc::new(NestedField::optional(2, "v", *long())),
                Arc::new(NestedField::optional(
                    3,
                    "gone",
                    Type::Primitive(PrimitiveType::Boolean),
                )),
            ])
            .build()
            .unwrap();
        let arrow = Arc::new(ArrowSchema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("v", DataType::Int64, true),
            Field::new("gone", DataType::Boolean, true),
        ]));
        (iceberg, arrow)
    }

    fn spec(strategy: MergeStrategy, duplicates: DuplicateKeys) -> MergeSpec {
        MergeSpec {
            keys: vec!["id".into()],
            strategy,
            mode: MergeMode::default(),
            hard_delete_column: Some("gone".into()),
            duplicates,
            memory_limit: 1 << 20,
        }
    }

    /// Load rows `(id, v, gone)` in input order; table rows `(file, pos, id)`.
    fn run(
        spec: &MergeSpec,
        load: &[(i64, i64, bool)],
        table: &[(u32, u64, i64)],
    ) -> Result<(MergeCounts, Decisions)> {
        run_with_deletes(spec, load, None, table)
    }

    /// As [`run`], with keys that only delete and keys the load's rows must have (`id` only)
    /// pushed after the load.
    fn run_with_deletes(
        spec: &MergeSpec,
        load: &[(i64, i64, bool)],
        delete_keys: Option<&[i64]>,
        table: &[(u32, u64, i64)],
    ) -> Result<(MergeCounts, Decisions)> {
        run_with_markers(spec, load, delete_keys, None, table)
    }

    fn run_with_markers(
        spec: &MergeSpec,
        load: &[(i64, i64, bool)],
        delete_keys: Option<&[i64]>,
        only_keys: Option<&[i64]>,
        table: &[(u32, u64, i64)],
    ) -> Result<(MergeCounts, Decisions)> {
        let (iceberg, arrow) = schemas();
        let keys = KeyColumns::resolve(spec, &iceberg, "t").unwrap();
        let markers = KeyMarkers {
            delete: delete_keys.is_some(),
            only: only_keys.is_some(),
        };
        let mut side = LoadSide::new(&arrow, keys.clone(), 1 << 20, None, false, markers).unwrap();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(load.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter_values(load.iter().map(|r| r.1))),
            Arc::new(BooleanArray::from_iter(load.iter().map(|r| Some(r.2)))),
        ];
        side.push(RecordBatch::try_new(arrow.clone(), columns).unwrap(), "mem")
            .unwrap();
        for (ids, marker) in [(delete_keys, Marker::Delete), (only_keys, Marker::Only)] {
            let Some(ids) = ids else { continue };
            let only_id = Arc::new(ArrowSchema::new(vec![arrow.field(0).clone()]));
            let ids: ArrayRef = Arc::new(Int64Array::from(ids.to_vec()));
            let batch = RecordBatch::try_new(only_id, vec![ids]).unwrap();
            let mut id_keys = keys.clone();
            id_keys.indices = vec![0];
            side.push_marked(&id_keys, &batch, "keys", marker).unwrap();
        }
        let (sorted_keys, load_schema) = (side.sorted_keys().clone(), side.schema().clone());
        let (sorted_load, _) = side.finish().unwrap();
        let mut table_side = TableSide::new(&arrow, &keys, 1 << 20, None).unwrap();
        for &(file, pos, id) in table {
            let ids: ArrayRef = Arc::new(Int64Array::from(vec![id]));
            table_side
                .push(vec![ids], file, UInt64Array::from(vec![pos]))
                .unwrap();
        }
        let sorted_table = (!table.is_empty()).then(|| table_side.finish().unwrap());
        let mut decisions = Decisions::default();
        let counts = join(
            spec,
            &sorted_keys,
            &load_schema,
            sorted_load,
            sorted_table,
            &mut decisions,
        )?;
        decisions.inserts.sort();
        decisions.deletes.sort();
        Ok((counts, decisions))
    }

    const TABLE: &[(u32, u64, i64)] = &[(0, 5, 2), (1, 0, 3), (1, 1, 4)];

    #[test]
    fn upsert_replaces_matches_and_inserts_the_rest() {
        let spec = spec(MergeStrategy::Upsert, DuplicateKeys::LastWins);
        let load = [(1, 0, false), (2, 0, false), (3, 0, false)];
        let (counts, d) = run(&spec, &load, TABLE).unwrap();
        assert_eq!(d.inserts, [0, 1, 2]);
        assert_eq!(d.deletes, [(0, 5), (1, 0)]);
        assert_eq!((counts.rows_inserted, counts.rows_updated), (1, 2));
        assert_eq!(counts.rows_deleted, 0);
    }

    #[test]
    fn insert_only_keeps_the_table_row() {
        let spec = spec(MergeStrategy::InsertOnly, DuplicateKeys::LastWins);
        let (counts, d) = run(&spec, &[(1, 0, false), (2, 0, false)], TABLE).unwrap();
        assert_eq!(d.inserts, [0]);
        assert!(d.deletes.is_empty());
        assert_eq!((counts.rows_inserted, counts.rows_updated), (1, 0));
    }

    #[test]
    fn delete_insert_deletes_every_match_and_inserts_every_load_row() {
        let spec = spec(MergeStrategy::DeleteInsert, DuplicateKeys::LastWins);
        let load = [(2, 0, false), (2, 1, false), (1, 0, false)];
        let (counts, d) = run(&spec, &load, TABLE).unwrap();
        assert_eq!(d.inserts, [0, 1, 2]);
        assert_eq!(d.deletes, [(0, 5)]);
        assert_eq!((counts.rows_inserted, counts.rows_deleted), (3, 1));
    }

    #[test]
    fn duplicate_keys_follow_the_policy() {
        let load = [(1, 10, false), (1, 5, false), (1, 7, false)];
        let last = spec(MergeStrategy::Upsert, DuplicateKeys::LastWins);
        assert_eq!(run(&last, &load, &[]).unwrap().1.inserts, [2]);
        let sort_by = |descending| DuplicateKeys::SortBy {
            column: "v".into(),
            descending,
        };
        let greatest = spec(MergeStrategy::Upsert, sort_by(true));
        assert_eq!(run(&greatest, &load, &[]).unwrap().1.inserts, [0]);
        let smallest = spec(MergeStrategy::Upsert, sort_by(false));
        assert_eq!(run(&smallest, &load, &[]).unwrap().1.inserts, [1]);
        let refuse = spec(MergeStrategy::Upsert, DuplicateKeys::Error);
        let err = run(&refuse, &load, &[]).unwrap_err();
        assert!(
            matches!(&err, FloeError::DuplicateKey { rows: 3, key } if key == "id=1"),
            "{err}"
        );
    }

    #[test]
    fn a_hard_delete_removes_the_row_and_writes_nothing() {
        let spec = spec(MergeStrategy::Upsert, DuplicateKeys::LastWins);
        let (counts, d) = run(&spec, &[(2, 0, true), (9, 0, true)], TABLE).unwrap();
        assert!(d.inserts.is_empty());
        assert_eq!(d.deletes, [(0, 5)]);
        assert_eq!((counts.rows_deleted, counts.rows_inserted), (1, 0));
    }

    #[test]
    fn delete_only_keys_remove_table_rows_and_never_write_or_win() {
        // Table ids 2, 3, 4; keys 3, 4 and 9 only delete; the load has 1, 3 (twice) and 2.
        let load = [(1, 0, false), (3, 5, false), (3, 1, false), (2, 0, false)];
        let deletes = Some(&[3, 4, 9][..]);
        let upsert = spec(MergeStrategy::Upsert, DuplicateKeys::Error);
        let err = run_with_deletes(&upsert, &load, deletes, TABLE).unwrap_err();
        assert!(
            matches!(err, FloeError::DuplicateKey { rows: 2, .. }),
            "{err}"
        );
        let upsert = spec(MergeStrategy::Upsert, DuplicateKeys::LastWins);
        let (counts, d) = run_with_deletes(&upsert, &load, deletes, TABLE).unwrap();
        assert_eq!(d.inserts, [0, 2, 3]);
        assert_eq!(d.deletes, [(0, 5), (1, 0), (1, 1)]);
        // 3 and 4 deleted by key; 2 updated; 1 and 3 then inserted into a table without 3.
        assert_eq!(
            (
                counts.rows_deleted,
                counts.rows_updated,
                counts.rows_inserted
            ),
            (2, 1, 2)
        );
        let insert_only = spec(MergeStrategy::InsertOnly, DuplicateKeys::LastWins);
        let (_, d) = run_with_deletes(&insert_only, &load, deletes, TABLE).unwrap();
        assert_eq!(d.inserts, [0, 2]);
        assert_eq!(d.deletes, [(1, 0), (1, 1)]);
        let delete_insert = spec(MergeStrategy::DeleteInsert, DuplicateKeys::LastWins);
        let (counts, d) = run_with_deletes(&delete_insert, &[], deletes, TABLE).unwrap();
        assert!(d.inserts.is_empty());
        assert_eq!(d.deletes, [(1, 0), (1, 1)]);
        assert_eq!((counts.rows_deleted, counts.rows_inserted), (2, 0));
    }

    #[test]
    fn only_keys_leave_out_the_load_rows_of_other_keys() {
        // Table ids 2, 3, 4; the load has 1, 2, 3 and a hard delete of 4; only 2 and 4 may
        // merge, and 3 is deleted by key.
        let load = [(1, 0, false), (2, 0, false), (3, 0, false), (4, 0, true)];
        let delete_insert = spec(MergeStrategy::DeleteInsert, DuplicateKeys::LastWins);
        let (counts, d) =
            run_with_markers(&delete_insert, &load, Some(&[3]), Some(&[2, 4, 9]), TABLE).unwrap();
        assert_eq!(d.inserts, [1]);
        assert_eq!(d.deletes, [(0, 5), (1, 0), (1, 1)]);
        assert_eq!((counts.rows_deleted, counts.rows_inserted), (3, 1));
        let upsert = spec(MergeStrategy::Upsert, DuplicateKeys::LastWins);
        let (_, d) = run_with_markers(&upsert, &load, None, Some(&[]), TABLE).unwrap();
        assert!(d.inserts.is_empty() && d.deletes.is_empty());
    }

    #[test]
    fn several_live_rows_of_one_key_all_go() {
        let spec = spec(MergeStrategy::Upsert, DuplicateKeys::LastWins);
        let table = [(0, 1, 7), (2, 3, 7)];
        let (counts, d) = run(&spec, &[(7, 0, false)], &table).unwrap();
        assert_eq!(d.inserts, [0]);
        assert_eq!(d.deletes, [(0, 1), (2, 3)]);
        assert_eq!((counts.rows_updated, counts.rows_deleted), (1, 1));
    }
}
