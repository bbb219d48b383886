//! Iceberg column metrics (sizes, value and null counts, lower and upper bounds) of a Parquet
//! file, read from its footer.
//!
//! iceberg-rust's `ParquetWriter` computes these for the files it encodes, but keeps the code
//! private; floe needs them for the files it assembles from copied column chunks
//! ([`super::splice`]). Parquet's plain encoding of a statistic is already Iceberg's single-value
//! serialization for every type but decimals stored as INT32/INT64 (little-endian integers where
//! Iceberg wants big-endian two's complement), so conversion goes through
//! [`Datum::try_from_bytes`].
//!
//! A column gets bounds only if every row group that holds a non-null value of it carries
//! usable statistics: one row group without them would make any bound a lie.

use std::collections::HashMap;

use iceberg::spec::{
    DataContentType, DataFile, DataFileBuilder, DataFileFormat, Datum, PrimitiveType, Schema,
    Struct, Type,
};
use parquet::basic::Type as PhysicalType;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::statistics::Statistics;

/// A data file entry for an unpartitioned table from the footer of the file written at `path`.
pub fn data_file_from_footer(
    schema: &Schema,
    spec_id: i32,
    path: String,
    file_size: u64,
    footer: &ParquetMetaData,
) -> Result<DataFile, String> {
    let mut sizes: HashMap<i32, u64> = HashMap::new();
    let mut values: HashMap<i32, u64> = HashMap::new();
    // `None` once a chunk of the column has no null count.
    let mut nulls: HashMap<i32, Option<u64>> = HashMap::new();
    let mut bounds: HashMap<i32, Bounds> = HashMap::new();

    for row_group in footer.row_groups() {
        for chunk in row_group.columns() {
            let descr = chunk.column_descr();
            let info = descr.self_type().get_basic_info();
            if !info.has_id() {
                continue;
            }
            let field_id = info.id();
            let num_values = chunk.num_values().max(0) as u64;
            *sizes.entry(field_id).or_default() += chunk.compressed_size().max(0) as u64;
            *values.entry(field_id).or_default() += num_values;
            let null_count = chunk.statistics().and_then(|s| s.null_count_opt());
            let total = nulls.entry(field_id).or_insert(Some(0));
            *total = total.zip(null_count).map(|(a, b)| a + b);

            let state = bounds.entry(field_id).or_insert(Bounds::Unset);
            if null_count == Some(num_values) {
                // Only nulls here: nothing to bound.
                continue;
            }
            // Values inside lists and maps get no bounds, as in Java's writers.
            let ty = (descr.max_rep_level() == 0)
                .then(|| primitive_type(schema, field_id))
                .flatten();
            let chunk_bounds = ty.and_then(|ty| {
                let s = chunk.statistics()?;
                Some((datum(s, ty, true)?, datum(s, ty, false)?))
            });
            state.widen(chunk_bounds);
        }
    }
    let mut lower = HashMap::new();
    let mut upper = HashMap::new();
    for (id, b) in bounds {
        if let Bounds::Known(lo, hi) = b {
            lower.insert(id, lo);
            upper.insert(id, hi);
        }
    }
    let nulls: HashMap<i32, u64> = nulls
        .into_iter()
        .filter_map(|(id, n)| n.map(|n| (id, n)))
        .collect();
    let split_offsets: Vec<i64> = footer
        .row_groups()
        .iter()
        .filter_map(|rg| {
            rg.file_offset().or_else(|| {
                rg.columns().first().map(|c| {
                    c.dictionary_page_offset()
                        .unwrap_or_else(|| c.data_page_offset())
                })
            })
        })
        .collect();
    DataFileBuilder::default()
        .content(DataContentType::Data)
        .file_path(path)
        .file_format(DataFileFormat::Parquet)
        .partition(Struct::empty())
        .partition_spec_id(spec_id)
        .record_count(footer.file_metadata().num_rows().max(0) as u64)
        .file_size_in_bytes(file_size)
        .column_sizes(sizes)
        .value_counts(values)
        .null_value_counts(nulls)
        .lower_bounds(lower)
        .upper_bounds(upper)
        .split_offsets(Some(split_offsets))
        .build()
        .map_err(|e| e.to_string())
}

/// Bounds of one column over the row groups seen so far.
enum Bounds {
    /// No non-null value yet.
    Unset,
    Known(Datum, Datum),
    /// Some row group holds values without usable statistics.
    Unknown,
}

impl Bounds {
    fn widen(&mut self, chunk: Option<(Datum, Datum)>) {
        let next = match (std::mem::replace(self, Bounds::Unknown), chunk) {
            (Bounds::Unknown, _) | (_, None) => Bounds::Unknown,
            (Bounds::Unset, Some((lo, hi))) => Bounds::Known(lo, hi),
            (Bounds::Known(min, max), Some((lo, hi))) => Bounds::Known(
                if lo < min { lo } else { min },
                if hi > max { hi } else { max },
            ),
        };
        *self = next;
    }
}

fn primitive_type(schema: &Schema, field_id: i32) -> Option<&PrimitiveType> {
    match schema.field_by_id(field_id)?.field_type.as_ref() {
        Type::Primitive(p) => Some(p),
        _ => None,
    }
}

/// One statistic as an Iceberg value of type `ty`, if it is a usable bound.
fn datum(stats: &Statistics, ty: &PrimitiveType, min: bool) -> Option<Datum> {
    let physical = stats.physical_type();
    let bytes_like = matches!(
        physical,
        PhysicalType::BYTE_ARRAY | PhysicalType::FIXED_LEN_BYTE_ARRAY
    );
    // Old writers kept byte-array min/max in the deprecated fields, ordered as signed bytes:
    // wrong as soon as a byte is >= 0x80, so never a bound.
    if bytes_like && stats.is_min_max_deprecated() {
        return None;
    }
    // A truncated statistic is still a bound for strings and binary, but a truncated decimal,
    // fixed or uuid is another value altogether.
    let exact = if min {
        stats.min_is_exact()
    } else {
        stats.max_is_exact()
    };
    if bytes_like && !exact && !matches!(ty, PrimitiveType::String | PrimitiveType::Binary) {
        return None;
    }
    let bytes = if min {
        stats.min_bytes_opt()?
    } else {
        stats.max_bytes_opt()?
    };
    let value = match (ty, stats.physical_type()) {
        (PrimitiveType::Decimal { .. }, PhysicalType::INT32) => {
            let v = i32::from_le_bytes(bytes.try_into().ok()?) as i128;
            Datum::try_from_bytes(&v.to_be_bytes(), ty.clone()).ok()?
        }
        (PrimitiveType::Decimal { .. }, PhysicalType::INT64) => {
            let v = i64::from_le_bytes(bytes.try_into().ok()?) as i128;
            Datum::try_from_bytes(&v.to_be_bytes(), ty.clone()).ok()?
        }
        (_, PhysicalType::INT96) => return None,
        _ => Datum::try_from_bytes(bytes, ty.clone()).ok()?,
    };
    use iceberg::spec::PrimitiveLiteral as L;
    match value.literal() {
        // Iceberg bounds never hold NaN (Parquet writers should not either).
        L::Float(f) if f.is_nan() => None,
        L::Double(f) if f.is_nan() => None,
        // Parquet leaves the sign of a zero bound open (readers must widen: a min of +0.0
        // means -0.0 may be present, a max of -0.0 that +0.0 may be); Iceberg orders -0.0 first.
        L::Float(f) if f.0 == 0.0 => Some(Datum::float(if min { -0.0 } else { 0.0 })),
        L::Double(f) if f.0 == 0.0 => Some(Datum::double(if min { -0.0 } else { 0.0 })),
        _ => Some(value),
    }
}

#[cfg(test)]
mod tests {
    use iceberg::spec::PrimitiveLiteral;
    use parquet::file::statistics::ValueStatistics;

    use super::*;

    #[test]
    fn decimals_stored_as_integers_become_big_endian_bounds() {
        let ty = PrimitiveType::Decimal {
            precision: 10,
            scale: 3,
        };
        let stats = Statistics::Int64(ValueStatistics::new(
            Some(-12_345),
            Some(99_999),
            None,
            Some(0),
            false,
        ));
        let lo = datum(&stats, &ty, true).unwrap();
        let hi = datum(&stats, &ty, false).unwrap();
        assert_eq!(lo.data_type(), &ty);
        assert_eq!(lo.literal(), &PrimitiveLiteral::Int128(-12_345));
        assert_eq!(hi.literal(), &PrimitiveLiteral::Int128(99_999));
    }

    #[test]
    fn nan_is_never_a_bound() {
        let stats = Statistics::Double(ValueStatistics::new(
            Some(f64::NAN),
            Some(1.5),
            None,
            Some(0),
            false,
        ));
        assert!(datum(&stats, &PrimitiveType::Double, true).is_none());
        assert_eq!(
            datum(&stats, &PrimitiveType::Double, false),
            Some(Datum::double(1.5))
        );
    }

    #[test]
    fn zero_bounds_widen_to_both_signs() {
        let stats = Statistics::Double(ValueStatistics::new(
            Some(0.0),
            Some(-0.0),
            None,
            Some(0),
            false,
        ));
        let lo = datum(&stats, &PrimitiveType::Double, true).unwrap();
        let hi = datum(&stats, &PrimitiveType::Double, false).unwrap();
        assert!(
            matches!(lo.literal(), PrimitiveLiteral::Double(f) if f.0 == 0.0 && f.0.is_sign_negative())
        );
        assert!(
            matches!(hi.literal(), PrimitiveLiteral::Double(f) if f.0 == 0.0 && f.0.is_sign_positive())
        );
    }

    #[test]
    fn deprecated_or_truncated_byte_statistics_are_not_bounds() {
        use parquet::data_type::ByteArray;
        let legacy = Statistics::ByteArray(ValueStatistics::new(
            Some(ByteArray::from("a")),
            Some(ByteArray::from("z")),
            None,
            Some(0),
            true,
        ));
        assert!(datum(&legacy, &PrimitiveType::String, true).is_none());
        let truncated = Statistics::ByteArray(
            ValueStatistics::new(
                Some(ByteArray::from(vec![0x01u8])),
                Some(ByteArray::from(vec![0x02u8])),
                None,
                Some(0),
                false,
            )
            .with_min_is_exact(false),
        );
        let decimal = PrimitiveType::Decimal {
            precision: 20,
            scale: 2,
        };
        assert!(datum(&truncated, &decimal, true).is_none());
        assert!(datum(&truncated, &decimal, false).is_some());
        assert!(datum(&truncated, &PrimitiveType::Binary, true).is_some());
    }

    #[test]
    fn a_row_group_without_statistics_drops_the_bounds() {
        let mut b = Bounds::Unset;
        b.widen(Some((Datum::long(5), Datum::long(9))));
        b.widen(Some((Datum::long(1), Datum::long(7))));
        assert!(
            matches!(&b, Bounds::Known(lo, hi) if *lo == Datum::long(1) && *hi == Datum::long(9))
        );
        b.widen(None);
        b.widen(Some((Datum::long(0), Datum::long(100))));
        assert!(matches!(b, Bounds::Unknown));
    }
}
