//! Key columns: the merge's keys (and its hard-delete and dedup columns) resolved against the
//! table's schema.

use arrow_row::{RowConverter, SortField};
use arrow_schema::Schema as ArrowSchema;
use iceberg::spec::{PrimitiveType, Schema, Type};

use super::spec::{DuplicateKeys, MergeSpec};
use crate::error::{FloeError, Result, ResultExt};

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
    /// In the load side's sorted batches only: the marker column of keys pushed besides the
    /// rows (see [`super::LoadSide::push_marked`]).
    pub marker: Option<usize>,
    /// In the load side's sorted batches only: load rows are merged only where their key was
    /// also pushed as [`super::load_side::Marker::Only`].
    pub only_marked: bool,
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
            marker: None,
            only_marked: false,
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

    pub(super) fn converter(&self, arrow: &ArrowSchema) -> Result<RowConverter> {
        RowConverter::new(
            self.indices
                .iter()
                .map(|&i| SortField::new(arrow.field(i).data_type().clone()))
                .collect(),
        )
        .context(|| "cannot compare key columns".into())
    }
}
