//! Tests of shaping a pump's SELECT.

use super::*;
use crate::analytics::plan::parse_select;

struct Two;

impl Names for Two {
    fn stream(&self, name: &str) -> Option<String> {
        ["SOURCE_SQL_STREAM_001", "lower"]
            .into_iter()
            .find(|s| s.eq_ignore_ascii_case(name))
            .map(str::to_string)
    }
    fn columns(&self, _stream: &str) -> Vec<String> {
        vec!["TICKER".into(), "EVENT_TIME".into(), "price".into()]
    }
}

fn shaped(sql: &str) -> Result<Shaped, PlanError> {
    shape(parse_select(sql).unwrap(), &Two)
}

#[test]
fn intervals_in_every_spelling_kda_and_flink_use() {
    let ms = |s: &str| interval_ms(&parse_expr(s).unwrap());
    assert_eq!(ms("INTERVAL '60' SECOND"), Ok(60_000));
    assert_eq!(ms("INTERVAL '1' MINUTE"), Ok(60_000));
    assert_eq!(ms("INTERVAL '1 minute'"), Ok(60_000));
    assert_eq!(ms("INTERVAL '2' HOURS"), Ok(7_200_000));
    assert!(
        ms("INTERVAL '1' MONTH").is_err(),
        "months have no fixed length"
    );
    assert!(ms("INTERVAL '0' SECOND").is_err());
    assert!(ms("5").is_err());
}

#[test]
fn a_step_over_rowtime_in_group_by_is_the_window() {
    let s = shaped("SELECT ticker, COUNT(*) FROM source_sql_stream_001 GROUP BY ticker, STEP(\"SOURCE_SQL_STREAM_001\".ROWTIME, INTERVAL '60' SECOND)").unwrap();
    assert_eq!(s.source, "SOURCE_SQL_STREAM_001");
    let w = s.window.unwrap();
    assert_eq!(
        (w.time, w.size_ms, w.slide_ms),
        (TimeColumn::Rowtime, 60_000, 60_000)
    );
    let text = s.query.to_string();
    assert!(
        text.contains("GROUP BY \"window_start\", \"window_end\", \"TICKER\""),
        "{text}"
    );
}

#[test]
fn floor_to_minute_over_a_column_is_an_event_time_window_and_its_value_window_start() {
    let s = shaped("SELECT FLOOR(event_time TO MINUTE) AS m, COUNT(*) FROM \"SOURCE_SQL_STREAM_001\" GROUP BY FLOOR(event_time TO MINUTE)").unwrap();
    let w = s.window.unwrap();
    assert_eq!(w.time, TimeColumn::Column("EVENT_TIME".into()));
    assert_eq!(w.size_ms, 60_000);
    assert!(
        s.query.to_string().contains("\"window_start\" AS m"),
        "{}",
        s.query
    );
}

#[test]
fn with_a_rowtime_window_other_floors_stay_group_keys() {
    let s = shaped("SELECT FLOOR(event_time TO MINUTE), COUNT(*) FROM \"SOURCE_SQL_STREAM_001\" GROUP BY FLOOR(event_time TO MINUTE), STEP(ROWTIME, INTERVAL '1' MINUTE)").unwrap();
    assert_eq!(s.window.unwrap().time, TimeColumn::Rowtime);
    assert!(
        s.query
            .to_string()
            .contains("date_trunc('minute', \"EVENT_TIME\")"),
        "{}",
        s.query
    );
}

#[test]
fn tumble_and_hop_table_functions_with_and_without_descriptor() {
    let s = shaped("SELECT window_start, COUNT(*) FROM TUMBLE(source_sql_stream_001, DESCRIPTOR(event_time), INTERVAL '1' MINUTE) GROUP BY window_start, window_end").unwrap();
    assert_eq!(
        s.window.unwrap().time,
        TimeColumn::Column("EVENT_TIME".into())
    );
    let h = shaped("SELECT COUNT(*) FROM HOP(source_sql_stream_001, event_time, INTERVAL '10' SECOND, INTERVAL '1' MINUTE) GROUP BY window_start, window_end").unwrap();
    let w = h.window.unwrap();
    assert_eq!((w.size_ms, w.slide_ms), (60_000, 10_000));
    assert!(shaped("SELECT COUNT(*) FROM HOP(source_sql_stream_001, event_time, INTERVAL '2' MINUTE, INTERVAL '1' MINUTE) GROUP BY window_start").is_err(), "a slide over the size loses rows");
}

#[test]
fn quoted_names_match_exactly_and_unquoted_ones_ignore_case() {
    let s = shaped("SELECT ticker, PRICE FROM source_sql_stream_001").unwrap();
    assert!(
        s.query.to_string().contains("\"TICKER\", \"price\""),
        "{}",
        s.query
    );
    assert!(shaped("SELECT 1 FROM \"source_sql_stream_001\"").is_err());
    assert!(
        shaped("SELECT 1 FROM nowhere")
            .err()
            .unwrap()
            .reason
            .contains("nowhere")
    );
}

#[test]
fn joins_order_by_and_two_sources_are_refused() {
    for sql in [
        "SELECT 1 FROM source_sql_stream_001 ORDER BY 1",
        "SELECT 1 FROM source_sql_stream_001 a JOIN lower b ON true",
        "SELECT 1 FROM source_sql_stream_001, lower",
        "SELECT 1 FROM source_sql_stream_001 UNION SELECT 1 FROM lower",
    ] {
        assert!(shaped(sql).is_err(), "{sql}");
    }
}
