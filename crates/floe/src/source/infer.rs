//! Schemas of text inputs (JSON lines, CSV): inferred from a bounded sample of each input, then
//! bound to the table's types where the table has the column.
//!
//! A new table gets the inferred types (JSON strings that all look like dates or timestamps
//! become dates or timestamps, as pyarrow and DuckDB infer them). An existing table reads its
//! columns as its own types: values are parsed straight into them (decimals from their text,
//! never through a float; timestamps from strings), so the sample decides only the types of
//! new columns.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, FieldRef, Fields, Schema, SchemaRef, TimeUnit};
use serde_json::Value;

/// What a top-level JSON string column's sampled values all look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StringKind {
    Date,
    /// A timestamp with an offset (`Z`, `+02:00`): an instant.
    TimestampTz,
    /// A timestamp without an offset: a wall-clock time.
    Timestamp,
    Text,
}

impl StringKind {
    fn of(text: &str) -> Self {
        if text.len() == 10 && chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok() {
            return Self::Date;
        }
        if text.len() < 19 || !text.as_bytes()[0].is_ascii_digit() {
            return Self::Text;
        }
        let normal = text.replacen(' ', "T", 1);
        if chrono::DateTime::parse_from_rfc3339(&normal).is_ok() {
            return Self::TimestampTz;
        }
        if chrono::NaiveDateTime::parse_from_str(&normal, "%Y-%m-%dT%H:%M:%S%.f").is_ok() {
            return Self::Timestamp;
        }
        Self::Text
    }

    fn join(self, other: Self) -> Self {
        if self == other { self } else { Self::Text }
    }

    fn data_type(self) -> DataType {
        match self {
            Self::Date => DataType::Date32,
            Self::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            Self::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Self::Text => DataType::Utf8,
        }
    }
}

/// One input's sampled JSON records (each an object, at most `--infer-rows` of them) and what
/// their strings look like; [`Self::schema`] infers their schema in first-seen column order.
pub(crate) struct JsonSample {
    records: Vec<Value>,
    strings: HashMap<String, StringKind>,
}

impl JsonSample {
    pub fn new() -> Self {
        Self {
            records: Vec::new(),
            strings: HashMap::new(),
        }
    }

    /// Adds one record.
    pub fn push(&mut self, record: Value) {
        if let Value::Object(map) = &record {
            for (name, value) in map {
                if let Value::String(text) = value {
                    let kind = StringKind::of(text);
                    self.strings
                        .entry(name.clone())
                        .and_modify(|k| *k = k.join(kind))
                        .or_insert(kind);
                }
            }
        }
        self.records.push(record);
    }

    /// The schema of every record pushed (with `known`, the schema of earlier inputs, first).
    pub fn schema(&self, known: Option<&Schema>) -> Result<Schema, arrow_schema::ArrowError> {
        let inferred =
            arrow_json::reader::infer_json_schema_from_iterator(self.records.iter().map(Ok))?;
        let fields: Vec<FieldRef> = inferred.fields().iter().map(|f| self.refined(f)).collect();
        let schema = Schema::new(fields);
        Ok(match known {
            Some(known) => union(known, &schema),
            None => schema,
        })
    }

    /// Null columns become strings; string columns whose sampled values all look like dates or
    /// timestamps become those.
    fn refined(&self, field: &FieldRef) -> FieldRef {
        let data_type = match field.data_type() {
            DataType::Utf8 => match self.strings.get(field.name()) {
                Some(kind) => kind.data_type(),
                None => DataType::Utf8,
            },
            other => without_null(other),
        };
        Arc::new(Field::new(field.name(), data_type, true))
    }
}

/// `data_type` with its null types (a column or element that was always null) as strings.
fn without_null(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Null => DataType::Utf8,
        DataType::List(item) => DataType::List(Arc::new(
            item.as_ref()
                .clone()
                .with_data_type(without_null(item.data_type())),
        )),
        DataType::Struct(fields) => DataType::Struct(
            fields
                .iter()
                .map(|f| {
                    Arc::new(
                        f.as_ref()
                            .clone()
                            .with_data_type(without_null(f.data_type())),
                    )
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The columns of `a` then the new ones of `b`; a column in both gets a type holding either.
pub(crate) fn union(a: &Schema, b: &Schema) -> Schema {
    let mut fields: Vec<FieldRef> = a.fields().iter().cloned().collect();
    for field in b.fields() {
        match fields.iter_mut().find(|f| f.name() == field.name()) {
            Some(known) => {
                let wider = wider(known.data_type(), field.data_type());
                *known = Arc::new(known.as_ref().clone().with_data_type(wider));
            }
            None => fields.push(field.clone()),
        }
    }
    Schema::new(fields)
}

/// A type that holds values of both (the inputs' samples disagreed): numbers widen to double,
/// dates to timestamps, anything else becomes a string.
fn wider(a: &DataType, b: &DataType) -> DataType {
    use DataType::*;
    match (a, b) {
        _ if a == b => a.clone(),
        (Null, other) | (other, Null) => other.clone(),
        (Int64, Float64) | (Float64, Int64) => Float64,
        (Date32, t @ Timestamp(_, _)) | (t @ Timestamp(_, _), Date32) => t.clone(),
        (Struct(x), Struct(y)) => {
            let merged = union(&Schema::new(x.clone()), &Schema::new(y.clone()));
            Struct(merged.fields().clone())
        }
        (List(x), List(y)) => List(Arc::new(
            x.as_ref()
                .clone()
                .with_data_type(wider(x.data_type(), y.data_type())),
        )),
        _ => Utf8,
    }
}

/// Timestamps inferred from CSV at microseconds (Iceberg's precision), others unchanged.
pub(crate) fn at_micros(schema: Schema) -> Schema {
    let fields: Vec<FieldRef> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Timestamp(_, tz) => Arc::new(
                f.as_ref()
                    .clone()
                    .with_data_type(DataType::Timestamp(TimeUnit::Microsecond, tz.clone())),
            ),
            DataType::Null => Arc::new(f.as_ref().clone().with_data_type(DataType::Utf8)),
            _ => f.clone(),
        })
        .collect();
    Schema::new(fields)
}

/// How an inferred schema is bound to a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Binding {
    /// JSON: columns are matched by name, so the table's other columns are read too (a column
    /// that first appears after the sample still lands in its table column).
    ByName,
    /// CSV: columns are the header's, in its order; nested table types cannot be parsed from
    /// CSV and keep the inferred type (the conform stage then names the mismatch).
    ByPosition,
    /// What schema evolution plans with: the input's columns, typed by the table.
    Planning,
}

/// `inferred` with each column the table has typed as the table's column. Nested JSON columns
/// keep the sub-fields the table lacks, so evolution can add them.
pub(crate) fn bind(inferred: &Schema, table: &Schema, binding: Binding) -> SchemaRef {
    let mut fields: Vec<FieldRef> = inferred
        .fields()
        .iter()
        .map(|f| match table.field_with_name(f.name()) {
            Ok(column) if binding != Binding::ByPosition || csv_parses(column.data_type()) => {
                Arc::new(Field::new(
                    f.name(),
                    merged(column.data_type(), f.data_type()),
                    true,
                ))
            }
            _ => f.clone(),
        })
        .collect();
    if binding == Binding::ByName {
        for column in table.fields() {
            if inferred.field_with_name(column.name()).is_err() {
                fields.push(Arc::new(column.as_ref().clone().with_nullable(true)));
            }
        }
    }
    Arc::new(Schema::new(fields))
}

/// The table's type, with the sub-fields of inferred structs it lacks added.
fn merged(table: &DataType, inferred: &DataType) -> DataType {
    match (table, inferred) {
        (DataType::Struct(t), DataType::Struct(i)) => {
            let mut fields: Vec<FieldRef> = t
                .iter()
                .map(|tf| match i.find(tf.name()) {
                    Some((_, inf)) => Arc::new(
                        tf.as_ref()
                            .clone()
                            .with_data_type(merged(tf.data_type(), inf.data_type())),
                    ),
                    None => tf.clone(),
                })
                .collect();
            fields.extend(i.iter().filter(|f| t.find(f.name()).is_none()).cloned());
            DataType::Struct(Fields::from(fields))
        }
        (DataType::List(t), DataType::List(i)) => DataType::List(Arc::new(
            t.as_ref()
                .clone()
                .with_data_type(merged(t.data_type(), i.data_type())),
        )),
        (DataType::LargeList(t), DataType::List(i) | DataType::LargeList(i)) => {
            DataType::LargeList(Arc::new(
                t.as_ref()
                    .clone()
                    .with_data_type(merged(t.data_type(), i.data_type())),
            ))
        }
        _ => table.clone(),
    }
}

/// Whether arrow's CSV reader parses text into `data_type`.
fn csv_parses(data_type: &DataType) -> bool {
    !data_type.is_nested() && !matches!(data_type, DataType::FixedSizeBinary(_))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample(records: &[Value]) -> Schema {
        let mut s = JsonSample::new();
        for r in records {
            s.push(r.clone());
        }
        s.schema(None).unwrap()
    }

    #[test]
    fn json_strings_that_look_like_times_become_times() {
        let schema = sample(&[
            json!({"id": 1, "at": "2024-01-02T03:04:05Z", "day": "2024-01-02", "name": "a", "n": null}),
            json!({"id": 2, "at": "2024-01-02 03:04:05.123+02:00", "day": "2024-02-29", "name": "2024-01-02", "n": null}),
        ]);
        let types: Vec<(&str, DataType)> = schema
            .fields()
            .iter()
            .map(|f| (f.name().as_str(), f.data_type().clone()))
            .collect();
        assert_eq!(
            types,
            vec![
                ("id", DataType::Int64),
                (
                    "at",
                    DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
                ),
                ("day", DataType::Date32),
                ("name", DataType::Utf8),
                ("n", DataType::Utf8),
            ]
        );
    }

    #[test]
    fn naive_and_offset_timestamps_together_stay_strings() {
        let schema = sample(&[
            json!({"at": "2024-01-02T03:04:05"}),
            json!({"at": "2024-01-02T03:04:05Z"}),
        ]);
        assert_eq!(schema.field(0).data_type(), &DataType::Utf8);
        let naive = sample(&[json!({"at": "2024-01-02T03:04:05.5"})]);
        assert_eq!(
            naive.field(0).data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, None)
        );
    }

    #[test]
    fn union_widens_and_appends() {
        let a = Schema::new(vec![
            Field::new("x", DataType::Int64, true),
            Field::new("y", DataType::Date32, true),
        ]);
        let b = Schema::new(vec![
            Field::new("z", DataType::Boolean, true),
            Field::new("x", DataType::Float64, true),
            Field::new("y", DataType::Utf8, true),
        ]);
        let u = union(&a, &b);
        let names: Vec<_> = u.fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["x", "y", "z"]);
        assert_eq!(u.field(0).data_type(), &DataType::Float64);
        assert_eq!(u.field(1).data_type(), &DataType::Utf8);
    }

    #[test]
    fn binding_takes_table_types_and_keeps_new_nested_fields() {
        let inferred = Schema::new(vec![
            Field::new("amount", DataType::Float64, true),
            Field::new(
                "s",
                DataType::Struct(Fields::from(vec![
                    Field::new("a", DataType::Int64, true),
                    Field::new("new", DataType::Utf8, true),
                ])),
                true,
            ),
            Field::new("extra", DataType::Boolean, true),
        ]);
        let table = Schema::new(vec![
            Field::new("id", DataType::Int32, false),
            Field::new("amount", DataType::Decimal128(20, 4), false),
            Field::new(
                "s",
                DataType::Struct(Fields::from(vec![Field::new("a", DataType::Int32, true)])),
                true,
            ),
        ]);
        let by_name = bind(&inferred, &table, Binding::ByName);
        let types: Vec<(&str, DataType, bool)> = by_name
            .fields()
            .iter()
            .map(|f| (f.name().as_str(), f.data_type().clone(), f.is_nullable()))
            .collect();
        let s = DataType::Struct(Fields::from(vec![
            Field::new("a", DataType::Int32, true),
            Field::new("new", DataType::Utf8, true),
        ]));
        assert_eq!(
            types,
            vec![
                ("amount", DataType::Decimal128(20, 4), true),
                ("s", s.clone(), true),
                ("extra", DataType::Boolean, true),
                ("id", DataType::Int32, true),
            ]
        );
        let by_position = bind(&inferred, &table, Binding::ByPosition);
        assert_eq!(by_position.fields().len(), 3);
        assert_eq!(
            by_position.field(1).data_type(),
            inferred.field(1).data_type()
        );
        assert_eq!(
            bind(&inferred, &table, Binding::Planning)
                .field(1)
                .data_type(),
            &s
        );
    }
}
