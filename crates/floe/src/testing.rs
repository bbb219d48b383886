//! Helpers the crate's unit tests and its integration tests share (not part of floe's API): a
//! two-column table (`id` long, `name` string), the embedded catalog in a directory, and the
//! ids a table holds as iceberg-rust's own scan reads them.

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use futures::TryStreamExt;

pub use crate::commit::MANIFEST_ENTRIES;
use crate::{Catalog, CatalogConfig, Source, parse_table_ident};

/// `id` (long, required) and `name` (string).
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]))
}

/// Rows `ids`, named `n<id>`.
pub fn batch(ids: std::ops::Range<i64>) -> RecordBatch {
    let names: Vec<String> = ids.clone().map(|i| format!("n{i}")).collect();
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(ids)),
            Arc::new(StringArray::from(names)),
        ],
    )
    .unwrap()
}

/// A source streaming `batches` (of [`schema`]).
pub fn source(batches: Vec<RecordBatch>) -> Source {
    Source::from_stream(
        schema(),
        "memory",
        futures::stream::iter(batches.into_iter().map(Ok::<_, Infallible>)),
    )
}

/// The embedded catalog in `dir`.
pub async fn catalog(dir: &Path) -> Catalog {
    Catalog::open(CatalogConfig::embedded(dir).unwrap())
        .await
        .unwrap()
}

/// The sorted ids `table` holds.
pub async fn ids(catalog: &Catalog, table: &str) -> Vec<i64> {
    let state = catalog
        .load_table(&parse_table_ident(table).unwrap())
        .await
        .unwrap()
        .unwrap();
    let scan = state.table().unwrap().scan().build().unwrap();
    let batches: Vec<RecordBatch> = scan.to_arrow().await.unwrap().try_collect().await.unwrap();
    let mut out: Vec<i64> = batches
        .iter()
        .flat_map(|b| {
            b.column_by_name("id")
                .unwrap()
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .values()
                .to_vec()
        })
        .collect();
    out.sort();
    out
}
