//! The mapping from Arrow types to Iceberg types, and the schema of a table floe creates.

use std::collections::HashSet;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema as ArrowSchema};
use iceberg::spec::{
    ListType, MapType, NestedField, NestedFieldRef, PrimitiveType, Schema, StructType, Type,
};

use crate::error::{FloeError, Result, ResultExt};

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

pub(crate) fn new_type(field: &Field, next_id: &mut i32, path: &str, origin: &str) -> Result<Type> {
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

pub(crate) fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}
