//! The table's metrics modes (`write.metadata.metrics.default`,
//! `write.metadata.metrics.column.<name>`), applied to every data file a load adds, copied or
//! re-encoded, as Iceberg's Java writers apply them:
//!
//! - `none`: nothing about the column (no size, counts or bounds), e.g. for a PII column whose
//!   values must not appear in manifests;
//! - `counts`: sizes and value / null / NaN counts, no bounds;
//! - `truncate(N)`: bounds of strings and binaries cut to N characters / bytes (the upper bound
//!   rounded up so it still bounds; dropped when it cannot be), other bounds kept;
//! - `full`: everything.
//!
//! The default mode is `truncate(16)`, Java's. Java's `max-inferred-column-defaults` (full
//! metrics only for the first 100 columns) is not applied: every column gets the default.

use std::collections::HashMap;

use iceberg::spec::{DataFile, DataFileBuilder, Datum, PrimitiveLiteral, Schema};

use crate::error::{FloeError, Result};

const PROP_DEFAULT: &str = "write.metadata.metrics.default";
const PROP_COLUMN: &str = "write.metadata.metrics.column.";

/// How much Iceberg records about one column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsMode {
    None,
    Counts,
    Truncate(usize),
    Full,
}

impl std::str::FromStr for MetricsMode {
    type Err = FloeError;

    fn from_str(text: &str) -> Result<Self> {
        let t = text.trim().to_ascii_lowercase();
        let bad = || {
            FloeError::InvalidOption(format!(
                "metrics mode '{text}': expected none, counts, truncate(N) or full"
            ))
        };
        Ok(match t.as_str() {
            "none" => Self::None,
            "counts" => Self::Counts,
            "full" => Self::Full,
            _ => {
                let n = t
                    .strip_prefix("truncate(")
                    .and_then(|r| r.strip_suffix(')'))
                    .and_then(|n| n.trim().parse::<usize>().ok())
                    .filter(|n| *n > 0)
                    .ok_or_else(bad)?;
                Self::Truncate(n)
            }
        })
    }
}

/// The metrics modes of one table, by field id.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    default: MetricsMode,
    columns: HashMap<i32, MetricsMode>,
}

impl MetricsConfig {
    /// From the table's properties; a column property naming no column of `schema` is an error.
    pub fn from_properties(props: &HashMap<String, String>, schema: &Schema) -> Result<Self> {
        let default = match props.get(PROP_DEFAULT) {
            Some(v) => v.parse()?,
            None => MetricsMode::Truncate(16),
        };
        let mut columns = HashMap::new();
        for (key, value) in props {
            let Some(name) = key.strip_prefix(PROP_COLUMN) else {
                continue;
            };
            let field = schema.field_by_name(name).ok_or_else(|| {
                FloeError::InvalidOption(format!(
                    "table property {key}: no column '{name}' in the table"
                ))
            })?;
            columns.insert(field.id, value.parse()?);
        }
        Ok(Self { default, columns })
    }

    fn mode(&self, field_id: i32) -> MetricsMode {
        self.columns.get(&field_id).copied().unwrap_or(self.default)
    }

    /// `file` with each column's metrics cut to its mode; `spec_id` is the file's spec.
    pub fn apply(&self, file: DataFile, spec_id: i32) -> std::result::Result<DataFile, String> {
        let counted = |id: &i32| self.mode(*id) != MetricsMode::None;
        let counts = |map: &HashMap<i32, u64>| -> HashMap<i32, u64> {
            map.iter()
                .filter(|(id, _)| counted(id))
                .map(|(k, v)| (*k, *v))
                .collect()
        };
        let bounds = |map: &HashMap<i32, Datum>, upper: bool| -> HashMap<i32, Datum> {
            map.iter()
                .filter_map(|(id, d)| match self.mode(*id) {
                    MetricsMode::None | MetricsMode::Counts => None,
                    MetricsMode::Truncate(n) => truncate(d, n, upper).map(|d| (*id, d)),
                    MetricsMode::Full => Some((*id, d.clone())),
                })
                .collect()
        };
        let mut builder = DataFileBuilder::default();
        builder
            .content(file.content_type())
            .file_path(file.file_path().to_string())
            .file_format(file.file_format())
            .partition(file.partition().clone())
            .partition_spec_id(spec_id)
            .record_count(file.record_count())
            .file_size_in_bytes(file.file_size_in_bytes())
            .column_sizes(counts(file.column_sizes()))
            .value_counts(counts(file.value_counts()))
            .null_value_counts(counts(file.null_value_counts()))
            .nan_value_counts(counts(file.nan_value_counts()))
            .lower_bounds(bounds(file.lower_bounds(), false))
            .upper_bounds(bounds(file.upper_bounds(), true))
            .key_metadata(file.key_metadata().map(<[u8]>::to_vec))
            .split_offsets(file.split_offsets().map(<[i64]>::to_vec))
            .equality_ids(file.equality_ids())
            .first_row_id(file.first_row_id())
            .referenced_data_file(file.referenced_data_file())
            .content_offset(file.content_offset())
            .content_size_in_bytes(file.content_size_in_bytes());
        if let Some(order) = file.sort_order_id() {
            builder.sort_order_id(order);
        }
        builder.build().map_err(|e| e.to_string())
    }
}

/// A string or binary bound cut to `n` characters / bytes; an upper bound is rounded up (its
/// last kept character incremented) and dropped when no shorter upper bound exists.
fn truncate(bound: &Datum, n: usize, upper: bool) -> Option<Datum> {
    match bound.literal() {
        PrimitiveLiteral::String(s) if s.chars().count() > n => {
            let prefix: Vec<char> = s.chars().take(n).collect();
            if !upper {
                return Some(Datum::string(prefix.iter().collect::<String>()));
            }
            round_up_chars(prefix).map(Datum::string)
        }
        PrimitiveLiteral::Binary(b) if b.len() > n => {
            if !upper {
                return Some(Datum::binary(b[..n].to_vec()));
            }
            let mut prefix = b[..n].to_vec();
            while let Some(last) = prefix.pop() {
                if last < u8::MAX {
                    prefix.push(last + 1);
                    return Some(Datum::binary(prefix));
                }
            }
            None
        }
        _ => Some(bound.clone()),
    }
}

/// The smallest string above every string starting with `prefix`, as short as `prefix`.
fn round_up_chars(mut prefix: Vec<char>) -> Option<String> {
    while let Some(last) = prefix.pop() {
        let mut next = last as u32 + 1;
        while next <= char::MAX as u32 {
            if let Some(c) = char::from_u32(next) {
                prefix.push(c);
                return Some(prefix.into_iter().collect());
            }
            next += 1; // skips the surrogate range
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use iceberg::spec::{
        DataContentType, DataFileFormat, NestedField, PrimitiveType, Struct, Type,
    };

    fn schema() -> Schema {
        Schema::builder()
            .with_fields(vec![
                NestedField::optional(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
                NestedField::optional(2, "email", Type::Primitive(PrimitiveType::String)).into(),
                NestedField::optional(3, "note", Type::Primitive(PrimitiveType::String)).into(),
            ])
            .build()
            .unwrap()
    }

    fn file() -> DataFile {
        let all = |v: u64| HashMap::from([(1, v), (2, v), (3, v)]);
        DataFileBuilder::default()
            .content(DataContentType::Data)
            .file_path("f.parquet".into())
            .file_format(DataFileFormat::Parquet)
            .partition(Struct::empty())
            .record_count(10)
            .file_size_in_bytes(100)
            .column_sizes(all(30))
            .value_counts(all(10))
            .null_value_counts(all(0))
            .lower_bounds(HashMap::from([
                (1, Datum::long(1)),
                (2, Datum::string("alice@example.com")),
                (3, Datum::string("aaaaaaaaaaaaaaaaaaaaaaaa")),
            ]))
            .upper_bounds(HashMap::from([
                (1, Datum::long(9)),
                (2, Datum::string("zoe@example.com")),
                (3, Datum::string("abcdefghijklmnopqrstuvwxyz")),
            ]))
            .build()
            .unwrap()
    }

    #[test]
    fn modes_cut_what_manifests_record() {
        let props = HashMap::from([
            (
                "write.metadata.metrics.column.email".to_string(),
                "none".to_string(),
            ),
            (
                "write.metadata.metrics.column.id".to_string(),
                "counts".to_string(),
            ),
        ]);
        let config = MetricsConfig::from_properties(&props, &schema()).unwrap();
        let out = config.apply(file(), 0).unwrap();
        assert!(!out.column_sizes().contains_key(&2) && !out.value_counts().contains_key(&2));
        assert!(!out.lower_bounds().contains_key(&2) && !out.upper_bounds().contains_key(&2));
        assert_eq!(out.value_counts()[&1], 10);
        assert!(!out.lower_bounds().contains_key(&1));
        // the default truncate(16): cut lower bound, rounded-up upper bound
        assert_eq!(out.lower_bounds()[&3], Datum::string("aaaaaaaaaaaaaaaa"));
        assert_eq!(out.upper_bounds()[&3], Datum::string("abcdefghijklmnoq"));
        assert_eq!(out.record_count(), 10);
    }

    #[test]
    fn full_keeps_everything_and_bad_settings_are_errors() {
        let props = HashMap::from([(PROP_DEFAULT.to_string(), "full".to_string())]);
        let config = MetricsConfig::from_properties(&props, &schema()).unwrap();
        assert_eq!(config.apply(file(), 0).unwrap(), file());
        for bad in ["truncate(0)", "trunc(3)", "all"] {
            let props = HashMap::from([(PROP_DEFAULT.to_string(), bad.to_string())]);
            assert!(
                MetricsConfig::from_properties(&props, &schema()).is_err(),
                "{bad}"
            );
        }
        let props = HashMap::from([(format!("{PROP_COLUMN}nope"), "none".to_string())]);
        assert!(MetricsConfig::from_properties(&props, &schema()).is_err());
    }

    #[test]
    fn upper_bounds_that_cannot_round_up_are_dropped() {
        let max = char::MAX.to_string().repeat(3);
        assert_eq!(truncate(&Datum::string(max), 2, true), None);
        assert_eq!(truncate(&Datum::binary(vec![0xff; 4]), 2, true), None);
        assert_eq!(
            truncate(&Datum::binary(vec![1, 0xff, 7]), 2, true),
            Some(Datum::binary(vec![2]))
        );
    }
}
