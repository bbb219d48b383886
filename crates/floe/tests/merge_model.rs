//! Property test: random tables and random merge loads against a reference model.
//!
//! Each case starts from a random table (possibly with duplicate keys), then runs several
//! merges (random strategy and mode, duplicate keys, hard deletes, nulls in non-key columns,
//! keys that only delete, only-keys); after every load floe's own read of the table must equal the model
//! exactly, and so must the rows `MatchBuilder` finds for the load's keys. The Python interop
//! suite runs the same model with pyiceberg and DuckDB reading.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::Arc;

use arrow_array::{Array, BooleanArray, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use floe::ops::merge_spec::{MergeMode, MergeStrategy};
use floe::ops::{AppendBuilder, MatchBuilder, MergeBuilder};
use floe::{Catalog, CatalogConfig, Source, parse_table_ident};
use futures::TryStreamExt;
use proptest::prelude::*;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Row {
    id: i64,
    v: String,
    n: Option<i64>,
    deleted: Option<bool>,
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("v", DataType::Utf8, true),
        Field::new("n", DataType::Int64, true),
        Field::new("deleted", DataType::Boolean, true),
    ]))
}

fn batch(rows: &[Row]) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.id))),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.v.as_str()),
            )),
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.n))),
            Arc::new(BooleanArray::from_iter(rows.iter().map(|r| r.deleted))),
        ],
    )
    .unwrap()
}

fn source(rows: &[Row]) -> Source {
    // Split into a few batches so groups of one key span batch boundaries.
    let batches: Vec<RecordBatch> = rows.chunks(7).map(batch).collect();
    let batches = if batches.is_empty() {
        vec![batch(&[])]
    } else {
        batches
    };
    Source::from_stream(
        schema(),
        "model-load",
        futures::stream::iter(batches.into_iter().map(Ok::<_, Infallible>)),
    )
}

fn model_merge(table: &mut Vec<Row>, load: &[Row], strategy: MergeStrategy) {
    let mut order = Vec::new();
    let mut groups: HashMap<i64, Vec<&Row>> = HashMap::new();
    for r in load {
        if !groups.contains_key(&r.id) {
            order.push(r.id);
        }
        groups.entry(r.id).or_default().push(r);
    }
    let mut removed: HashSet<i64> = HashSet::new();
    let mut inserted = Vec::new();
    for id in order {
        let group = &groups[&id];
        let live = table.iter().any(|r| r.id == id);
        match strategy {
            MergeStrategy::DeleteInsert => {
                removed.insert(id);
                inserted.extend(
                    group
                        .iter()
                        .filter(|r| r.deleted != Some(true))
                        .map(|r| (*r).clone()),
                );
            }
            MergeStrategy::Upsert | MergeStrategy::InsertOnly => {
                let winner = group.last().unwrap();
                if winner.deleted == Some(true) {
                    removed.insert(id);
                } else if strategy == MergeStrategy::Upsert {
                    removed.insert(id);
                    inserted.push((*winner).clone());
                } else if !live {
                    inserted.push((*winner).clone());
                }
            }
        }
    }
    table.retain(|r| !removed.contains(&r.id));
    table.extend(inserted);
}

/// Keys (to delete, or the only keys rows may have) as a source of the key column alone.
fn delete_keys(ids: &[i64]) -> Source {
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(Int64Array::from(ids.to_vec()))],
    )
    .unwrap();
    Source::from_stream(
        schema,
        "model-delete-keys",
        futures::stream::iter([Ok::<_, Infallible>(batch)]),
    )
}

/// (id, v) of the live rows `MatchBuilder` finds for `ids`, sorted.
async fn matched(cat: &Catalog, ids: &[i64], dir: &std::path::Path) -> Vec<(i64, String)> {
    let out = dir.join("matched.parquet");
    MatchBuilder::new(
        cat,
        parse_table_ident("m.model").unwrap(),
        vec!["id".into()],
    )
    .with_columns(vec!["v".into(), "id".into()])
    .write_parquet(delete_keys(ids), &out)
    .await
    .unwrap();
    let file = std::fs::File::open(&out).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    for b in reader {
        let b = b.unwrap();
        let v = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        let id = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
        rows.extend((0..b.num_rows()).map(|i| (id.value(i), v.value(i).to_string())));
    }
    rows.sort();
    rows
}

async fn read_back(cat: &Catalog) -> Vec<Row> {
    let state = cat
        .load_table(&parse_table_ident("m.model").unwrap())
        .await
        .unwrap()
        .unwrap();
    let scan = state.table().unwrap().scan().build().unwrap();
    let batches: Vec<RecordBatch> = scan.to_arrow().await.unwrap().try_collect().await.unwrap();
    let mut rows = Vec::new();
    for b in batches {
        let id = b
            .column_by_name("id")
            .unwrap()
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .clone();
        let v = b
            .column_by_name("v")
            .unwrap()
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap()
            .clone();
        let n = b
            .column_by_name("n")
            .unwrap()
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .clone();
        let d = b
            .column_by_name("deleted")
            .unwrap()
            .as_any()
            .downcast_ref::<BooleanArray>()
            .unwrap()
            .clone();
        for i in 0..b.num_rows() {
            rows.push(Row {
                id: id.value(i),
                v: v.value(i).to_string(),
                n: n.is_valid(i).then(|| n.value(i)),
                deleted: d.is_valid(i).then(|| d.value(i)),
            });
        }
    }
    rows.sort();
    rows
}

fn row() -> impl Strategy<Value = Row> {
    (
        0i64..25,
        "[a-z]{1,3}",
        proptest::option::of(0i64..100),
        prop_oneof![Just(None), Just(Some(false)), Just(Some(true))],
    )
        .prop_map(|(id, v, n, deleted)| Row { id, v, n, deleted })
}

fn strategy() -> impl Strategy<Value = MergeStrategy> {
    prop_oneof![
        Just(MergeStrategy::Upsert),
        Just(MergeStrategy::InsertOnly),
        Just(MergeStrategy::DeleteInsert)
    ]
}

fn mode() -> impl Strategy<Value = MergeMode> {
    prop_oneof![Just(MergeMode::CopyOnWrite), Just(MergeMode::MergeOnRead)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn merges_match_the_model(
        initial in proptest::collection::vec(row(), 0..30),
        loads in proptest::collection::vec((
            proptest::collection::vec(row(), 0..20),
            strategy(),
            mode(),
            proptest::option::of(proptest::collection::vec(0i64..25, 0..6)),
            proptest::option::of(proptest::collection::vec(0i64..25, 0..15)),
        ), 1..5),
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let cat = Catalog::open(CatalogConfig::embedded(dir.path()).unwrap()).await.unwrap();
            let table = parse_table_ident("m.model").unwrap();
            let mut model: Vec<Row> = initial.iter().map(|r| Row { deleted: None, ..r.clone() }).collect();
            AppendBuilder::new(&cat, table.clone()).execute(source(&model)).await.unwrap();
            for (step, (load, strategy, mode, gone, only)) in loads.iter().enumerate() {
                let out = MergeBuilder::new(&cat, table.clone(), vec!["id".into()])
                    .with_strategy(*strategy)
                    .with_mode(*mode)
                    .with_hard_delete_column(Some("deleted".into()))
                    .with_delete_keys(gone.as_deref().map(delete_keys))
                    .with_only_keys(only.as_deref().map(delete_keys))
                    .execute(source(load))
                    .await
                    .unwrap();
                // Keys that only delete apply first; the load's rows with an allowed key then
                // merge into what is left.
                model.retain(|r| !gone.as_ref().is_some_and(|g| g.contains(&r.id)));
                let allowed: Vec<Row> = load.iter().filter(|r| only.as_ref().is_none_or(|o| o.contains(&r.id))).cloned().collect();
                model_merge(&mut model, &allowed, *strategy);
                model.sort();
                let exists = cat.load_table(&table).await.unwrap().is_some();
                let got = if exists { read_back(&cat).await } else { vec![] };
                prop_assert_eq!(&got, &model, "step {} ({:?}, {:?}, delete {:?}, only {:?}): {}", step, strategy, mode, gone, only, out.message);
                if exists {
                    let ids: Vec<i64> = load.iter().map(|r| r.id).chain([99]).collect();
                    let mut want: Vec<(i64, String)> = model.iter().filter(|r| ids.contains(&r.id)).map(|r| (r.id, r.v.clone())).collect();
                    want.sort();
                    prop_assert_eq!(matched(&cat, &ids, dir.path()).await, want, "match after step {}", step);
                }
            }
            Ok(())
        })?;
    }
}
