//! Conform: make every input batch look exactly like the table.
//!
//! Columns are matched by name (order never matters), cast to the table's Arrow types, nested
//! structs/lists/maps are rebuilt with the table's field definitions (so Parquet field ids are
//! the table's), and required columns are checked for nulls. Any other difference is an error
//! that names the input and the column path; schema evolution will relax that later.

use std::collections::HashSet;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, ListArray, MapArray, RecordBatch, StructArray};
use arrow_cast::cast;
use arrow_schema::{DataType, Field, FieldRef, Fields, Schema as ArrowSchema, SchemaRef, TimeUnit};
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::spec::{
    ListType, MapType, NestedField, NestedFieldRef, PrimitiveType, Schema, StructType, Type,
};

use crate::error::{FloeError, Result, ResultExt};
use crate::source::SourceBatch;

/// Arrow extension name that marks a 16-byte UUID column.
const ARROW_UUID_EXTENSION: &str = "arrow.uuid";

/// The Iceberg primitive type an Arrow field maps to, or why it has none.
pub fn primitive_of(field: &Field) -> std::result::Result<PrimitiveType, String> {
    if field
        .metadata()
        .get("ARROW:extension:name")
        .is_some_and(|n| n == ARROW_UUID_EXTENSION)
    {
        return Ok(PrimitiveType::Uuid);
    }
    primitive_of_type(field.data_type())
}

fn primitive_of_type(dt: &DataType) -> std::result::Result<PrimitiveType, String> {
    Ok(match dt {
        DataType::Boolean => PrimitiveType::Boolean,
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::UInt8 | DataType::UInt16 => {
            PrimitiveType::Int
        }
        DataType::Int64 | DataType::UInt32 => PrimitiveType::Long,
        DataType::UInt64 => {
            return Err("unsigned 64-bit integers do not fit Iceberg's long; cast to int64 or decimal(20, 0)".into());
        }
        DataType::Float16 | DataType::Float32 => PrimitiveType::Float,
        DataType::Float64 => PrimitiveType::Double,
        DataType::Decimal32(p, s) | DataType::Decimal64(p, s) | DataType::Decimal128(p, s) => {
            decimal(*p, *s)?
        }
        DataType::Decimal256(p, s) => decimal(*p, *s)?,
        DataType::Date32 | DataType::Date64 => PrimitiveType::Date,
        DataType::Time32(_) | DataType::Time64(_) => PrimitiveType::Time,
        // Format v2 stores microseconds; finer units are truncated to microseconds.
        DataType::Timestamp(_, None) => PrimitiveType::Timestamp,
        DataType::Timestamp(_, Some(_)) => PrimitiveType::Timestamptz,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => PrimitiveType::String,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => PrimitiveType::Binary,
        DataType::FixedSizeBinary(n) if *n >= 0 => PrimitiveType::Fixed(*n as u64),
        DataType::Dictionary(_, values) => primitive_of_type(values)?,
        other => return Err(format!("no Iceberg type corresponds to Arrow {other}")),
    })
}

fn decimal(p: u8, s: i8) -> std::result::Result<PrimitiveType, String> {
    if p == 0 || p > 38 || s < 0 || s as u8 > p {
        return Err(format!(
            "decimal({p}, {s}) is outside Iceberg's decimal(1..=38, 0..=P)"
        ));
    }
    Ok(PrimitiveType::Decimal {
        precision: p as u32,
        scale: s as u32,
    })
}

/// The Iceberg schema for a new table whose first input has `schema`: all columns optional,
/// fresh field ids (top-level fields first, then nested ones level by level).
pub fn iceberg_schema_from_arrow(schema: &ArrowSchema, origin: &str) -> Result<Schema> {
    let mut next_id = 0;
    let fields = new_fields(schema.fields(), &mut next_id, "", origin)?;
    Schema::builder()
        .with_fields(fields)
        .build()
        .context(|| format!("cannot derive a table schema from input '{origin}'"))
}

fn new_fields(
    fields: &Fields,
    next_id: &mut i32,
    prefix: &str,
    origin: &str,
) -> Result<Vec<NestedFieldRef>> {
    let mut seen = HashSet::new();
    let ids: Vec<i32> = fields
        .iter()
        .map(|_| {
            *next_id += 1;
            *next_id
        })
        .collect();
    fields
        .iter()
        .zip(ids)
        .map(|(f, id)| {
            let path = join(prefix, f.name());
            if !seen.insert(f.name().as_str()) {
                return Err(FloeError::UnsupportedType {
                    origin: origin.to_string(),
                    column: path,
                    found: f.data_type().to_string(),
                    reason: "the name appears twice".into(),
                });
            }
            let ty = new_type(f, next_id, &path, origin)?;
            Ok(Arc::new(NestedField::optional(id, f.name(), ty)))
        })
        .collect()
}

fn new_type(field: &Field, next_id: &mut i32, path: &str, origin: &str) -> Result<Type> {
    let dt = match field.data_type() {
        DataType::Dictionary(_, v) => v.as_ref(),
        dt => dt,
    };
    Ok(match dt {
        DataType::Struct(fields) => {
            Type::Struct(StructType::new(new_fields(fields, next_id, path, origin)?))
        }
        DataType::List(e) | DataType::LargeList(e) | DataType::FixedSizeList(e, _) => {
            *next_id += 1;
            let id = *next_id;
            let ty = new_type(e, next_id, &join(path, "element"), origin)?;
            Type::List(ListType::new(Arc::new(NestedField::list_element(
                id, ty, false,
            ))))
        }
        DataType::Map(entries, _) => {
            let DataType::Struct(kv) = entries.data_type() else {
                return Err(unsupported(
                    origin,
                    path,
                    dt,
                    "map entries are not a struct",
                ));
            };
            if kv.len() != 2 {
                return Err(unsupported(
                    origin,
                    path,
                    dt,
                    "map entries need a key and a value",
                ));
            }
            let (key_id, value_id) = (*next_id + 1, *next_id + 2);
            *next_id += 2;
            let key = new_type(&kv[0], next_id, &join(path, "key"), origin)?;
            let value = new_type(&kv[1], next_id, &join(path, "value"), origin)?;
            Type::Map(MapType::new(
                Arc::new(NestedField::map_key_element(key_id, key)),
                Arc::new(NestedField::map_value_element(value_id, value, false)),
            ))
        }
        _ => Type::Primitive(primitive_of(field).map_err(|r| unsupported(origin, path, dt, &r))?),
    })
}

fn unsupported(origin: &str, path: &str, dt: &DataType, reason: &str) -> FloeError {
    FloeError::UnsupportedType {
        origin: origin.to_string(),
        column: path.to_string(),
        found: dt.to_string(),
        reason: reason.to_string(),
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Casts batches to one table schema.
#[derive(Debug, Clone)]
pub struct Conformer {
    table: String,
    schema: Arc<Schema>,
    arrow: SchemaRef,
}

struct Ctx<'a> {
    table: &'a str,
    origin: &'a str,
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
        })
    }

    /// The Arrow schema of conformed batches (with Parquet field ids).
    pub fn arrow_schema(&self) -> &SchemaRef {
        &self.arrow
    }

    pub fn iceberg_schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    /// Returns `input` with the table's column order, types and field definitions.
    pub fn conform(&self, input: &SourceBatch) -> Result<RecordBatch> {
        let ctx = Ctx {
            table: &self.table,
            origin: &input.origin,
        };
        let batch = &input.batch;
        let columns = conform_fields(
            batch.schema().fields(),
            batch.columns(),
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
    target_fields: &Fields,
    target_iceberg: &[NestedFieldRef],
    prefix: &str,
    ctx: &Ctx,
) -> Result<Vec<ArrayRef>> {
    let target_names: HashSet<&str> = target_fields.iter().map(|f| f.name().as_str()).collect();
    if let Some(extra) = src_fields
        .iter()
        .find(|f| !target_names.contains(f.name().as_str()))
    {
        return Err(ctx.mismatch(format!(
            "column '{}' is not in the table (adding columns needs schema evolution)",
            join(prefix, extra.name())
        )));
    }
    target_fields
        .iter()
        .zip(target_iceberg)
        .map(|(tf, ti)| {
            let path = join(prefix, tf.name());
            let idx = src_fields
                .iter()
                .position(|f| f.name() == tf.name())
                .ok_or_else(|| ctx.mismatch(format!("the input lacks column '{path}'")))?;
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
    let cast_err = |e| FloeError::Arrow {
        context: format!("input '{}': cannot convert column '{path}'", ctx.origin),
        source: e,
    };
    let (array, src_type) = match src.data_type() {
        DataType::Dictionary(_, values) => (
            cast(array, values).map_err(cast_err)?,
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
            let children = conform_fields(sfields, s.columns(), tfields, ti.fields(), path, ctx)?;
            Arc::new(
                StructArray::try_new(tfields.clone(), children, s.nulls().cloned())
                    .map_err(cast_err)?,
            )
        }
        (DataType::List(te), Type::List(ti)) => {
            let list = match &src_type {
                DataType::List(_) => array.clone(),
                DataType::LargeList(se) | DataType::FixedSizeList(se, _) => {
                    cast(&array, &DataType::List(se.clone())).map_err(cast_err)?
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
            let compatible = sp == *tp
                || matches!(
                    (&sp, tp),
                    (PrimitiveType::Fixed(16), PrimitiveType::Uuid)
                        | (PrimitiveType::Uuid, PrimitiveType::Fixed(16))
                );
            if !compatible {
                return Err(type_error());
            }
            if &src_type == target.data_type() {
                array
            } else {
                cast_primitive(&array, &src_type, target.data_type()).map_err(cast_err)?
            }
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

/// Casts where Arrow's kernel needs a hop (Date64 keeps days, times go through the unit).
fn cast_primitive(
    array: &ArrayRef,
    from: &DataType,
    to: &DataType,
) -> Result<ArrayRef, arrow_schema::ArrowError> {
    match (from, to) {
        (DataType::Time32(_), DataType::Time64(TimeUnit::Microsecond)) => {
            let ms = cast(array, &DataType::Time32(TimeUnit::Millisecond))?;
            cast(&ms, to)
        }
        _ => cast(array, to),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int32Array, StringArray};

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
        let arrow = ArrowSchema::new(vec![
            Field::new("a", DataType::Int32, true),
            Field::new("b", DataType::Utf8, true),
        ]);
        let conformer = Conformer::new(
            "t.t",
            Arc::new(iceberg_schema_from_arrow(&arrow, "x").unwrap()),
        )
        .unwrap();
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
        let arrow = ArrowSchema::new(vec![Field::new("a", DataType::Int64, true)]);
        let conformer = Conformer::new(
            "t.t",
            Arc::new(iceberg_schema_from_arrow(&arrow, "x").unwrap()),
        )
        .unwrap();
        let wrong = batch(
            vec![Field::new("a", DataType::Utf8, true)],
            vec![Arc::new(StringArray::from(vec!["1"]))],
        );
        let err = conformer.conform(&wrong).unwrap_err().to_string();
        assert!(
            err.contains("column 'a'") && err.contains("test.parquet"),
            "{err}"
        );
        let missing = batch(
            vec![Field::new("b", DataType::Int64, true)],
            vec![Arc::new(arrow_array::Int64Array::from(vec![1]))],
        );
        assert!(conformer.conform(&missing).is_err());
    }
}
