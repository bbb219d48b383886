//! Partition values of a batch: each partition field's transform applied to its source column.
//!
//! iceberg-rust's `PartitionValueCalculator` does the same, but cannot truncate binary columns
//! (Iceberg binary is Arrow `LargeBinary`, and 0.10.1's truncate only takes `Binary`). Here such
//! a column is narrowed to `Binary` for the transform and the result widened back to the
//! partition type; every other transform is iceberg-rust's own.

use std::sync::Arc;

use arrow_array::{ArrayRef, StructArray};
use arrow_schema::{DataType, Fields};
use iceberg::arrow::record_batch_projector::RecordBatchProjector;
use iceberg::arrow::type_to_arrow_type;
use iceberg::spec::{PartitionSpec, Schema, Type};
use iceberg::transform::{BoxedTransformFunction, create_transform_function};
use iceberg::{Error, ErrorKind, Result};

pub(super) struct PartitionValues {
    projector: RecordBatchProjector,
    transforms: Vec<BoxedTransformFunction>,
    fields: Fields,
}

impl PartitionValues {
    pub(super) fn try_new(spec: &PartitionSpec, schema: &Schema) -> Result<Self> {
        let transforms = spec
            .fields()
            .iter()
            .map(|f| create_transform_function(&f.transform))
            .collect::<Result<Vec<_>>>()?;
        let sources: Vec<i32> = spec.fields().iter().map(|f| f.source_id).collect();
        let projector =
            RecordBatchProjector::from_iceberg_schema(Arc::new(schema.clone()), &sources)?;
        let fields = match type_to_arrow_type(&Type::Struct(spec.partition_type(schema)?))? {
            DataType::Struct(fields) => fields,
            other => {
                return Err(Error::new(
                    ErrorKind::Unexpected,
                    format!("partition type maps to {other}, not a struct"),
                ));
            }
        };
        Ok(Self {
            projector,
            transforms,
            fields,
        })
    }

    /// The partition tuple of every row, as a struct array of the partition type.
    pub(super) fn calculate(&self, columns: &[ArrayRef]) -> Result<ArrayRef> {
        let sources = self.projector.project_column(columns)?;
        let mut values = Vec::with_capacity(sources.len());
        for ((source, transform), field) in
            sources.into_iter().zip(&self.transforms).zip(&self.fields)
        {
            let input = if source.data_type() == &DataType::LargeBinary {
                cast(&source, &DataType::Binary)?
            } else {
                source
            };
            let mut value = transform.transform(input)?;
            if value.data_type() != field.data_type() {
                value = cast(&value, field.data_type())?;
            }
            values.push(value);
        }
        let values = StructArray::try_new(self.fields.clone(), values, None)
            .map_err(|e| Error::new(ErrorKind::Unexpected, format!("partition values: {e}")))?;
        Ok(Arc::new(values))
    }
}

fn cast(array: &ArrayRef, to: &DataType) -> Result<ArrayRef> {
    arrow_cast::cast(array, to).map_err(|e| {
        Error::new(
            ErrorKind::Unexpected,
            format!(
                "cannot cast partition source from {} to {to}: {e}",
                array.data_type()
            ),
        )
    })
}
