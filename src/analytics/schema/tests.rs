//! Tests of `schema`: type parsing, validation, JSONPath, temporal forms and
//! inference.

use arrow_schema::{DataType, TimeUnit};
use proptest::prelude::*;

use super::super::decode::Decoder;
use super::*;

fn column(name: &str, sql_type: SqlType, mapping: Option<&str>) -> Column {
    Column {
        name: name.to_string(),
        sql_type,
        mapping: mapping.map(str::to_string),
    }
}

fn json(columns: Vec<Column>) -> InputSchema {
    InputSchema {
        format: RecordFormat::json(),
        columns,
    }
}

fn column_error(schema: &InputSchema) -> (usize, String, String) {
    match schema.validate() {
        Err(SchemaError::Column {
            index,
            name,
            reason,
        }) => (index, name, reason),
        other => panic!("expected a column error, got {other:?}"),
    }
}

#[test]
fn sql_types_parse_in_every_spelling() {
    for (text, expected) in [
        ("VARCHAR(8)", SqlType::Varchar(8)),
        ("varchar ( 16 )", SqlType::Varchar(16)),
        ("character varying(3)", SqlType::Varchar(3)),
        ("CHAR", SqlType::Char(1)),
        ("CHARACTER(5)", SqlType::Char(5)),
        ("INT", SqlType::Integer),
        ("integer", SqlType::Integer),
        ("BIGINT", SqlType::Bigint),
        ("SMALLINT", SqlType::Smallint),
        ("TINYINT", SqlType::Tinyint),
        ("DOUBLE", SqlType::Double),
        ("double  precision", SqlType::Double),
        ("FLOAT", SqlType::Double),
        ("REAL", SqlType::Real),
        ("DECIMAL", SqlType::Decimal(19, 0)),
        ("DECIMAL(10)", SqlType::Decimal(10, 0)),
        ("numeric(10, 2)", SqlType::Decimal(10, 2)),
        ("DEC(38,38)", SqlType::Decimal(38, 38)),
        ("BOOLEAN", SqlType::Boolean),
        ("TIMESTAMP", SqlType::Timestamp),
        ("DATE", SqlType::Date),
        ("TIME", SqlType::Time),
    ] {
        let parsed = SqlType::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(parsed, expected, "{text}");
        assert_eq!(
            SqlType::parse(&parsed.sql()),
            Ok(parsed),
            "canonical text of {text}"
        );
    }
    assert_eq!(SqlType::Varchar(8).sql(), "VARCHAR(8)");
    assert_eq!(SqlType::Decimal(10, 2).to_string(), "DECIMAL(10,2)");
}

#[test]
fn bad_sql_types_are_refused_with_a_reason() {
    for (text, reason) in [
        ("VARCHAR(0)", "outside 1..=65535"),
        ("VARCHAR(65536)", "outside 1..=65535"),
        ("VARCHAR", "a length is required"),
        ("VARCHAR(x)", "not a number"),
        ("VARCHAR(8", "missing closing parenthesis"),
        ("DECIMAL(0)", "precision 0"),
        ("DECIMAL(39,2)", "precision 39"),
        ("DECIMAL(5,6)", "scale 6"),
        ("DECIMAL(5,-1)", "scale -1"),
        ("DECIMAL(1,2,3)", "expected precision and scale"),
        ("INT(3)", "takes no arguments"),
        ("BLOB", "unknown type"),
        ("", "unknown type"),
    ] {
        match SqlType::parse(text) {
            Err(SchemaError::Type { reason: got, .. }) => {
                assert!(got.contains(reason), "{text}: {got}")
            }
            other => panic!("{text}: {other:?}"),
        }
    }
}

#[test]
fn sql_types_map_to_arrow_types() {
    for (sql, arrow) in [
        (SqlType::Varchar(3), DataType::Utf8),
        (SqlType::Char(3), DataType::Utf8),
        (SqlType::Integer, DataType::Int32),
        (SqlType::Bigint, DataType::Int64),
        (SqlType::Smallint, DataType::Int16),
        (SqlType::Tinyint, DataType::Int8),
        (SqlType::Double, DataType::Float64),
        (SqlType::Real, DataType::Float32),
        (SqlType::Decimal(12, 3), DataType::Decimal128(12, 3)),
        (SqlType::Boolean, DataType::Boolean),
        (
            SqlType::Timestamp,
            DataType::Timestamp(TimeUnit::Millisecond, None),
        ),
        (SqlType::Date, DataType::Date32),
        (SqlType::Time, DataType::Time32(TimeUnit::Millisecond)),
    ] {
        assert_eq!(sql.arrow(), arrow, "{sql}");
    }
    let schema = json(vec![
        column("a", SqlType::Integer, None),
        column("B", SqlType::Varchar(4), None),
    ]);
    let arrow = schema.arrow_schema();
    assert_eq!(arrow.fields().len(), 2);
    assert!(arrow.fields().iter().all(|f| f.is_nullable()));
    assert_eq!(arrow.field(1).name(), "B");
}

#[test]
fn validation_names_the_column_and_the_reason() {
    let ok = || column("A", SqlType::Integer, None);
    let (index, name, reason) = column_error(&json(vec![ok(), column("", SqlType::Integer, None)]));
    assert_eq!((index, name.as_str()), (1, ""));
    assert!(reason.contains("empty"));
    let (index, name, reason) = column_error(&json(vec![ok(), column("a", SqlType::Bigint, None)]));
    assert_eq!((index, name.as_str()), (1, "a"));
    assert!(reason.contains("duplicates column 0"), "{reason}");
    let (_, _, reason) = column_error(&json(vec![column("1X", SqlType::Integer, None)]));
    assert!(reason.contains("starts with a digit"));
    for bad in ["a-b", "a b", "a<b", "a&b", "a\tb"] {
        let (_, name, reason) = column_error(&json(vec![column(bad, SqlType::Integer, None)]));
        assert_eq!(name, bad);
        assert!(reason.contains("may not have"), "{reason}");
    }
    let long = "N".repeat(257);
    let (_, _, reason) = column_error(&json(vec![column(&long, SqlType::Integer, None)]));
    assert!(reason.contains("longer than 256"), "{reason}");
    assert!(
        json(vec![column(&"N".repeat(256), SqlType::Integer, None)])
            .validate()
            .is_ok()
    );
    let (_, _, reason) = column_error(&json(vec![ok(), column("V", SqlType::Varchar(0), None)]));
    assert!(reason.contains("length 0"), "{reason}");
    let (_, _, reason) = column_error(&json(vec![column("V", SqlType::Varchar(70_000), None)]));
    assert!(reason.contains("length 70000"), "{reason}");
    let (_, _, reason) = column_error(&json(vec![column("N", SqlType::Decimal(40, 0), None)]));
    assert!(reason.contains("precision 40"), "{reason}");
    let (index, _, reason) = column_error(&json(vec![
        ok(),
        column("M", SqlType::Integer, Some("a.b")),
    ]));
    assert_eq!(index, 1);
    assert!(reason.contains("does not start with $"), "{reason}");
    for bad in ["$.", "$..a", "$[\"a\"", "$[x]", "$.a b", "$.a[*]", "$[-1]"] {
        let schema = json(vec![column("M", SqlType::Integer, Some(bad))]);
        assert!(
            matches!(schema.validate(), Err(SchemaError::Column { .. })),
            "{bad}"
        );
    }
    assert_eq!(json(Vec::new()).validate(), Err(SchemaError::NoColumns));
    let many = (0..1001)
        .map(|i| column(&format!("C{i}"), SqlType::Integer, None))
        .collect();
    assert_eq!(
        json(many).validate(),
        Err(SchemaError::TooManyColumns(1001))
    );
}

#[test]
fn format_validation() {
    let csv = |row: &str, col: &str| InputSchema {
        format: RecordFormat::Csv {
            row_delimiter: row.to_string(),
            column_delimiter: col.to_string(),
        },
        columns: vec![column("A", SqlType::Integer, None)],
    };
    assert!(csv("\n", ",").validate().is_ok());
    let mut mapped = csv("\n", ",");
    mapped.columns[0].mapping = Some("_0".to_string());
    assert!(mapped.validate().is_ok(), "csv mappings are not read");
    assert!(
        csv("", ",")
            .validate()
            .unwrap_err()
            .to_string()
            .contains("row delimiter is empty")
    );
    assert!(
        csv("\n", "")
            .validate()
            .unwrap_err()
            .to_string()
            .contains("column delimiter is empty")
    );
    assert!(csv(",", ",").validate().is_err());
    assert!(csv("\n", "\"").validate().is_err());
    let row_path = |path: &str| InputSchema {
        format: RecordFormat::Json {
            row_path: path.to_string(),
        },
        columns: vec![column("A", SqlType::Integer, None)],
    };
    assert!(row_path("$.a[0:]").validate().is_ok());
    assert!(row_path("$.a[*]").validate().is_ok());
    assert!(matches!(
        row_path("$.a[*].b").validate(),
        Err(SchemaError::Format(_))
    ));
    assert!(matches!(
        row_path("a").validate(),
        Err(SchemaError::Format(_))
    ));
}

#[test]
fn json_paths_parse_and_print() {
    use PathSegment::{Each, Index, Key};
    let key = |k: &str| Key(k.to_string());
    for (text, expected) in [
        ("$", vec![]),
        ("$.a", vec![key("a")]),
        ("$.a.b", vec![key("a"), key("b")]),
        ("$[\"a b\"]", vec![key("a b")]),
        ("$['a b']", vec![key("a b")]),
        ("$['it\\'s']", vec![key("it's")]),
        ("$.a[0]", vec![key("a"), Index(0)]),
        ("$.a[0].b", vec![key("a"), Index(0), key("b")]),
        ("$.a[0:]", vec![key("a"), Each]),
        (" $.x ", vec![key("x")]),
    ] {
        let parsed = parse_json_path(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(parsed, expected, "{text}");
        assert_eq!(parse_json_path(&json_path_text(&parsed)), Ok(parsed));
    }
    assert_eq!(
        json_path_text(&[key("a b"), Index(2), key("c")]),
        "$[\"a b\"][2].c"
    );
}

#[test]
fn temporal_parsers() {
    assert_eq!(parse_timestamp_ms("1970-01-01 00:00:00"), Some(0));
    assert_eq!(parse_timestamp_ms("1970-01-01T00:00:00.123456Z"), Some(123));
    assert_eq!(parse_timestamp_ms("1970-01-01T01:00:00+01"), Some(0));
    assert_eq!(parse_timestamp_ms("1970-01-01 00:00:60"), None);
    assert_eq!(parse_timestamp_ms("1970-01-01T00:00:00+24:00"), None);
    assert_eq!(parse_timestamp_ms("70-01-01 00:00:00"), None);
    assert_eq!(parse_epoch_ms("-12"), Some(-12));
    assert_eq!(parse_epoch_ms("1.5"), None);
    assert_eq!(parse_epoch_ms("99999999999999999999"), None);
    assert_eq!(parse_date_days("1970-01-02"), Some(1));
    assert_eq!(parse_date_days("1970-1-02"), None);
    assert_eq!(parse_time_ms("23:59:59.999"), Some(86_399_999));
    assert_eq!(parse_time_ms("01:02"), Some(3_720_000));
    assert_eq!(parse_time_ms("1:02"), None);
}

fn infer_strs(samples: &[&str], hint: Option<&RecordFormat>) -> Result<InputSchema, SchemaError> {
    let bytes: Vec<&[u8]> = samples.iter().map(|s| s.as_bytes()).collect();
    infer(&bytes, hint)
}

fn shape(schema: &InputSchema) -> Vec<(String, String, Option<String>)> {
    schema
        .columns
        .iter()
        .map(|c| (c.name.clone(), c.sql_type.sql(), c.mapping.clone()))
        .collect()
}

fn col(name: &str, ty: &str, mapping: Option<&str>) -> (String, String, Option<String>) {
    (
        name.to_string(),
        ty.to_string(),
        mapping.map(str::to_string),
    )
}

#[test]
fn infer_flattens_json_and_widens_types() {
    let samples = [
        r#"{"ticker_symbol": "AMZN", "sector": "TECHNOLOGY", "change": 1, "price": 10, "qty": 1, "at": "2024-01-02 03:04:05", "day": "2024-01-02", "ok": true, "info": {"a b": 1, "deep": {"x": "y"}}, "tags": [1, 2], "none": null}"#,
        r#"{"ticker_symbol": "KO", "sector": "ENERGY", "change": -0.5, "price": 3000000000, "qty": "n/a", "at": "2024-01-02T03:04:05Z", "day": "2024-01-03", "ok": false, "info": {"a b": 2}, "tags": [], "none": null}"#,
    ];
    let schema = infer_strs(&samples, None).unwrap();
    assert_eq!(schema.format, RecordFormat::json());
    assert_eq!(
        shape(&schema),
        vec![
            col("TICKER_SYMBOL", "VARCHAR(4)", Some("$.ticker_symbol")),
            col("SECTOR", "VARCHAR(16)", Some("$.sector")),
            col("CHANGE", "DOUBLE", Some("$.change")),
            col("PRICE", "BIGINT", Some("$.price")),
            col("QTY", "VARCHAR(4)", Some("$.qty")),
            col("AT", "TIMESTAMP", Some("$.at")),
            col("DAY", "DATE", Some("$.day")),
            col("OK", "BOOLEAN", Some("$.ok")),
            col("INFO_A_B", "INTEGER", Some("$.info[\"a b\"]")),
            col("INFO_DEEP_X", "VARCHAR(4)", Some("$.info.deep.x")),
            col("TAGS", "VARCHAR(8)", Some("$.tags")),
            col("NONE", "VARCHAR(4)", Some("$.none")),
        ]
    );
}

#[test]
fn infer_handles_conflicts_names_and_big_numbers() {
    let samples = [
        r#"{"a": {"b": 1}, "a_b": 2, "A-B": 3, "9lives": 1, "n": 18446744073709551615, "m": 1}"#,
        r#"{"a": "flat now", "n": 1, "m": 1e3}"#,
    ];
    let schema = infer_strs(&samples, None).unwrap();
    assert_eq!(
        shape(&schema),
        vec![
            col("A", "VARCHAR(8)", Some("$.a")),
            col("A_B", "INTEGER", Some("$.a_b")),
            col("A_B_2", "INTEGER", Some("$[\"A-B\"]")),
            col("COL_9LIVES", "INTEGER", Some("$[\"9lives\"]")),
            col("N", "DECIMAL(38,0)", Some("$.n")),
            col("M", "DOUBLE", Some("$.m")),
        ]
    );
}

#[test]
fn infer_follows_a_row_path_hint() {
    let hint = RecordFormat::Json {
        row_path: "$.rows[0:]".to_string(),
    };
    let schema = infer_strs(
        &[r#"{"rows": [{"x": 1}, {"x": 2, "y": "z"}]}"#],
        Some(&hint),
    )
    .unwrap();
    assert_eq!(
        shape(&schema),
        vec![
            col("X", "INTEGER", Some("$.rows[0:].x")),
            col("Y", "VARCHAR(4)", Some("$.rows[0:].y")),
        ]
    );
    let mut decoder = Decoder::new(&schema).unwrap();
    let (batch, _, rejects) = decoder.decode(&[br#"{"rows": [{"x": 5}, {"x": 6}]}"#.as_slice()]);
    assert!(rejects.is_empty());
    assert_eq!(batch.num_rows(), 2);
}

#[test]
fn infer_csv_columns() {
    let samples = [
        "1,abc,2024-01-02 03:04:05,true,1.5\n2,\"x, y\",2024-01-02 03:04:06,false,2,extra\n",
        "3,,2024-01-02 03:04:07,TRUE,3",
    ];
    let schema = infer_strs(&samples, None).unwrap();
    assert_eq!(schema.format, RecordFormat::csv());
    assert_eq!(
        shape(&schema),
        vec![
            col("COL_1", "INTEGER", None),
            col("COL_2", "VARCHAR(4)", None),
            col("COL_3", "TIMESTAMP", None),
            col("COL_4", "BOOLEAN", None),
            col("COL_5", "DOUBLE", None),
        ]
    );
    let hint = RecordFormat::Csv {
        row_delimiter: ";".to_string(),
        column_delimiter: "|".to_string(),
    };
    let schema = infer_strs(&["a|1;b|2;"], Some(&hint)).unwrap();
    assert_eq!(
        shape(&schema),
        vec![
            col("COL_1", "VARCHAR(4)", None),
            col("COL_2", "INTEGER", None)
        ]
    );
    assert_eq!(schema.format, hint);
}

#[test]
fn infer_errors_name_the_sample() {
    assert_eq!(infer(&[], None), Err(SchemaError::NoSamples));
    let err = infer_strs(&[r#"{"a": 1}"#, r#"{"a": "#], None).unwrap_err();
    assert!(
        matches!(err, SchemaError::Sample { index: 1, ref reason } if reason.contains("invalid json")),
        "{err}"
    );
    let err = infer(&[b"{\"a\": 1}".as_slice(), b"\xff".as_slice()], None).unwrap_err();
    assert!(
        matches!(err, SchemaError::Sample { index: 1, ref reason } if reason.contains("utf-8")),
        "{err}"
    );
    let err = infer_strs(&[r#"[1, 2]"#], None).unwrap_err();
    assert!(
        matches!(err, SchemaError::Sample { index: 0, ref reason } if reason.contains("not a json object")),
        "{err}"
    );
    let err = infer_strs(&["a,b", "  "], None).unwrap_err();
    assert!(matches!(err, SchemaError::Sample { index: 1, .. }), "{err}");
    let err = infer_strs(&["a,\"b"], None).unwrap_err();
    assert!(
        matches!(err, SchemaError::Sample { index: 0, ref reason } if reason.contains("unterminated")),
        "{err}"
    );
    assert_eq!(infer_strs(&["{}"], None), Err(SchemaError::NoColumns));
    let long_key = format!("{{\"{}\": 1, \"{}\": 2}}", "k".repeat(300), "k".repeat(299));
    let schema = infer_strs(&[&long_key], None).unwrap();
    assert_eq!(schema.columns[0].name.len(), 248);
    assert_eq!(schema.columns[1].name, format!("{}_2", "K".repeat(248)));
}

fn arb_record() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        Just("null".to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|i| i.to_string()),
        (-1e9f64..1e9).prop_map(|f| format!("{f:?}")),
        "[a-z \\\\\"é]{0,10}".prop_map(|s| serde_json::to_string(&s).unwrap_or_default()),
        Just("\"2024-01-02 03:04:05.678\"".to_string()),
        Just("\"2024-01-02\"".to_string()),
        Just("[1, {\"x\": 2}]".to_string()),
        Just("{\"in\": 1}".to_string()),
    ];
    prop::collection::vec(("[a-c]", value), 0..5).prop_map(|fields| {
        let mut body = vec!["\"id\": 1".to_string()];
        body.extend(fields.iter().map(|(k, v)| format!("\"{k}\": {v}")));
        format!("{{{}}}", body.join(", "))
    })
}

proptest! {
    #[test]
    fn inferred_schema_decodes_its_samples(samples in prop::collection::vec(arb_record(), 1..6)) {
        let bytes: Vec<&[u8]> = samples.iter().map(|s| s.as_bytes()).collect();
        let schema = infer(&bytes, None).unwrap();
        let mut decoder = Decoder::new(&schema).unwrap();
        let (batch, _, rejects) = decoder.decode(&bytes);
        prop_assert!(rejects.is_empty(), "{:?} {:?}", schema, rejects);
        prop_assert_eq!(batch.num_rows(), samples.len());
    }
}
