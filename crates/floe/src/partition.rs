//! Partition specs as users write them: `day(event_time), bucket(16, user_id), region`.
//!
//! Accepted transforms: `identity(c)` or plain `c`, `year(c)`, `month(c)`, `day(c)`,
//! `hour(c)`, `bucket(N, c)`, `truncate(W, c)`, `void(c)`; `bucket[N](c)` and `truncate[W](c)`
//! work too. Columns may be nested (`a.b`). Partition field names follow Iceberg's Java
//! convention (`c`, `c_day`, `c_bucket`, `c_trunc`, `c_null`, ...); `TERM as NAME` names a
//! field explicitly (`bucket(16, id) as id_bucket_16`).

use iceberg::spec::{PartitionSpec, Schema, Transform, Type, UnboundPartitionSpec};

use crate::error::{FloeError, Result};

fn bad(spec: &str, reason: impl Into<String>) -> FloeError {
    FloeError::InvalidOption(format!("--partition-by '{spec}': {}", reason.into()))
}

/// Splits on commas that are not inside parentheses or brackets.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

/// One term: (transform, source column).
/// `TERM as NAME` -> (`TERM`, `Some(NAME)`); the keyword is case-insensitive.
fn split_alias(term: &str) -> (&str, Option<&str>) {
    let term = term.trim();
    let lower = term.to_ascii_lowercase();
    match lower.rfind(" as ") {
        Some(at) if !term[at + 4..].trim().is_empty() => {
            (term[..at].trim(), Some(term[at + 4..].trim()))
        }
        _ => (term, None),
    }
}

fn parse_term(term: &str) -> std::result::Result<(Transform, String), String> {
    let Some(open) = term.find('(') else {
        return Ok((Transform::Identity, term.to_string()));
    };
    let close = term.rfind(')').ok_or("missing ')'")?;
    if close != term.len() - 1 {
        return Err("unexpected text after ')'".into());
    }
    let head = term[..open].trim().to_ascii_lowercase();
    let args: Vec<&str> = term[open + 1..close].split(',').map(str::trim).collect();
    let number = |s: &str| -> std::result::Result<u32, String> {
        s.parse::<u32>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("'{s}' is not a positive number"))
    };
    // bucket[16](c) / truncate[4](c)
    if let Some((name, param)) = head.split_once('[') {
        let n = number(param.trim_end_matches(']'))?;
        let [column] = args.as_slice() else {
            return Err(format!("{name}[{n}](...) takes one column"));
        };
        return match name {
            "bucket" => Ok((Transform::Bucket(n), column.to_string())),
            "truncate" => Ok((Transform::Truncate(n), column.to_string())),
            other => Err(format!("unknown transform '{other}'")),
        };
    }
    match (head.as_str(), args.as_slice()) {
        ("bucket", [n, column]) => Ok((Transform::Bucket(number(n)?), column.to_string())),
        ("truncate", [w, column]) => Ok((Transform::Truncate(number(w)?), column.to_string())),
        ("bucket" | "truncate", _) => Err(format!("{head}(N, column) takes a number and a column")),
        (name, [column]) => {
            let transform = match name {
                "identity" => Transform::Identity,
                "year" | "years" => Transform::Year,
                "month" | "months" => Transform::Month,
                "day" | "days" => Transform::Day,
                "hour" | "hours" => Transform::Hour,
                "void" => Transform::Void,
                other => {
                    return Err(format!(
                        "unknown transform '{other}' (identity, year, month, day, hour, bucket, truncate, void)"
                    ));
                }
            };
            Ok((transform, column.to_string()))
        }
        (name, _) => Err(format!("{name}(...) takes one column")),
    }
}

fn field_name(column: &str, transform: &Transform) -> String {
    let base = column.replace('.', "_");
    match transform {
        Transform::Identity => column.to_string(),
        Transform::Bucket(_) => format!("{base}_bucket"),
        Transform::Truncate(_) => format!("{base}_trunc"),
        Transform::Year => format!("{base}_year"),
        Transform::Month => format!("{base}_month"),
        Transform::Day => format!("{base}_day"),
        Transform::Hour => format!("{base}_hour"),
        Transform::Void => format!("{base}_null"),
        Transform::Unknown => format!("{base}_unknown"),
    }
}

/// Parses `text` against `schema`, checking every column exists and fits its transform.
pub fn parse_partition_spec(text: &str, schema: &Schema) -> Result<UnboundPartitionSpec> {
    let mut builder = PartitionSpec::builder(schema.clone());
    let terms = split_top_level(text);
    if terms.is_empty() {
        return Err(bad(text, "no partition fields"));
    }
    for term in terms {
        let (term, name) = split_alias(term);
        let (transform, column) =
            parse_term(term).map_err(|r| bad(text, format!("'{term}': {r}")))?;
        let field = schema
            .field_by_name(&column)
            .ok_or_else(|| bad(text, format!("no column '{column}' in the table")))?;
        if !matches!(field.field_type.as_ref(), Type::Primitive(_)) {
            return Err(bad(
                text,
                format!(
                    "column '{column}' is {}, not a primitive type",
                    field.field_type
                ),
            ));
        }
        transform.result_type(&field.field_type).map_err(|_| {
            bad(
                text,
                format!(
                    "{transform} cannot partition column '{column}' of type {}",
                    field.field_type
                ),
            )
        })?;
        builder = builder
            .add_partition_field(
                &column,
                name.map_or_else(|| field_name(&column, &transform), str::to_string),
                transform,
            )
            .map_err(|e| bad(text, e.message().to_string()))?;
    }
    let spec = builder
        .build()
        .map_err(|e| bad(text, e.message().to_string()))?;
    Ok(spec.into_unbound())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::{DataType, Field, Schema as ArrowSchema, TimeUnit};

    fn schema() -> Schema {
        crate::conform::iceberg_schema_from_arrow(
            &ArrowSchema::new(vec![
                Field::new(
                    "ts",
                    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                    true,
                ),
                Field::new("user_id", DataType::Int64, true),
                Field::new("name", DataType::Utf8, true),
                Field::new(
                    "s",
                    DataType::Struct(vec![Field::new("d", DataType::Date32, true)].into()),
                    true,
                ),
                Field::new("flag", DataType::Boolean, true),
            ]),
            "t",
        )
        .unwrap()
    }

    #[test]
    fn parses_every_transform() {
        let spec = parse_partition_spec(
            "day(ts), bucket(16, user_id), truncate[4](name), month(s.d), identity(flag)",
            &schema(),
        )
        .unwrap();
        let names: Vec<&str> = spec.fields().iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "ts_day",
                "user_id_bucket",
                "name_trunc",
                "s_d_month",
                "flag"
            ]
        );
        assert_eq!(spec.fields()[1].transform, Transform::Bucket(16));
        let named =
            parse_partition_spec("bucket(16, user_id) AS u16, day(ts) as d", &schema()).unwrap();
        let names: Vec<&str> = named.fields().iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["u16", "d"]);
        assert_eq!(spec.fields()[2].transform, Transform::Truncate(4));
        for ok in [
            "year(ts)",
            "hour(ts)",
            "void(name)",
            "name",
            "bucket[8](name)",
        ] {
            parse_partition_spec(ok, &schema()).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn bad_specs_are_clear_errors() {
        for (spec, expect) in [
            ("day(nope)", "no column 'nope'"),
            ("day(name)", "cannot partition column 'name'"),
            ("bucket(0, user_id)", "not a positive number"),
            ("bucket(user_id)", "takes a number and a column"),
            ("weird(ts)", "unknown transform 'weird'"),
            ("day(ts", "missing ')'"),
            ("s", "not a primitive type"),
            ("", "no partition fields"),
        ] {
            let err = parse_partition_spec(spec, &schema())
                .unwrap_err()
                .to_string();
            assert!(err.contains(expect), "{spec}: {err}");
        }
    }
}
