//! Distributed loads through the library: planned once, written by several workers (here
//! tasks of one process that share nothing but the plan's JSON), committed once.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use floe::ops::LoadOperation;
use floe::ops::distributed::{
    LoadPlan, Planned, StagedFiles, commit_staged, discard_staged, plan_load, write_staged,
};
use floe::testing::{batch, catalog, ids, schema, source};
use floe::{Catalog, FloeError, LoadOptions, parse_table_ident};

fn parquet_files(dir: &Path) -> HashSet<String> {
    let mut out = HashSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "parquet") {
                out.insert(p.display().to_string());
            }
        }
    }
    out
}

async fn planned(cat: &Catalog, table: &str, operation: LoadOperation, load_id: &str) -> Planned {
    let options = LoadOptions::default().with_load_id(load_id);
    plan_load(
        cat,
        &parse_table_ident(table).unwrap(),
        operation,
        &options,
        schema(),
    )
    .await
    .unwrap()
}

fn ready(planned: Planned) -> LoadPlan {
    match planned {
        Planned::Ready(plan) => *plan,
        Planned::Skipped(s) => panic!("skipped: {}", s.message),
    }
}

/// Each worker gets the plan as JSON, as a remote process would.
async fn workers(plan: &LoadPlan, shares: &[std::ops::Range<i64>]) -> Vec<StagedFiles> {
    let text = plan.to_json().unwrap();
    let mut tasks = Vec::new();
    for rows in shares.iter().cloned() {
        let text = text.clone();
        tasks.push(tokio::spawn(async move {
            let plan = LoadPlan::from_json(&text).unwrap();
            write_staged(
                &plan,
                &LoadOptions::default(),
                source(vec![batch(rows)]),
                None,
            )
            .await
            .unwrap()
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_write_and_one_commit_lands_everything() {
    let dir = tempfile::tempdir().unwrap();
    let cat = catalog(dir.path()).await;
    let plan = ready(planned(&cat, "ns.d", LoadOperation::Append, "job-1").await);
    let staged = workers(&plan, &[0..100, 100..250, 250..260]).await;
    assert!(
        cat.load_table(&parse_table_ident("ns.d").unwrap())
            .await
            .unwrap()
            .is_none(),
        "nothing exists before the commit"
    );
    let summary = commit_staged(&cat, &plan, &LoadOptions::default(), &staged)
        .await
        .unwrap();
    assert_eq!(summary.rows_written, 260);
    assert_eq!(summary.files_added, 3);
    assert!(summary.table_created);
    assert_eq!(ids(&cat, "ns.d").await, (0..260).collect::<Vec<_>>());
    let state = cat
        .load_table(&parse_table_ident("ns.d").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.metadata.snapshots().count(), 1);
    // The workers' own manifests are gone: the snapshot lists the files in its own.
    for m in staged.iter().flat_map(|s| &s.manifests) {
        assert!(!Path::new(m).exists(), "{m}");
    }
    // The same load id again is planned as skipped: no worker needs to run.
    assert!(matches!(
        plan_fresh(&cat, "job-1").await,
        Planned::Skipped(_)
    ));
    // Replace through workers: only the new rows remain, one more snapshot.
    let plan = ready(planned(&cat, "ns.d", LoadOperation::Replace, "job-2").await);
    let staged = workers(&plan, &[1000..1010, 1010..1020]).await;
    let summary = commit_staged(&cat, &plan, &LoadOptions::default(), &staged)
        .await
        .unwrap();
    assert_eq!(summary.files_removed, 3);
    assert_eq!(ids(&cat, "ns.d").await, (1000..1020).collect::<Vec<_>>());
}

async fn plan_fresh(cat: &Catalog, load_id: &str) -> Planned {
    planned(cat, "ns.d", LoadOperation::Append, load_id).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_that_do_not_fit_the_plan_are_refused_and_nothing_lands() {
    let dir = tempfile::tempdir().unwrap();
    let cat = catalog(dir.path()).await;
    floe::ops::AppendBuilder::new(&cat, parse_table_ident("ns.r").unwrap())
        .execute(source(vec![batch(0..5)]))
        .await
        .unwrap();
    let before = parquet_files(dir.path());
    let plan = ready(planned(&cat, "ns.r", LoadOperation::Append, "a").await);
    let other = ready(planned(&cat, "ns.r", LoadOperation::Append, "b").await);
    let foreign = workers(&other, &[20..25, 25..30]).await;
    let options = LoadOptions::default();
    // Each refused commit consumes the results it was given (their manifests are deleted
    // either way): every case gets fresh ones.
    let staged = workers(&plan, &[10..15, 15..20]).await;
    let twice = vec![staged[0].clone(), staged[0].clone()];
    let e = commit_staged(&cat, &plan, &options, &twice)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("handed in twice"), "{e}");
    // Counts that do not match the manifests.
    let mut lying = workers(&plan, &[10..15, 15..20]).await;
    lying[0].rows += 1;
    let e = commit_staged(&cat, &plan, &options, &lying)
        .await
        .unwrap_err();
    assert!(matches!(e, FloeError::StagedFiles { .. }), "{e}");
    // Another job's result.
    let e = commit_staged(&cat, &plan, &options, &foreign)
        .await
        .unwrap_err();
    assert!(matches!(e, FloeError::StagedFiles { .. }), "{e}");
    assert_eq!(ids(&cat, "ns.r").await, (0..5).collect::<Vec<_>>());
    // A refused commit deleted what it took (the first result's file, each time); the caller
    // discards the rest by path: each second worker's file and the other job's two.
    let left: Vec<String> = parquet_files(dir.path())
        .difference(&before)
        .map(|p| format!("file://{p}"))
        .collect();
    assert_eq!(left.len(), 4);
    assert_eq!(discard_staged(&other, &left).await.unwrap(), left.len());
    assert_eq!(parquet_files(dir.path()), before);
    // Paths outside the table are never deleted.
    let outside = dir.path().join("keep.parquet");
    std::fs::write(&outside, b"x").unwrap();
    let sneaky = format!(
        "file://{}/../../keep.parquet",
        dir.path().join("ns/r/data").display()
    );
    let n = discard_staged(&plan, &[format!("file://{}", outside.display()), sneaky])
        .await
        .unwrap();
    assert_eq!(n, 0);
    assert!(outside.exists());
    let empty = commit_staged(&cat, &plan, &options, &[]).await.unwrap();
    assert_eq!(empty.snapshot_id, None, "no rows, no snapshot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_worker_deletes_its_files_and_its_observer_heard_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let cat = catalog(dir.path()).await;
    let plan = ready(planned(&cat, "ns.f", LoadOperation::Append, "f").await);
    let heard = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = heard.clone();
    let observer: floe::ops::distributed::FileObserver = Arc::new(move |p: &str| {
        sink.lock().unwrap().push(p.to_string());
        Ok(())
    });
    let failing = floe::Source::from_stream(
        schema(),
        "broken",
        futures::stream::iter(vec![Ok(batch(0..10)), Err("the producer broke")]),
    );
    let e = write_staged(&plan, &LoadOptions::default(), failing, Some(observer))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("the producer broke"), "{e}");
    assert!(
        !heard.lock().unwrap().is_empty(),
        "the observer heard of the file"
    );
    assert!(
        parquet_files(dir.path()).is_empty(),
        "the worker deleted its files"
    );
}
