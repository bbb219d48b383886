//! Schema evolution: the table schema a load needs, decided before any data is written.
//!
//! Columns are matched by name. Allowed (`add-columns`, the default): new columns anywhere
//! (top level, inside structs, list elements and map values), added optional with fresh field
//! ids; widening int -> long, float -> double, decimal(P,S) -> decimal(P2,S) with P2 > P; and
//! required -> optional when the input declares the column nullable. Input that is narrower
//! than the table (int into long) needs no change: conform casts it. Anything else is an error
//! naming the column path and both types. `strict` refuses every change the same way.
//!
//! The new schema goes into the load's single commit, together with the snapshot that uses it.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema as ArrowSchema};
use iceberg::spec::{
    ListType, MapType, NestedField, NestedFieldRef, PrimitiveType, Schema, StructType, Type,
};

use super::types::{join, new_type, primitive_of};
use crate::error::{FloeError, Result, ResultExt};

/// What a load may do to the table's schema.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemaEvolution {
    /// Add new columns and widen types safely (the default).
    #[default]
    AddColumns,
    /// Refuse any change to the table's schema.
    Strict,
}

/// `add-columns` or `strict`.
impl std::str::FromStr for SchemaEvolution {
    type Err = crate::error::FloeError;
    fn from_str(s: &str) -> crate::error::Result<Self> {
        crate::error::parse_choice("schema evolution", s)
    }
}

/// The outcome of evolving a schema against an input.
#[derive(Debug, Clone)]
pub struct Evolution {
    /// The schema the load writes with (the table's own if nothing changed).
    pub schema: Schema,
    /// Human-readable changes, e.g. `added column 'tags' (list<string>)`.
    pub changes: Vec<String>,
}

struct Ctx<'a> {
    table: &'a str,
    origin: &'a str,
    mode: SchemaEvolution,
    next_id: i32,
    changes: Vec<String>,
}

impl Ctx<'_> {
    fn refuse(&self, detail: String) -> FloeError {
        FloeError::SchemaMismatch {
            origin: self.origin.to_string(),
            table: self.table.to_string(),
            detail,
        }
    }

    fn change(&mut self, what: String) -> Result<()> {
        if self.mode == SchemaEvolution::Strict {
            return Err(self.refuse(format!(
                "{what}, and --schema-evolution strict refuses schema changes"
            )));
        }
        self.changes.push(what);
        Ok(())
    }
}

/// Evolves `table` (whose highest ever assigned field id is `last_column_id`) so that `input`
/// fits it.
pub fn evolve(
    table: &Schema,
    last_column_id: i32,
    input: &ArrowSchema,
    mode: SchemaEvolution,
    table_name: &str,
    origin: &str,
) -> Result<Evolution> {
    let mut ctx = Ctx {
        table: table_name,
        origin,
        mode,
        next_id: last_column_id.max(table.highest_field_id()),
        changes: Vec::new(),
    };
    let fields = merge_struct(table.as_struct().fields(), input.fields(), "", &mut ctx)?;
    if ctx.changes.is_empty() {
        return Ok(Evolution {
            schema: table.clone(),
            changes: vec![],
        });
    }
    let schema = Schema::builder()
        .with_schema_id(table.schema_id())
        .with_identifier_field_ids(table.identifier_field_ids())
        .with_fields(fields)
        .build()
        .context(|| format!("table {table_name}: the evolved schema is invalid"))?;
    Ok(Evolution {
        schema,
        changes: ctx.changes,
    })
}

fn merge_struct(
    table: &[NestedFieldRef],
    input: &Fields,
    prefix: &str,
    ctx: &mut Ctx,
) -> Result<Vec<NestedFieldRef>> {
    let mut out = Vec::with_capacity(table.len());
    for tf in table {
        match input.iter().find(|f| f.name() == &tf.name) {
            None => out.push(tf.clone()),
            Some(inf) => out.push(merge_field(tf, inf, &join(prefix, &tf.name), ctx)?),
        }
    }
    for inf in input
        .iter()
        .filter(|f| !table.iter().any(|t| &t.name == f.name()))
    {
        let path = join(prefix, inf.name());
        let id = ctx.next_id + 1;
        ctx.next_id += 1;
        let mut next = ctx.next_id;
        let ty = new_type(inf, &mut next, &path, ctx.origin)?;
        ctx.next_id = next;
        ctx.change(format!("added column '{path}' ({ty})"))?;
        out.push(Arc::new(NestedField::optional(id, inf.name(), ty)));
    }
    Ok(out)
}

fn merge_field(
    tf: &NestedFieldRef,
    inf: &Field,
    path: &str,
    ctx: &mut Ctx,
) -> Result<NestedFieldRef> {
    let ty = merge_type(&tf.field_type, inf, path, ctx)?;
    let mut required = tf.required;
    if tf.required && inf.is_nullable() {
        ctx.change(format!("column '{path}' became optional"))?;
        required = false;
    }
    if ty == *tf.field_type && required == tf.required {
        return Ok(tf.clone());
    }
    let mut field = tf.as_ref().clone();
    field.field_type = Box::new(ty);
    field.required = required;
    Ok(Arc::new(field))
}

fn element_of(dt: &DataType) -> Option<&Arc<Field>> {
    match dt {
        DataType::List(e) | DataType::LargeList(e) | DataType::FixedSizeList(e, _) => Some(e),
        _ => None,
    }
}

fn merge_type(table: &Type, inf: &Field, path: &str, ctx: &mut Ctx) -> Result<Type> {
    let input_dt = match inf.data_type() {
        DataType::Dictionary(_, v) => v.as_ref(),
        dt => dt,
    };
    let incompatible = |ctx: &Ctx| {
        ctx.refuse(format!(
            "column '{path}' cannot change from {table} to {}",
            describe_input(inf)
        ))
    };
    match (table, input_dt) {
        (Type::Struct(ts), DataType::Struct(fields)) => Ok(Type::Struct(StructType::new(
            merge_struct(ts.fields(), fields, path, ctx)?,
        ))),
        (Type::List(lt), dt) if element_of(dt).is_some() => {
            let element = element_of(dt).expect("checked");
            let merged = merge_field(&lt.element_field, element, &join(path, "element"), ctx)?;
            Ok(Type::List(ListType::new(merged)))
        }
        (Type::Map(mt), DataType::Map(entries, _)) => {
            let DataType::Struct(kv) = entries.data_type() else {
                return Err(incompatible(ctx));
            };
            if kv.len() != 2 {
                return Err(incompatible(ctx));
            }
            let key = merge_field(&mt.key_field, &kv[0], &join(path, "key"), ctx)?;
            let value = merge_field(&mt.value_field, &kv[1], &join(path, "value"), ctx)?;
            Ok(Type::Map(MapType::new(key, value)))
        }
        (Type::Primitive(tp), dt) if !dt.is_nested() => {
            let ip = primitive_of(inf).map_err(|_| incompatible(ctx))?;
            match widen(tp, &ip) {
                Fit::Same => Ok(table.clone()),
                Fit::Widen(to) => {
                    ctx.change(format!("column '{path}' widened from {tp} to {to}"))?;
                    Ok(Type::Primitive(to))
                }
                Fit::No => Err(incompatible(ctx)),
            }
        }
        _ => Err(incompatible(ctx)),
    }
}

fn describe_input(f: &Field) -> String {
    match primitive_of(f) {
        Ok(p) => p.to_string(),
        Err(_) => f.data_type().to_string(),
    }
}

enum Fit {
    /// The table's type holds the input as it is (possibly after a lossless cast).
    Same,
    /// The table's type must widen to this.
    Widen(PrimitiveType),
    No,
}

fn widen(table: &PrimitiveType, input: &PrimitiveType) -> Fit {
    use PrimitiveType as P;
    match (table, input) {
        (t, i) if t == i => Fit::Same,
        (P::Uuid, P::Fixed(16)) | (P::Fixed(16), P::Uuid) => Fit::Same,
        (P::Long, P::Int) | (P::Double, P::Float) => Fit::Same,
        (P::Int, P::Long) => Fit::Widen(P::Long),
        (P::Float, P::Double) => Fit::Widen(P::Double),
        (
            P::Decimal {
                precision: tp,
                scale: ts,
            },
            P::Decimal {
                precision: ip,
                scale: is,
            },
        ) if ts == is => {
            if ip <= tp {
                Fit::Same
            } else {
                Fit::Widen(P::Decimal {
                    precision: *ip,
                    scale: *is,
                })
            }
        }
        _ => Fit::No,
    }
}

/// Whether values of input type `input` can be stored in a table column of type `table`
/// without changing the table (conform casts them).
pub fn fits(table: &PrimitiveType, input: &PrimitiveType) -> bool {
    matches!(widen(table, input), Fit::Same)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conform::iceberg_schema_from_arrow;

    fn table(fields: Vec<Field>) -> Schema {
        iceberg_schema_from_arrow(&ArrowSchema::new(fields), "t").unwrap()
    }

    fn run(t: &Schema, input: Vec<Field>, mode: SchemaEvolution) -> Result<Evolution> {
        evolve(
            t,
            t.highest_field_id(),
            &ArrowSchema::new(input),
            mode,
            "ns.t",
            "in.parquet",
        )
    }

    #[test]
    fn adds_columns_with_fresh_ids_at_every_level() {
        let t = table(vec![
            Field::new("id", DataType::Int64, true),
            Field::new(
                "s",
                DataType::Struct(vec![Field::new("a", DataType::Int32, true)].into()),
                true,
            ),
        ]);
        let last = t.highest_field_id();
        let e = run(
            &t,
            vec![
                Field::new(
                    "s",
                    DataType::Struct(
                        vec![
                            Field::new("a", DataType::Int32, true),
                            Field::new("b", DataType::Utf8, true),
                        ]
                        .into(),
                    ),
                    true,
                ),
                Field::new("new", DataType::new_list(DataType::Utf8, true), true),
                Field::new("id", DataType::Int64, true),
            ],
            SchemaEvolution::AddColumns,
        )
        .unwrap();
        assert_eq!(e.changes.len(), 2, "{:?}", e.changes);
        let b = e.schema.field_by_name("s.b").unwrap();
        assert!(b.id > last && !b.required);
        let new = e.schema.field_by_name("new").unwrap();
        assert!(new.id > last && new.id != b.id);
        // Existing ids never move.
        assert_eq!(
            e.schema.field_by_name("id").unwrap().id,
            t.field_by_name("id").unwrap().id
        );
        // Order: existing columns first, new ones appended.
        let names: Vec<&str> = e
            .schema
            .as_struct()
            .fields()
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(names, ["id", "s", "new"]);
    }

    #[test]
    fn widens_safely_and_refuses_the_rest() {
        let t = table(vec![
            Field::new("i", DataType::Int32, true),
            Field::new("f", DataType::Float32, true),
            Field::new("d", DataType::Decimal128(10, 2), true),
            Field::new("l", DataType::Int64, true),
        ]);
        let e = run(
            &t,
            vec![
                Field::new("i", DataType::Int64, true),
                Field::new("f", DataType::Float64, true),
                Field::new("d", DataType::Decimal128(12, 2), true),
                Field::new("l", DataType::Int32, true),
            ],
            SchemaEvolution::AddColumns,
        )
        .unwrap();
        assert_eq!(e.changes.len(), 3, "{:?}", e.changes);
        assert_eq!(
            *e.schema.field_by_name("i").unwrap().field_type,
            Type::Primitive(PrimitiveType::Long)
        );
        assert_eq!(
            *e.schema.field_by_name("l").unwrap().field_type,
            Type::Primitive(PrimitiveType::Long)
        );

        for (input, expect) in [
            (
                Field::new("l", DataType::Utf8, true),
                "column 'l' cannot change from long to string",
            ),
            (
                Field::new("d", DataType::Decimal128(12, 3), true),
                "column 'd' cannot change from decimal(10, 2) to decimal(12, 3)",
            ),
            (
                Field::new("i", DataType::new_list(DataType::Int32, true), true),
                "column 'i' cannot change from int to",
            ),
        ] {
            let err = run(&t, vec![input], SchemaEvolution::AddColumns)
                .unwrap_err()
                .to_string();
            assert!(err.contains(expect), "{err}");
            assert!(err.contains("in.parquet") && err.contains("ns.t"), "{err}");
        }
    }

    #[test]
    fn strict_refuses_every_change() {
        let t = table(vec![Field::new("i", DataType::Int32, true)]);
        for input in [
            vec![
                Field::new("i", DataType::Int32, true),
                Field::new("x", DataType::Utf8, true),
            ],
            vec![Field::new("i", DataType::Int64, true)],
        ] {
            let err = run(&t, input, SchemaEvolution::Strict)
                .unwrap_err()
                .to_string();
            assert!(err.contains("strict"), "{err}");
        }
        // No change, or a narrower input: fine even when strict.
        assert!(
            run(
                &t,
                vec![Field::new("i", DataType::Int16, true)],
                SchemaEvolution::Strict
            )
            .unwrap()
            .changes
            .is_empty()
        );
    }
}
