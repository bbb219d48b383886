//! Library-level tests of the load pipeline and commit layer against the embedded catalog.

use std::collections::HashSet;
use std::path::Path;

use arrow_array::RecordBatch;
use floe::ops::{AppendBuilder, ReplaceBuilder};
use floe::testing::{batch, catalog, ids, schema, source};
use floe::{FloeError, LoadOptions, Source, parse_table_ident};

fn data_files(dir: &Path) -> HashSet<String> {
    fn walk(dir: &Path, out: &mut HashSet<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "parquet") {
                out.insert(p.display().to_string());
            }
        }
    }
    let mut out = HashSet::new();
    walk(dir, &mut out);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_all_land_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let cat = catalog(dir.path()).await;
    let table = parse_table_ident("ns.concurrent").unwrap();
    AppendBuilder::new(&cat, table.clone())
        .execute(source(vec![batch(0..10)]))
        .await
        .unwrap();

    let mut tasks = Vec::new();
    for w in 1..=4i64 {
        let path = dir.path().to_path_buf();
        let table = table.clone();
        tasks.push(tokio::spawn(async move {
            let cat = catalog(&path).await;
            let rows = w * 1000..w * 1000 + 100;
            AppendBuilder::new(&cat, table)
                .with_options(LoadOptions::default().with_max_commit_attempts(20))
                .execute(source(vec![batch(rows)]))
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        let summary = t.await.unwrap();
        assert_eq!(summary.rows_written, 100);
    }
    let mut expected: Vec<i64> = (0..10).collect();
    for w in 1..=4i64 {
        expected.extend(w * 1000..w * 1000 + 100);
    }
    assert_eq!(ids(&cat, "ns.concurrent").await, expected);
    let state = cat.load_table(&table).await.unwrap().unwrap();
    assert_eq!(state.metadata.snapshots().count(), 5);
}

#[tokio::test]
async fn append_carries_existing_manifests_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let cat = catalog(dir.path()).await;
    let table = parse_table_ident("ns.history").unwrap();
    for i in 0..3 {
        AppendBuilder::new(&cat, table.clone())
            .execute(source(vec![batch(i * 10..i * 10 + 10)]))
            .await
            .unwrap();
    }
    let state = cat.load_table(&table).await.unwrap().unwrap();
    let t = state.table().unwrap();
    let manifests = |snapshot| {
        let t = t.clone();
        async move {
            let list = t.manifest_list_reader(&snapshot).load().await.unwrap();
            list.entries()
                .iter()
                .map(|m| m.manifest_path.clone())
                .collect::<Vec<_>>()
        }
    };
    let current = state.metadata.current_snapshot().unwrap().clone();
    let parent = state
        .metadata
        .snapshot_by_id(current.parent_snapshot_id().unwrap())
        .unwrap()
        .clone();
    let now = manifests(current).await;
    let before = manifests(parent).await;
    assert_eq!(now.len(), before.len() + 1, "one new manifest per append");
    for path in &before {
        assert!(now.contains(path), "existing manifest {path} was rewritten");
    }
}

#[tokio::test]
async fn a_failing_source_commits_nothing_and_leaves_no_files() {
    let dir = tempfile::tempdir().unwrap();
    let cat = catalog(dir.path()).await;
    let table = parse_table_ident("ns.fail").unwrap();
    AppendBuilder::new(&cat, table.clone())
        .execute(source(vec![batch(0..10)]))
        .await
        .unwrap();
    let before = cat.load_table(&table).await.unwrap().unwrap();
    let files_before = data_files(dir.path());

    let items: Vec<Result<RecordBatch, String>> = vec![
        Ok(batch(10..20)),
        Ok(batch(20..30)),
        Err("disk on fire".to_string()),
    ];
    let failing = Source::from_stream(schema(), "flaky-stream", futures::stream::iter(items));
    let err = ReplaceBuilder::new(&cat, table.clone())
        .execute(failing)
        .await
        .unwrap_err();
    assert!(matches!(err, FloeError::InputRead { .. }), "{err}");
    assert!(err.to_string().contains("flaky-stream") && err.to_string().contains("disk on fire"));

    let after = cat.load_table(&table).await.unwrap().unwrap();
    assert_eq!(after.metadata_location, before.metadata_location);
    assert_eq!(data_files(dir.path()), files_before);
    assert_eq!(ids(&cat, "ns.fail").await, (0..10).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_missing_table_is_created_by_the_loads_single_commit() {
    let dir = tempfile::tempdir().unwrap();
    let cat = catalog(dir.path()).await;
    let table = parse_table_ident("a.b.fresh").unwrap();
    let out = AppendBuilder::new(&cat, table.clone())
        .execute(source(vec![batch(0..5), batch(5..9)]))
        .await
        .unwrap();
    assert!(out.table_created);
    let state = cat.load_table(&table).await.unwrap().unwrap();
    assert_eq!(
        state.metadata.format_version(),
        iceberg::spec::FormatVersion::V2
    );
    assert_eq!(state.metadata.snapshots().count(), 1);
    // The table's first metadata version already has the snapshot: no empty intermediate state.
    assert!(state.metadata.metadata_log().is_empty());
    assert_eq!(ids(&cat, "a.b.fresh").await, (0..9).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merges_spill_past_the_memory_limit_and_stay_exact() {
    use floe::ops::MergeBuilder;
    use floe::ops::merge_spec::MergeMode;
    let dir = tempfile::tempdir().unwrap();
    let cat = catalog(dir.path()).await;
    let table = parse_table_ident("ns.bigmerge").unwrap();
    let base: Vec<RecordBatch> = (0..20)
        .map(|i| batch(i * 10_000..(i + 1) * 10_000))
        .collect();
    AppendBuilder::new(&cat, table.clone())
        .execute(source(base))
        .await
        .unwrap();
    for (mode, offset) in [
        (MergeMode::CopyOnWrite, 150_000i64),
        (MergeMode::MergeOnRead, 240_000),
    ] {
        // 100k load rows, half of them matching: upsert in both modes with a 1 MiB budget.
        let load: Vec<RecordBatch> = (0..10)
            .map(|i| batch(offset + i * 10_000..offset + (i + 1) * 10_000))
            .collect();
        let out = MergeBuilder::new(&cat, table.clone(), vec!["id".into()])
            .with_mode(mode)
            .with_memory_limit(1 << 20)
            .execute(source(load))
            .await
            .unwrap();
        let counts = out.merge.unwrap();
        assert!(
            counts.spill_runs > 2,
            "{mode:?}: expected spilled sorts, got {counts:?}"
        );
        assert_eq!(
            counts.rows_inserted + counts.rows_updated,
            100_000,
            "{counts:?}"
        );
    }
    let got = ids(&cat, "ns.bigmerge").await;
    assert_eq!(
        got,
        (0..340_000).collect::<Vec<_>>(),
        "every key exactly once"
    );
}

/// Rows of [`schema`] whose names are `width` bytes long.
fn wide_batch(ids: std::ops::Range<i64>, width: usize) -> RecordBatch {
    let names: Vec<String> = ids.clone().map(|i| format!("{i:0width$}")).collect();
    RecordBatch::try_new(
        schema(),
        vec![
            std::sync::Arc::new(arrow_array::Int64Array::from_iter_values(ids)),
            std::sync::Arc::new(arrow_array::StringArray::from(names)),
        ],
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merges_memory_limit_bounds_the_clustering_of_rewritten_rows() {
    use floe::ops::MergeBuilder;
    let dir = tempfile::tempdir().unwrap();
    let cat = catalog(dir.path()).await;
    let table = parse_table_ident("ns.clustered").unwrap();
    // 40 partitions of wide rows (~6 MB); the keys alone stay far below the sorts' budget.
    AppendBuilder::new(&cat, table.clone())
        .with_options(LoadOptions::default().with_partition_by("bucket(40, id)"))
        .execute(source(vec![wide_batch(0..10_000, 600)]))
        .await
        .unwrap();
    // 40 keys in more partitions than the 16 open files: a copy-on-write rewrites their files
    // through the clustering sort, which gets a quarter of the 4 MiB limit and spills.
    let out = MergeBuilder::new(&cat, table.clone(), vec!["id".into()])
        .with_memory_limit(4 << 20)
        .execute(source(vec![batch(0..40)]))
        .await
        .unwrap();
    let counts = out.merge.unwrap();
    assert_eq!(counts.rows_updated, 40, "{counts:?}");
    assert!(counts.files_rewritten > 16, "{counts:?}");
    assert!(
        counts.spill_runs > 0,
        "the clustering did not spill: {counts:?}"
    );
    assert_eq!(
        ids(&cat, "ns.clustered").await,
        (0..10_000).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn files_past_one_manifest_roll_into_several_in_one_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let cat = catalog(dir.path()).await;
    let table = parse_table_ident("ns.many").unwrap();
    // Identity on the key: one file per row, more files than one manifest takes.
    let rows = floe::testing::MANIFEST_ENTRIES as i64 + 200;
    let out = AppendBuilder::new(&cat, table.clone())
        .with_options(LoadOptions::default().with_partition_by("identity(id)"))
        .execute(source(vec![batch(0..rows / 2), batch(rows / 2..rows)]))
        .await
        .unwrap();
    assert_eq!(out.files_added, rows as u64);
    let state = cat.load_table(&table).await.unwrap().unwrap();
    let snapshot = state.metadata.current_snapshot().unwrap();
    assert_eq!(state.metadata.snapshots().count(), 1);
    let summary = &snapshot.summary().additional_properties;
    assert_eq!(summary["added-data-files"], rows.to_string());
    assert_eq!(summary["changed-partition-count"], rows.to_string());
    let list = state
        .table()
        .unwrap()
        .manifest_list_reader(snapshot)
        .load()
        .await
        .unwrap();
    assert_eq!(
        list.entries().len(),
        2,
        "two manifests: a full one and the rest"
    );
    assert_eq!(ids(&cat, "ns.many").await, (0..rows).collect::<Vec<_>>());

    // Replacing two partitions removes exactly their files, wherever their manifest is.
    let out = ReplaceBuilder::new(&cat, table.clone())
        .only_partitions_in_load(true)
        .execute(source(vec![batch(5..6), batch(rows - 1..rows)]))
        .await
        .unwrap();
    assert_eq!((out.files_added, out.files_removed), (2, 2));
    assert_eq!(ids(&cat, "ns.many").await, (0..rows).collect::<Vec<_>>());
}

#[tokio::test]
async fn small_manifests_are_merged_once_there_are_many() {
    let dir = tempfile::tempdir().unwrap();
    let cat = catalog(dir.path()).await;
    let table = parse_table_ident("ns.history").unwrap();
    let manifests = |state: &floe::catalog::TableState| {
        let state = state.clone();
        async move {
            let snapshot = state.metadata.current_snapshot().unwrap().clone();
            state
                .table()
                .unwrap()
                .manifest_list_reader(&snapshot)
                .load()
                .await
                .unwrap()
                .entries()
                .len()
        }
    };
    let mut most = 0;
    for n in 0..130i64 {
        AppendBuilder::new(&cat, table.clone())
            .execute(source(vec![batch(n * 10..n * 10 + 10)]))
            .await
            .unwrap();
        let state = cat.load_table(&table).await.unwrap().unwrap();
        most = most.max(manifests(&state).await);
    }
    // One manifest per append until 100 small ones are carried over, then they merge.
    assert!(most <= 101, "the manifest list grew to {most}");
    let state = cat.load_table(&table).await.unwrap().unwrap();
    assert!(manifests(&state).await < 40);
    assert_eq!(state.metadata.snapshots().count(), 130);
    assert_eq!(ids(&cat, "ns.history").await, (0..1300).collect::<Vec<_>>());
}
