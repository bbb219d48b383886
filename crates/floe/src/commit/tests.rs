//! The commit layer against the embedded catalog: attempts re-planned over newer states, the
//! load id found after a lost race, a schema that changed under the load, and what one staged
//! attempt removes for each operation.

use std::collections::HashSet;
use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};

use super::*;
use crate::catalog::TableState;
use crate::ledger::FileLedger;
use crate::ops::AppendBuilder;
use crate::testing::{batch, catalog, ids, source};
use crate::{Catalog, FloeError, LoadOptions, Source, parse_table_ident};

#[tokio::test]
async fn stale_replace_replans_against_the_new_state() {
    let dir = tempfile::tempdir().unwrap();
    let cat = catalog(dir.path()).await;
    let table = parse_table_ident("ns.replace").unwrap();
    AppendBuilder::new(&cat, table.clone())
        .execute(source(vec![batch(0..10)]))
        .await
        .unwrap();
    let stale = cat.load_table(&table).await.unwrap().unwrap();
    // Another writer appends after we planned.
    AppendBuilder::new(&cat, table.clone())
        .execute(source(vec![batch(10..20)]))
        .await
        .unwrap();

    // A replace planned on the stale state must still remove the concurrent append's files.
    let file = write_data_file(&cat, &table, batch(100..105)).await;
    let committed = commit_load(
        &cat,
        stale,
        "replace-1",
        LoadOperation::Replace,
        FileChanges::added(file),
        None,
        5,
    )
    .await
    .unwrap();
    assert_eq!(committed.attempts, 2, "first attempt must conflict");
    assert_eq!(committed.files_removed, 2);
    assert_eq!(
        ids(&cat, "ns.replace").await,
        (100..105).collect::<Vec<_>>()
    );
}

/// Writes one data file (and its manifest) for `table` without committing it.
async fn write_data_file(
    cat: &Catalog,
    table: &iceberg::TableIdent,
    rows: RecordBatch,
) -> AddedManifests {
    use crate::write::{FileSettings, TableWriter, WriteOptions};
    let state = cat.load_table(table).await.unwrap().unwrap();
    let settings =
        FileSettings::resolve(state.metadata.properties(), &WriteOptions::default()).unwrap();
    let conformer =
        crate::conform::Conformer::new("t", state.metadata.current_schema().clone()).unwrap();
    let ledger = FileLedger::default();
    let added = AddedFiles::new("t", &state.metadata, state.file_io.clone(), ledger.clone())
        .unwrap()
        .into_sink();
    let mut writer = TableWriter::new(
        "t",
        state.metadata.clone(),
        state.file_io.clone(),
        &uuid::Uuid::new_v4().to_string(),
        &settings,
        added.clone(),
        ledger,
    )
    .unwrap();
    let conformed = conformer
        .conform(&crate::SourceBatch {
            batch: rows,
            origin: Arc::from("mem"),
        })
        .unwrap();
    writer.write(conformed).await.unwrap();
    writer.close().await.unwrap();
    let manifests = added.lock().await.finish().await.unwrap();
    assert_eq!(manifests.files(), 1);
    manifests
}

#[tokio::test]
async fn commit_finds_a_load_id_that_landed_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let cat = catalog(dir.path()).await;
    let table = parse_table_ident("ns.idem").unwrap();
    AppendBuilder::new(&cat, table.clone())
        .execute(source(vec![batch(0..10)]))
        .await
        .unwrap();
    let stale = cat.load_table(&table).await.unwrap().unwrap();
    let landed = AppendBuilder::new(&cat, table.clone())
        .with_options(LoadOptions::default().with_load_id("run-7"))
        .execute(source(vec![batch(10..20)]))
        .await
        .unwrap();
    let file = write_data_file(&cat, &table, batch(10..20)).await;
    let again = commit_load(
        &cat,
        stale,
        "run-7",
        LoadOperation::Append,
        FileChanges::added(file),
        None,
        5,
    )
    .await
    .unwrap();
    assert!(again.already_committed);
    assert_eq!(Some(again.snapshot_id), landed.snapshot_id);
    let state = cat.load_table(&table).await.unwrap().unwrap();
    assert_eq!(find_load(&state.metadata, "run-7"), landed.snapshot_id);
    assert_eq!(ids(&cat, "ns.idem").await, (0..20).collect::<Vec<_>>());
}

#[tokio::test]
async fn data_is_never_committed_against_a_schema_that_changed_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let cat = catalog(dir.path()).await;
    let table = parse_table_ident("ns.schema_race").unwrap();
    AppendBuilder::new(&cat, table.clone())
        .execute(source(vec![batch(0..10)]))
        .await
        .unwrap();
    let stale = cat.load_table(&table).await.unwrap().unwrap();
    let file = write_data_file(&cat, &table, batch(10..20)).await;
    // Meanwhile another load adds a column.
    let wider = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("extra", DataType::Utf8, true),
    ]));
    let rows = RecordBatch::try_new(
        wider.clone(),
        vec![
            Arc::new(Int64Array::from(vec![100])),
            Arc::new(StringArray::from(vec!["x"])),
            Arc::new(StringArray::from(vec!["y"])),
        ],
    )
    .unwrap();
    let evolved = Source::from_stream(
        wider,
        "wider",
        futures::stream::iter(vec![Ok::<_, Infallible>(rows)]),
    );
    let out = AppendBuilder::new(&cat, table.clone())
        .execute(evolved)
        .await
        .unwrap();
    assert_eq!(out.schema_changes.len(), 1);
    let err = commit_load(
        &cat,
        stale,
        "late",
        LoadOperation::Append,
        FileChanges::added(file),
        None,
        5,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, FloeError::Conflict { .. }), "{err}");
    assert!(err.to_string().contains("schema changed"), "{err}");
    assert_eq!(
        ids(&cat, "ns.schema_race").await,
        (0..10).chain(100..101).collect::<Vec<_>>()
    );
}

/// A table with one data file per batch, and the state after them.
async fn table_of(cat: &Catalog, name: &str, batches: Vec<RecordBatch>) -> TableState {
    let table = parse_table_ident(name).unwrap();
    for b in batches {
        AppendBuilder::new(cat, table.clone())
            .execute(source(vec![b]))
            .await
            .unwrap();
    }
    cat.load_table(&table).await.unwrap().unwrap()
}

#[tokio::test]
async fn each_operation_stages_the_removals_it_stands_for() {
    let dir = tempfile::tempdir().unwrap();
    let cat = catalog(dir.path()).await;
    let state = table_of(&cat, "ns.ops", vec![batch(0..10), batch(10..20)]).await;
    let table = parse_table_ident("ns.ops").unwrap();
    let live = crate::merge::table_files::live_state(&state, |_, _| true, Vec::new(), None)
        .await
        .unwrap();
    let one_live: HashSet<String> = [live.files[0].path.clone()].into();
    let cases = [
        (LoadOperation::Append, HashSet::new(), 0, Operation::Append),
        (
            LoadOperation::Replace,
            HashSet::new(),
            2,
            Operation::Overwrite,
        ),
        (LoadOperation::Merge, one_live, 1, Operation::Overwrite),
        (LoadOperation::Merge, HashSet::new(), 0, Operation::Append),
    ];
    for (operation, removed, files_removed, snapshot_operation) in cases {
        let changes = FileChanges {
            added: write_data_file(&cat, &table, batch(100..101)).await,
            added_deletes: Vec::new(),
            removed,
        };
        let mut producer = SnapshotProducer::new(&state, "l", operation, changes, None)
            .await
            .unwrap();
        let staged = producer.stage(&state, 1).await.unwrap();
        assert_eq!(staged.files_removed, files_removed, "{operation:?}");
        assert_eq!(staged.operation, snapshot_operation, "{operation:?}");
        assert_eq!(staged.snapshot_id, producer.snapshot_id());
        producer.discard_attempt(&state, &staged).await;
        assert!(
            staged.attempt_files.iter().all(|f| !Path::new(f).exists()),
            "a discarded attempt leaves no file"
        );
    }
}

#[tokio::test]
async fn a_merge_whose_rewritten_file_is_gone_is_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let cat = catalog(dir.path()).await;
    let state = table_of(&cat, "ns.gone", vec![batch(0..10)]).await;
    let table = parse_table_ident("ns.gone").unwrap();
    let changes = FileChanges {
        added: write_data_file(&cat, &table, batch(100..101)).await,
        added_deletes: Vec::new(),
        removed: ["/elsewhere/removed-meanwhile.parquet".to_string()].into(),
    };
    let mut producer = SnapshotProducer::new(&state, "m", LoadOperation::Merge, changes, None)
        .await
        .unwrap();
    let err = producer.stage(&state, 1).await.unwrap_err();
    assert!(matches!(err, FloeError::Conflict { .. }), "{err}");
    assert!(
        err.to_string().contains("removed by another commit"),
        "{err}"
    );
}

/// A compaction planned on `stale` (both files of 0..20 rewritten into one) committed after
/// `meanwhile` changed the table.
async fn compact_after(
    name: &str,
    meanwhile: LoadOperation,
) -> (Catalog, Result<Committed>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cat = catalog(dir.path()).await;
    let stale = table_of(&cat, name, vec![batch(0..10), batch(10..20)]).await;
    let table = parse_table_ident(name).unwrap();
    let live = crate::merge::table_files::live_state(&stale, |_, _| true, Vec::new(), None)
        .await
        .unwrap();
    let removed: HashSet<String> = live.files.iter().map(|f| f.path.clone()).collect();
    let rewritten = write_data_file(&cat, &table, batch(0..20)).await;
    match meanwhile {
        LoadOperation::Append => {
            AppendBuilder::new(&cat, table.clone())
                .execute(source(vec![batch(100..105)]))
                .await
                .unwrap();
        }
        _ => {
            crate::ops::ReplaceBuilder::new(&cat, table.clone())
                .only_partitions_in_load(true)
                .execute(source(vec![batch(100..105)]))
                .await
                .unwrap();
        }
    }
    let changes = FileChanges {
        added: rewritten,
        added_deletes: Vec::new(),
        removed,
    };
    let committed = commit_load(
        &cat,
        stale,
        "compact-1",
        LoadOperation::Compact,
        changes,
        None,
        5,
    )
    .await;
    (cat, committed, dir)
}

#[tokio::test]
async fn a_compaction_rebases_over_an_append() {
    let (cat, committed, _dir) = compact_after("ns.compact_append", LoadOperation::Append).await;
    let committed = committed.unwrap();
    assert_eq!(
        committed.attempts, 2,
        "the first attempt conflicts with the append"
    );
    assert_eq!(committed.files_removed, 2);
    assert_eq!(committed.operation, Some(Operation::Replace));
    let expected: Vec<i64> = (0..20).chain(100..105).collect();
    assert_eq!(ids(&cat, "ns.compact_append").await, expected);
}

#[tokio::test]
async fn a_compaction_never_undoes_another_writers_rewrite() {
    let (cat, committed, _dir) =
        compact_after("ns.compact_replace", LoadOperation::ReplacePartitions).await;
    let err = committed.unwrap_err();
    assert!(matches!(err, FloeError::Conflict { .. }), "{err}");
    assert_eq!(
        ids(&cat, "ns.compact_replace").await,
        (100..105).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn delete_files_go_into_manifests_of_at_most_a_thousand_entries() {
    use iceberg::TableUpdate;
    use iceberg::spec::{DataContentType, DataFileBuilder, DataFileFormat, Struct};

    let dir = tempfile::tempdir().unwrap();
    let cat = catalog(dir.path()).await;
    let state = table_of(&cat, "ns.dels", vec![batch(0..10)]).await;
    let table = parse_table_ident("ns.dels").unwrap();
    let deletes = (0..2_500)
        .map(|i| AddedDelete {
            spec_id: 0,
            file: DataFileBuilder::default()
                .content(DataContentType::PositionDeletes)
                .file_path(format!(
                    "{}/data/delete-{i}.parquet",
                    state.metadata.location()
                ))
                .file_format(DataFileFormat::Parquet)
                .partition(Struct::empty())
                .partition_spec_id(0)
                .record_count(1)
                .file_size_in_bytes(100)
                .build()
                .unwrap(),
        })
        .collect();
    let changes = FileChanges {
        added: write_data_file(&cat, &table, batch(100..101)).await,
        added_deletes: deletes,
        removed: HashSet::new(),
    };
    let mut producer = SnapshotProducer::new(&state, "d", LoadOperation::Merge, changes, None)
        .await
        .unwrap();
    let staged = producer.stage(&state, 1).await.unwrap();
    let snapshot = staged
        .updates
        .iter()
        .find_map(|u| match u {
            TableUpdate::AddSnapshot { snapshot } => Some(snapshot.clone()),
            _ => None,
        })
        .unwrap();
    let list = state
        .table()
        .unwrap()
        .manifest_list_reader(&Arc::new(snapshot))
        .load()
        .await
        .unwrap();
    let deletes: Vec<u32> = list
        .entries()
        .iter()
        .filter(|m| m.content == iceberg::spec::ManifestContentType::Deletes)
        .map(|m| m.added_files_count.unwrap_or(0))
        .collect();
    assert_eq!(deletes, vec![1000, 1000, 500]);
}
