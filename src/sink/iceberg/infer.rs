//! A table's columns from records, for a destination without declared
//! columns (Firehose's `TableCreationConfiguration` and
//! `SchemaEvolutionConfiguration`): the top-level fields of JSON objects,
//! typed as `arrow-json` infers them (integers `long`, other numbers
//! `double`, `boolean`, `string`, lists and objects as `list` and
//! `struct`; a field seen with two kinds of value becomes `string`). A
//! field seen only as null has no type yet and is left out until it has one.
//! A column the table is partitioned by time (`hour(ts)`, `day(ts)`, …) is
//! a `timestamptz` whatever the records hold (ISO 8601 text is read into
//! it), and is there even before a record has it.

use arrow_schema::{DataType, Field, Schema as ArrowSchema};
use iceberg::spec::{Schema, Type};

use crate::record::Record;

/// The fields the records hold, sorted by name, with their Arrow types;
/// records that are not JSON objects are passed over (decoding refuses
/// them later, with the reason).
pub fn fields(records: &[Record]) -> Result<Vec<Field>, String> {
    let values = records.iter().filter_map(|r| {
        serde_json::from_slice::<serde_json::Value>(&r.data)
            .ok()
            .filter(serde_json::Value::is_object)
            .map(Ok)
    });
    let schema =
        arrow_json::reader::infer_json_schema_from_iterator(values).map_err(|e| e.to_string())?;
    let mut out: Vec<Field> = schema
        .fields()
        .iter()
        .filter(|f| typed(f.data_type()))
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    out.sort_by(|a, b| a.name().cmp(b.name()));
    Ok(out)
}

/// Whether a type has no part still unknown (null).
fn typed(t: &DataType) -> bool {
    match t {
        DataType::Null => false,
        DataType::List(f) => typed(f.data_type()),
        DataType::Struct(fs) => !fs.is_empty() && fs.iter().all(|f| typed(f.data_type())),
        _ => true,
    }
}

/// The Iceberg schema of a new table for `records` (ids from 1, every
/// column optional), with `time_columns` as `timestamptz`.
pub fn schema(records: &[Record], time_columns: &[&str]) -> Result<Schema, String> {
    let mut fields = fields(records)?;
    let tz = DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, Some("+00:00".into()));
    for c in time_columns {
        fields.retain(|f| f.name() != c);
        fields.push(Field::new(*c, tz.clone(), true));
    }
    fields.sort_by(|a, b| a.name().cmp(b.name()));
    if fields.is_empty() {
        return Err("the records hold no field with a value to make a column of".into());
    }
    iceberg::arrow::arrow_schema_to_schema_auto_assign_ids(&ArrowSchema::new(fields))
        .map_err(|e| e.to_string())
}

/// The Iceberg type of a new top-level column of Arrow type `t`: only
/// primitive ones (a nested field the table lacks is left out).
pub fn column_type(t: &DataType) -> Option<Type> {
    if matches!(
        t,
        DataType::List(_) | DataType::Struct(_) | DataType::Map(..)
    ) {
        return None;
    }
    iceberg::arrow::arrow_type_to_type(t).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn rec(s: &str) -> Record {
        Record {
            offset: 0,
            arrival_ms: 0,
            key: Bytes::new(),
            data: Bytes::from(s.to_string()),
        }
    }

    #[test]
    fn columns_are_inferred_from_the_records_fields() {
        let rs = [
            rec(r#"{"id":"a","n":1,"ok":true,"tags":["x"],"geo":{"lat":1.5},"gone":null}"#),
            rec(r#"{"id":"b","n":2.5,"extra":"e"}"#),
            rec("not json"),
        ];
        let s = schema(&rs, &[]).unwrap();
        let cols: Vec<(String, String)> = s
            .as_struct()
            .fields()
            .iter()
            .map(|f| (f.name.clone(), f.field_type.to_string()))
            .collect();
        let names: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["extra", "geo", "id", "n", "ok", "tags"]);
        let ty = |n: &str| {
            cols.iter()
                .find(|(c, _)| c == n)
                .map(|(_, t)| t.clone())
                .unwrap()
        };
        assert_eq!(ty("n"), "double");
        assert_eq!(ty("ok"), "boolean");
        assert_eq!(ty("id"), "string");
        assert!(s.as_struct().fields().iter().all(|f| !f.required));
        assert!(schema(&[rec(r#"{"a":null}"#)], &[]).is_err());
        // A time-partitioned column is a timestamptz, present or not.
        let t = schema(&rs, &["id", "ts"]).unwrap();
        let ty = |n: &str| t.field_by_name(n).unwrap().field_type.to_string();
        assert_eq!(ty("id"), "timestamptz");
        assert_eq!(ty("ts"), "timestamptz");
        assert_eq!(ty("n"), "double");
        assert_eq!(column_type(&DataType::Int64).unwrap().to_string(), "long");
        assert!(
            column_type(&DataType::List(
                Field::new("item", DataType::Utf8, true).into()
            ))
            .is_none()
        );
    }
}
