//! Conform: make every input batch look exactly like the table.
//!
//! Columns are matched by name (order never matters), cast to the table's Arrow types, nested
//! structs/lists/maps are rebuilt with the table's field definitions (so Parquet field ids are
//! the table's), and required columns are checked for nulls. Any other difference is an error
//! that names the input and the column path.
//!
//! [`evolve`] decides, before any data is written, which table schema a load needs (new
//! columns, safe widening); [`types`] maps Arrow types to Iceberg types.

pub mod evolve;
pub mod types;

use std::collections::HashSet;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Decimal128Type, Time64MicrosecondType, Time64NanosecondType, TimestampMicrosecondType,
    TimestampNanosecondType,
};
use arrow_array::{Array, ArrayRef, ListArray, MapArray, RecordBatch, StructArray, new_null_array};
use arrow_cast::{CastOptions, cast_with_options};
use arrow_schema::{ArrowError, DataType, Field, FieldRef, Fields, SchemaRef, TimeUnit};
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::spec::{NestedField, NestedFieldRef, Schema, Type};

use types::join;
pub use types::{iceberg_schema_from_arrow, primitive_of};

use crate::error::{FloeError, Result, ResultExt};
use crate::source::SourceBatch;

/// Casts batches to one table schema.
#[derive(Debug, Clone)]
pub struct Conformer {
    table: String,
    schema: Arc<Schema>,
    arrow: SchemaRef,
    lenient: bool,
}

struct Ctx<'a> {
    table: &'a str,
    origin: &'a str,
    lenient: bool,
}

impl Ctx<'_> {
    fn mismatch(&self, detail: String) -> FloeError {
        FloeError::SchemaMismatch {
            origin: self.origin.to_string(),
            table: self.table.to_string(),
            detail,
        }
    }
}

impl Conformer {
    pub fn new(table: &str, schema: Arc<Schema>) -> Result<Self> {
        let arrow = schema_to_arrow_schema(&schema)
            .context(|| format!("table {table}: cannot map its schema to Arrow"))?;
        Ok(Self {
            table: table.to_string(),
            schema,
            arrow: Arc::new(arrow),
            lenient: false,
        })
    }

    /// Drops input columns the schema does not have (at any depth) instead of failing: for
    /// reading the table's own files, which may hold columns dropped since.
    pub fn lenient(mut self) -> Self {
        self.lenient = true;
        self
    }

    /// The Arrow schema of conformed batches (with Parquet field ids).
    pub fn arrow_schema(&self) -> &SchemaRef {
        &self.arrow
    }

    /// Returns `input` with the table's column order, types and field definitions.
    pub fn conform(&self, input: &SourceBatch) -> Result<RecordBatch> {
        let ctx = Ctx {
            table: &self.table,
            origin: &input.origin,
            lenient: self.lenient,
        };
        let batch = &input.batch;
        let columns = conform_fields(
            batch.schema().fields(),
            batch.columns(),
            batch.num_rows(),
            self.arrow.fields(),
            self.schema.as_struct().fields(),
            "",
            &ctx,
        )?;
        RecordBatch::try_new_with_options(
            self.arrow.clone(),
            columns,
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
        )
        .context(|| {
            format!(
                "input '{}': cannot build a batch for table {}",
                input.origin, self.table
            )
        })
    }
}

fn conform_fields(
    src_fields: &Fields,
    src_columns: &[ArrayRef],
    rows: usize,
    target_fields: &Fields,
    target_iceberg: &[NestedFieldRef],
    prefix: &str,
    ctx: &Ctx,
) -> Result<Vec<ArrayRef>> {
    let mut seen = HashSet::new();
    if let Some(twice) = src_fields.iter().find(|f| !seen.insert(f.name().as_str())) {
        return Err(ctx.mismatch(format!(
            "column '{}' appears twice in the input",
            join(prefix, twice.name())
        )));
    }
    let target_names: HashSet<&str> = target_fields.iter().map(|f| f.name().as_str()).collect();
    if let Some(extra) = src_fields
        .iter()
        .find(|f| !ctx.lenient && !target_names.contains(f.name().as_str()))
    {
        return Err(ctx.mismatch(format!(
            "column '{}' is not in the table",
            join(prefix, extra.name())
        )));
    }
    target_fields
        .iter()
        .zip(target_iceberg)
        .map(|(tf, ti)| {
            let path = join(prefix, tf.name());
            let Some(idx) = src_fields.iter().position(|f| f.name() == tf.name()) else {
                // A column the input does not have reads as null, unless the table requires it.
                if tf.is_nullable() {
                    return Ok(new_null_array(tf.data_type(), rows));
                }
                return Err(ctx.mismatch(format!(
                    "column '{path}' is required in the table but missing from the input"
                )));
            };
            conform_column(&src_columns[idx], &src_fields[idx], tf, ti, &path, ctx)
        })
        .collect()
}

fn conform_column(
    array: &ArrayRef,
    src: &Field,
    target: &FieldRef,
    iceberg: &NestedField,
    path: &str,
    ctx: &Ctx,
) -> Result<ArrayRef> {
    let type_error = || {
        ctx.mismatch(format!(
            "column '{path}' has type {} in the input but {} in the table",
            src.data_type(),
            iceberg.field_type
        ))
    };
    let cast_err = |e| match e {
        // Strict casts report values the target type cannot hold.
        ArrowError::CastError(detail)
        | ArrowError::ComputeError(detail)
        | ArrowError::ArithmeticOverflow(detail) => FloeError::ValueOutOfRange {
            origin: ctx.origin.to_string(),
            table: ctx.table.to_string(),
            column: path.to_string(),
            detail: format!(
                "a value does not fit {} ({detail}); nothing was loaded",
                iceberg.field_type
            ),
        },
        e => FloeError::Arrow {
            context: format!("input '{}': cannot convert column '{path}'", ctx.origin),
            source: e,
        },
    };
    let (array, src_type) = match src.data_type() {
        DataType::Dictionary(_, values) => (
            strict_cast(array, values).map_err(cast_err)?,
            values.as_ref().clone(),
        ),
        dt => (array.clone(), dt.clone()),
    };
    let out: ArrayRef = match (target.data_type(), iceberg.field_type.as_ref()) {
        (DataType::Struct(tfields), Type::Struct(ti)) => {
            let DataType::Struct(sfields) = &src_type else {
                return Err(type_error());
            };
            let s = array
                .as_any()
                .downcast_ref::<StructArray>()
                .ok_or_else(type_error)?;
            let children = conform_fields(
                sfields,
                s.columns(),
                s.len(),
                tfields,
                ti.fields(),
                path,
                ctx,
            )?;
            Arc::new(
                StructArray::try_new(tfields.clone(), children, s.nulls().cloned())
                    .map_err(cast_err)?,
            )
        }
        (DataType::List(te), Type::List(ti)) => {
            let list = match &src_type {
                DataType::List(_) => array.clone(),
                DataType::LargeList(se) | DataType::FixedSizeList(se, _) => {
                    strict_cast(&array, &DataType::List(se.clone())).map_err(cast_err)?
                }
                _ => return Err(type_error()),
            };
            let list = list
                .as_any()
                .downcast_ref::<ListArray>()
                .ok_or_else(type_error)?;
            let DataType::List(se) = list.data_type() else {
                return Err(type_error());
            };
            let values = conform_column(
                list.values(),
                se,
                te,
                &ti.element_field,
                &join(path, "element"),
                ctx,
            )?;
            Arc::new(
                ListArray::try_new(
                    te.clone(),
                    list.offsets().clone(),
                    values,
                    list.nulls().cloned(),
                )
                .map_err(cast_err)?,
            )
        }
        (DataType::Map(te, sorted), Type::Map(ti)) => {
            let DataType::Map(se, _) = &src_type else {
                return Err(type_error());
            };
            let m = array
                .as_any()
                .downcast_ref::<MapArray>()
                .ok_or_else(type_error)?;
            let (DataType::Struct(skv), DataType::Struct(tkv)) = (se.data_type(), te.data_type())
            else {
                return Err(type_error());
            };
            if skv.len() != 2 {
                return Err(type_error());
            }
            let entries = m.entries();
            // Map entry names vary between writers (key/value, keys/values): match by position.
            let key = conform_column(
                entries.column(0),
                &skv[0],
                &tkv[0],
                &ti.key_field,
                &join(path, "key"),
                ctx,
            )?;
            let value = conform_column(
                entries.column(1),
                &skv[1],
                &tkv[1],
                &ti.value_field,
                &join(path, "value"),
                ctx,
            )?;
            let entries =
                StructArray::try_new(tkv.clone(), vec![key, value], None).map_err(cast_err)?;
            Arc::new(
                MapArray::try_new(
                    te.clone(),
                    m.offsets().clone(),
                    entries,
                    m.nulls().cloned(),
                    *sorted,
                )
                .map_err(cast_err)?,
            )
        }
        (_, Type::Primitive(tp)) => {
            let sp = primitive_of(src).map_err(|_| type_error())?;
            if !evolve::fits(tp, &sp) {
                return Err(type_error());
            }
            let out = if &src_type == target.data_type() {
                array
            } else {
                cast_primitive(&array, &src_type, target.data_type()).map_err(cast_err)?
            };
            if let DataType::Decimal128(precision, _) = target.data_type() {
                // Arrow does not enforce a decimal's precision; Iceberg's readers do.
                out.as_primitive::<Decimal128Type>()
                    .validate_decimal_precision(*precision)
                    .map_err(cast_err)?;
            }
            out
        }
        _ => return Err(type_error()),
    };
    if !target.is_nullable() && out.null_count() > 0 {
        return Err(FloeError::NullInRequiredColumn {
            origin: ctx.origin.to_string(),
            table: ctx.table.to_string(),
            column: path.to_string(),
            nulls: out.null_count(),
        });
    }
    Ok(out)
}

/// Arrow casts that fail on any value the target cannot hold, instead of turning it into null.
fn strict_cast(array: &ArrayRef, to: &DataType) -> Result<ArrayRef, ArrowError> {
    let options = CastOptions {
        safe: false,
        ..Default::default()
    };
    cast_with_options(array, to, &options)
}

/// Casts where Arrow's kernel needs a hop (Date64 keeps days, times go through the unit), and
/// nanoseconds, which become microseconds rounded toward negative infinity (as Iceberg's Java
/// writers do), so a pre-1970 instant never moves forward in time.
fn cast_primitive(
    array: &ArrayRef,
    from: &DataType,
    to: &DataType,
) -> Result<ArrayRef, ArrowError> {
    match (from, to) {
        (DataType::Time32(_), DataType::Time64(TimeUnit::Microsecond)) => {
            let ms = strict_cast(array, &DataType::Time32(TimeUnit::Millisecond))?;
            strict_cast(&ms, to)
        }
        (
            DataType::Timestamp(TimeUnit::Nanosecond, _),
            DataType::Timestamp(TimeUnit::Microsecond, tz),
        ) => {
            let micros = array
                .as_primitive::<TimestampNanosecondType>()
                .unary::<_, TimestampMicrosecondType>(|ns| ns.div_euclid(1000));
            Ok(Arc::new(micros.with_timezone_opt(tz.clone())))
        }
        (DataType::Time64(TimeUnit::Nanosecond), DataType::Time64(TimeUnit::Microsecond)) => {
            let micros = array
                .as_primitive::<Time64NanosecondType>()
                .unary::<_, Time64MicrosecondType>(|ns| ns.div_euclid(1000));
            Ok(Arc::new(micros))
        }
        _ => strict_cast(array, to),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int32Array, StringArray};
    use arrow_schema::Schema as ArrowSchema;

    fn conformer_for(fields: Vec<Field>) -> Conformer {
        let schema = iceberg_schema_from_arrow(&ArrowSchema::new(fields), "x").unwrap();
        Conformer::new("t.t", Arc::new(schema)).unwrap()
    }

    fn batch(fields: Vec<Field>, cols: Vec<ArrayRef>) -> SourceBatch {
        SourceBatch {
            batch: RecordBatch::try_new(Arc::new(ArrowSchema::new(fields)), cols).unwrap(),
            origin: Arc::from("test.parquet"),
        }
    }

    #[test]
    fn new_schema_is_optional_with_fresh_ids() {
        let arrow = ArrowSchema::new(vec![
            Field::new("a", DataType::Int32, false),
            Field::new(
                "s",
                DataType::Struct(vec![Field::new("x", DataType::Utf8, true)].into()),
                true,
            ),
            Field::new("l", DataType::new_list(DataType::Int64, true), true),
        ]);
        let schema = iceberg_schema_from_arrow(&arrow, "t").unwrap();
        let ids: Vec<i32> = schema.as_struct().fields().iter().map(|f| f.id).collect();
        assert_eq!(ids, vec![1, 2, 3]);
        assert!(schema.as_struct().fields().iter().all(|f| !f.required));
        assert_eq!(schema.highest_field_id(), 5);
    }

    #[test]
    fn unsupported_types_name_the_column() {
        let arrow = ArrowSchema::new(vec![Field::new("u", DataType::UInt64, true)]);
        let err = iceberg_schema_from_arrow(&arrow, "in.parquet")
            .unwrap_err()
            .to_string();
        assert!(err.contains("'u'") && err.contains("in.parquet"), "{err}");
    }

    #[test]
    fn conform_reorders_and_casts() {
        let conformer = conformer_for(vec![
            Field::new("a", DataType::Int32, true),
            Field::new("b", DataType::Utf8, true),
        ]);
        let input = batch(
            vec![
                Field::new("b", DataType::LargeUtf8, true),
                Field::new("a", DataType::Int16, true),
            ],
            vec![
                Arc::new(arrow_array::LargeStringArray::from(vec!["x", "y"])),
                Arc::new(arrow_array::Int16Array::from(vec![1, 2])),
            ],
        );
        let out = conformer.conform(&input).unwrap();
        assert_eq!(out.schema().field(0).name(), "a");
        let a = out.column(0).as_any().downcast_ref::<Int32Array>().unwrap();
        assert_eq!(a.values(), &[1, 2]);
        let b = out
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(b.value(1), "y");
    }

    #[test]
    fn conform_rejects_type_changes_and_missing_columns() {
        let conformer = conformer_for(vec![Field::new("a", DataType::Int64, true)]);
        let wrong = batch(
            vec![Field::new("a", DataType::Utf8, true)],
            vec![Arc::new(StringArray::from(vec!["1"]))],
        );
        let err = conformer.conform(&wrong).unwrap_err().to_string();
        assert!(
            err.contains("column 'a'") && err.contains("test.parquet"),
            "{err}"
        );
        let extra = batch(
            vec![Field::new("b", DataType::Int64, true)],
            vec![Arc::new(arrow_array::Int64Array::from(vec![1]))],
        );
        let err = conformer.conform(&extra).unwrap_err().to_string();
        assert!(err.contains("column 'b' is not in the table"), "{err}");
    }

    #[test]
    fn missing_optional_columns_read_as_null() {
        let conformer = conformer_for(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8, true),
        ]);
        let input = batch(
            vec![Field::new("a", DataType::Int32, true)],
            vec![Arc::new(Int32Array::from(vec![1, 2, 3]))],
        );
        let out = conformer.conform(&input).unwrap();
        assert_eq!(out.column(1).null_count(), 3);
    }
}
