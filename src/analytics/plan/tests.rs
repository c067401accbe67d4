//! Tests of planning pumps with DataFusion.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema};

use super::*;

fn catalog() -> Catalog {
    let schema = Arc::new(Schema::new(vec![
        Field::new("TICKER", DataType::Utf8, true),
        Field::new("PRICE", DataType::Float64, true),
        Field::new("EVENT_TIME", timestamp_type(), true),
    ]));
    Catalog::new(HashMap::from([(
        "SOURCE_SQL_STREAM_001".to_string(),
        schema,
    )]))
}

#[test]
fn a_filter_and_projection_is_stateless_with_coerced_types() {
    let c = compile(
        "SELECT ticker, price * 2 AS doubled FROM source_sql_stream_001 WHERE price > 10",
        &mut catalog(),
    )
    .unwrap();
    assert!(matches!(c.kind, Kind::Stateless { .. }));
    assert!(c.filter.is_some());
    assert_eq!(c.output.field(1).name(), "doubled");
    assert_eq!(c.output.field(1).data_type(), &DataType::Float64);
}

#[test]
fn a_grouped_window_has_keys_aggregates_and_a_having() {
    let c = compile(
        "SELECT ticker, COUNT(*) AS n, AVG(price) FROM source_sql_stream_001 GROUP BY ticker, STEP(ROWTIME, INTERVAL '1' MINUTE) HAVING COUNT(*) > 2",
        &mut catalog(),
    )
    .unwrap();
    let Kind::Windowed(w) = c.kind else {
        panic!("windowed")
    };
    assert_eq!(w.group_exprs.len(), 3, "window_start, window_end, ticker");
    assert_eq!(w.aggregates.len(), 2, "COUNT(*) once, AVG");
    assert!(w.having.is_some());
    assert_eq!(c.output.fields().len(), 3);
}

#[test]
fn unknown_columns_unknown_functions_and_type_mixes_are_refused_with_a_reason() {
    let e = compile("SELECT nope FROM source_sql_stream_001", &mut catalog())
        .err()
        .unwrap();
    assert!(e.reason.contains("nope"), "{e:?}");
    let e = compile(
        "SELECT no_such_fn(price) FROM source_sql_stream_001",
        &mut catalog(),
    )
    .err()
    .unwrap();
    assert!(e.reason.to_lowercase().contains("no_such_fn"), "{e:?}");
    assert!(
        compile(
            "SELECT ticker FROM source_sql_stream_001 WHERE ticker > now() + 1",
            &mut catalog()
        )
        .is_err()
    );
    let e = compile(
        "SELECT ticker FROM source_sql_stream_001 GROUP BY ticker",
        &mut catalog(),
    )
    .err()
    .unwrap();
    assert!(e.reason.contains("needs a window"), "{e:?}");
    let e = compile("SELECT price FROM TUMBLE(source_sql_stream_001, ticker, INTERVAL '1' MINUTE) GROUP BY window_start, window_end, price", &mut catalog()).err().unwrap();
    assert!(e.reason.contains("not a TIMESTAMP"), "{e:?}");
}
