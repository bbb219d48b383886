//! Pruning the table's files by the load's keys: key ranges against file bounds, and the
//! partition values of the keys against the files' partitions. A pruned file cannot hold a
//! load key, so the merge never reads it.

use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use iceberg::spec::{Datum, PrimitiveType, Type};

use super::keys::KeyColumns;
use crate::error::{Result, ResultExt};

/// Min and max of every key column seen in the load, for pruning table files.
#[derive(Debug, Default, Clone)]
pub struct KeyRanges {
    ranges: Vec<Option<(Datum, Datum)>>,
}

impl KeyRanges {
    pub(super) fn update(&mut self, keys: &KeyColumns, batch: &RecordBatch) {
        if self.ranges.is_empty() {
            self.ranges = vec![None; keys.indices.len()];
        }
        for (k, &i) in keys.indices.iter().enumerate() {
            let column = batch.column(i);
            let Some((lo, hi)) = min_max(column.as_ref(), &keys.types[k]) else {
                continue;
            };
            self.ranges[k] = Some(match self.ranges[k].take() {
                None => (lo, hi),
                Some((a, b)) => (if lo < a { lo } else { a }, if hi > b { hi } else { b }),
            });
        }
    }

    /// Whether a file with these bounds may hold one of the load's keys.
    pub fn may_match(&self, keys: &KeyColumns, file: &iceberg::spec::DataFile) -> bool {
        for (k, range) in self.ranges.iter().enumerate() {
            let Some((lo, hi)) = range else { continue };
            let id = keys.field_ids[k];
            if let Some(upper) = file.upper_bounds().get(&id)
                && upper.partial_cmp(lo) == Some(std::cmp::Ordering::Less)
            {
                return false;
            }
            if let Some(lower) = file.lower_bounds().get(&id)
                && lower.partial_cmp(hi) == Some(std::cmp::Ordering::Greater)
            {
                return false;
            }
        }
        true
    }
}

fn min_max(array: &dyn Array, ty: &PrimitiveType) -> Option<(Datum, Datum)> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Date32Type, Int32Type, Int64Type, TimestampMicrosecondType};
    macro_rules! prim {
        ($t:ty, $make:expr) => {{
            let a = array.as_primitive_opt::<$t>()?;
            let lo = arrow_arith::aggregate::min(a)?;
            let hi = arrow_arith::aggregate::max(a)?;
            Some(($make(lo), $make(hi)))
        }};
    }
    match (ty, array.data_type()) {
        (PrimitiveType::Int, DataType::Int32) => prim!(Int32Type, Datum::int),
        (PrimitiveType::Long, DataType::Int64) => prim!(Int64Type, Datum::long),
        (PrimitiveType::Date, DataType::Date32) => prim!(Date32Type, Datum::date),
        (PrimitiveType::Timestamp, DataType::Timestamp(_, _)) => {
            prim!(TimestampMicrosecondType, Datum::timestamp_micros)
        }
        (PrimitiveType::Timestamptz, DataType::Timestamp(_, _)) => {
            prim!(TimestampMicrosecondType, Datum::timestamptz_micros)
        }
        (PrimitiveType::String, DataType::Utf8) => {
            let a = array.as_string_opt::<i32>()?;
            let lo = arrow_arith::aggregate::min_string(a)?;
            let hi = arrow_arith::aggregate::max_string(a)?;
            Some((Datum::string(lo), Datum::string(hi)))
        }
        (PrimitiveType::String, DataType::LargeUtf8) => {
            let a = array.as_string_opt::<i64>()?;
            let lo = arrow_arith::aggregate::min_string(a)?;
            let hi = arrow_arith::aggregate::max_string(a)?;
            Some((Datum::string(lo), Datum::string(hi)))
        }
        _ => None,
    }
}

/// Most distinct partition values a load tracks per partition field before it stops pruning
/// by them (the set is the only thing here that grows with the load).
const MAX_TRACKED_PARTITIONS: usize = 100_000;

/// Partition values the load's keys fall in, for partition fields whose source is a key
/// column: a table file of the current spec whose value is not among them holds no load key.
pub struct PartitionFilter {
    spec_id: i32,
    fields: Vec<TrackedField>,
}

struct TrackedField {
    /// Position in the spec (and in a file's partition tuple).
    position: usize,
    /// Column of the conformed batch holding the source.
    column: usize,
    function: iceberg::transform::BoxedTransformFunction,
    result_type: Type,
    values: std::collections::HashSet<iceberg::spec::Literal>,
    overflowed: bool,
}

impl PartitionFilter {
    pub fn new(spec: &iceberg::spec::PartitionSpec, keys: &KeyColumns) -> Result<Self> {
        let mut fields = Vec::new();
        for (position, field) in spec.fields().iter().enumerate() {
            let Some(k) = keys.field_ids.iter().position(|id| *id == field.source_id) else {
                continue;
            };
            if field.transform == iceberg::spec::Transform::Void {
                continue;
            }
            let source = Type::Primitive(keys.types[k].clone());
            let ctx = || format!("cannot evaluate partition transform {}", field.transform);
            fields.push(TrackedField {
                position,
                column: keys.indices[k],
                function: iceberg::transform::create_transform_function(&field.transform)
                    .context(ctx)?,
                result_type: field.transform.result_type(&source).context(ctx)?,
                values: Default::default(),
                overflowed: false,
            });
        }
        Ok(Self {
            spec_id: spec.spec_id(),
            fields,
        })
    }

    pub(super) fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        for f in self.fields.iter_mut().filter(|f| !f.overflowed) {
            let transformed = f
                .function
                .transform(batch.column(f.column).clone())
                .context(|| "cannot evaluate a partition transform".into())?;
            let literals = iceberg::arrow::arrow_primitive_to_literal(&transformed, &f.result_type)
                .context(|| "cannot read partition values".into())?;
            f.values.extend(literals.into_iter().flatten());
            if f.values.len() > MAX_TRACKED_PARTITIONS {
                f.overflowed = true;
                f.values.clear();
            }
        }
        Ok(())
    }

    /// Whether no partition field has a key column as its source (nothing to prune by).
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Whether a file of `spec_id` with `partition` may hold a load key.
    pub fn may_match(&self, spec_id: i32, partition: &iceberg::spec::Struct) -> bool {
        if spec_id != self.spec_id {
            return true;
        }
        self.fields.iter().filter(|f| !f.overflowed).all(|f| {
            match partition.fields().get(f.position) {
                Some(Some(value)) => f.values.contains(value),
                _ => true,
            }
        })
    }
}
