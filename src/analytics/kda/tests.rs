//! Tests of the KDA dialect front end.

use super::*;
use proptest::prelude::*;
use sqlparser::ast::{GroupByExpr, Query, SetExpr};

/// Parses core SQL the way the planner will, insisting on one query.
fn reparse(sql: &str) -> Box<Query> {
    let statements = Parser::parse_sql(&GenericDialect {}, sql);
    match statements {
        Ok(mut s) if s.len() == 1 => match s.pop() {
            Some(Statement::Query(q)) => q,
            other => panic!("not a query: {other:?}"),
        },
        other => panic!("does not parse as one statement: {other:?}\n{sql}"),
    }
}

fn group_by_len(query: &Query) -> usize {
    match query.body.as_ref() {
        SetExpr::Select(select) => match &select.group_by {
            GroupByExpr::Expressions(exprs, _) => exprs.len(),
            GroupByExpr::All(_) => usize::MAX,
        },
        other => panic!("not a plain select: {other}"),
    }
}

fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn columns(decl: &StreamDecl) -> Vec<(&str, &str)> {
    decl.columns
        .iter()
        .map(|c| (c.name.as_str(), c.sql_type.as_str()))
        .collect()
}

fn parse_ok(code: &str) -> Program {
    match parse_program(code) {
        Ok(p) => p,
        Err(e) => panic!("rejected: {e}\n{code}"),
    }
}

fn parse_err(code: &str) -> KdaError {
    match parse_program(code) {
        Ok(p) => panic!("accepted: {p:?}\n{code}"),
        Err(e) => e,
    }
}

const CONTINUOUS_FILTER: &str = r#"CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (ticker_symbol VARCHAR(4), sector VARCHAR(12), change DOUBLE, price DOUBLE);
CREATE OR REPLACE PUMP "STREAM_PUMP" AS INSERT INTO "DESTINATION_SQL_STREAM"
    SELECT STREAM ticker_symbol, sector, change, price
    FROM   "SOURCE_SQL_STREAM_001"
    WHERE  sector SIMILAR TO '%TECH%';
"#;

#[test]
fn continuous_filter_template() {
    let p = parse_ok(CONTINUOUS_FILTER);
    assert_eq!(p.streams.len(), 1);
    let s = &p.streams[0];
    assert_eq!(s.name, "DESTINATION_SQL_STREAM");
    assert_eq!(s.line, 1);
    assert_eq!(
        columns(s),
        [
            ("TICKER_SYMBOL", "VARCHAR(4)"),
            ("SECTOR", "VARCHAR(12)"),
            ("CHANGE", "DOUBLE"),
            ("PRICE", "DOUBLE")
        ]
    );
    assert_eq!(p.pumps.len(), 1);
    let pump = &p.pumps[0];
    assert_eq!(pump.name, "STREAM_PUMP");
    assert_eq!(pump.target, "DESTINATION_SQL_STREAM");
    assert!(pump.target_columns.is_empty());
    assert_eq!((pump.statement, pump.line, pump.stagger), (2, 2, false));
    assert_eq!(
        pump.select,
        "SELECT ticker_symbol, sector, change, price\n    FROM   \"SOURCE_SQL_STREAM_001\"\n    WHERE  sector SIMILAR TO '%TECH%'"
    );
    let q = reparse(&pump.select);
    assert!(q.to_string().contains("sector SIMILAR TO '%TECH%'"));
}

#[test]
fn tumbling_count_template_rewrites_step() {
    let code = r#"CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (ticker_symbol VARCHAR(4), ticker_symbol_count INTEGER);
CREATE OR REPLACE PUMP "STREAM_PUMP" AS INSERT INTO "DESTINATION_SQL_STREAM"
SELECT STREAM ticker_symbol, COUNT(*) AS ticker_symbol_count
FROM "SOURCE_SQL_STREAM_001"
GROUP BY ticker_symbol, STEP("SOURCE_SQL_STREAM_001".ROWTIME BY INTERVAL '60' SECOND);
"#;
    let p = parse_ok(code);
    assert_eq!(
        columns(&p.streams[0]),
        [
            ("TICKER_SYMBOL", "VARCHAR(4)"),
            ("TICKER_SYMBOL_COUNT", "INTEGER")
        ]
    );
    let pump = &p.pumps[0];
    assert_eq!(pump.target, "DESTINATION_SQL_STREAM");
    assert_eq!(
        squash(&pump.select),
        "SELECT ticker_symbol, COUNT(*) AS ticker_symbol_count FROM \"SOURCE_SQL_STREAM_001\" \
         GROUP BY ticker_symbol, STEP(\"SOURCE_SQL_STREAM_001\".ROWTIME, INTERVAL '60' SECOND)"
    );
    assert_eq!(group_by_len(&reparse(&pump.select)), 2);
}

#[test]
fn floor_tumbling_with_quoted_identifiers() {
    let code = r#"
-- per-minute counts, names quoted in mixed case
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (
    "tickerSymbol" VARCHAR(4),
    "eventMinute"  TIMESTAMP,
    "tickerCount"  BIGINT NOT NULL);
CREATE OR REPLACE PUMP "StreamPump" AS INSERT INTO "DESTINATION_SQL_STREAM" ("tickerSymbol", "eventMinute", "tickerCount")
  SELECT STREAM "tickerSymbol",
         FLOOR("SOURCE_SQL_STREAM_001".ROWTIME TO MINUTE) AS "eventMinute",
         COUNT(*) AS "tickerCount"
  FROM "SOURCE_SQL_STREAM_001"
  GROUP BY "tickerSymbol", FLOOR("SOURCE_SQL_STREAM_001".ROWTIME TO MINUTE);
"#;
    let p = parse_ok(code);
    let s = &p.streams[0];
    assert_eq!(s.line, 3);
    assert_eq!(
        columns(s),
        [
            ("tickerSymbol", "VARCHAR(4)"),
            ("eventMinute", "TIMESTAMP"),
            ("tickerCount", "BIGINT")
        ]
    );
    let pump = &p.pumps[0];
    assert_eq!(pump.name, "StreamPump");
    assert_eq!(
        pump.target_columns,
        ["tickerSymbol", "eventMinute", "tickerCount"]
    );
    assert_eq!((pump.statement, pump.line), (2, 7));
    assert!(pump.select.starts_with("SELECT \"tickerSymbol\",\n"));
    assert!(!pump.select.contains("STREAM \""));
    let q = reparse(&pump.select);
    assert_eq!(group_by_len(&q), 2);
    assert!(
        q.to_string()
            .contains("FLOOR(\"SOURCE_SQL_STREAM_001\".ROWTIME TO MINUTE)")
    );
}

#[test]
fn stagger_window_becomes_group_by() {
    let code = r#"CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (
    ticker_symbol    VARCHAR(4),
    event_time       TIMESTAMP,
    ticker_count     DOUBLE);

CREATE OR REPLACE PUMP "STREAM_PUMP" AS
  INSERT INTO "DESTINATION_SQL_STREAM"
    SELECT STREAM
        TICKER_SYMBOL,
        FLOOR(EVENT_TIME TO MINUTE),
        COUNT(TICKER_SYMBOL) AS ticker_count
    FROM "SOURCE_SQL_STREAM_001" WINDOWED BY STAGGER (PARTITION BY FLOOR(EVENT_TIME TO MINUTE), TICKER RANGE INTERVAL '1' MINUTE);
"#;
    let p = parse_ok(code);
    let pump = &p.pumps[0];
    assert!(pump.stagger);
    assert_eq!(pump.line, 6);
    assert!(
        pump.select.ends_with(
            "FROM \"SOURCE_SQL_STREAM_001\" GROUP BY FLOOR(EVENT_TIME TO MINUTE), TICKER"
        ),
        "{}",
        pump.select
    );
    assert!(pump.select.starts_with("SELECT\n        TICKER_SYMBOL,"));
    assert_eq!(group_by_len(&reparse(&pump.select)), 2);
    assert!(!p.pumps.iter().any(|p| p.select.contains("RANGE")));
}

#[test]
fn stagger_with_step_key_and_having_keeps_clause_order() {
    let code = "INSERT INTO alerts SELECT STREAM \"deviceid\", COUNT(*) AS n FROM temps \
                WHERE t > 30 WINDOWED BY STAGGER(PARTITION BY \"deviceid\", \
                STEP(\"datetime\" BY INTERVAL '2' MINUTE) RANGE INTERVAL '2' MINUTE)HAVING COUNT(*) > 1";
    let p = parse_ok(code);
    let pump = &p.pumps[0];
    assert!(pump.stagger);
    assert_eq!(
        squash(&pump.select),
        "SELECT \"deviceid\", COUNT(*) AS n FROM temps WHERE t > 30 GROUP BY \"deviceid\", \
         STEP(\"datetime\", INTERVAL '2' MINUTE) HAVING COUNT(*) > 1"
    );
    let q = reparse(&pump.select);
    assert_eq!(group_by_len(&q), 2);
}

#[test]
fn stagger_in_a_subquery_only_looks_at_its_own_group_by() {
    let code = "INSERT INTO o SELECT a, n FROM (SELECT STREAM a, COUNT(*) AS n FROM s \
                WINDOWED BY STAGGER (PARTITION BY a RANGE INTERVAL '1' MINUTE)) GROUP BY a, n";
    let pump = &parse_ok(code).pumps[0];
    assert!(pump.stagger);
    assert_eq!(
        squash(&pump.select),
        "SELECT a, n FROM (SELECT a, COUNT(*) AS n FROM s GROUP BY a) GROUP BY a, n"
    );
    reparse(&pump.select);
}

#[test]
fn stagger_with_group_by_is_rejected() {
    let code = "INSERT INTO o SELECT STREAM a, COUNT(*) FROM s\nGROUP BY a\n\
                WINDOWED BY STAGGER (PARTITION BY a RANGE INTERVAL '1' MINUTE)";
    let e = parse_err(code);
    assert!(matches!(e, KdaError::Syntax { .. }), "{e:?}");
    assert_eq!((e.statement(), e.line(), e.column()), (1, 2, 1));
    assert!(e.reason().contains("GROUP BY"), "{e}");
}

#[test]
fn stagger_followed_by_group_by_or_a_second_stagger_is_rejected() {
    let e = parse_err(
        "INSERT INTO o SELECT a FROM s WINDOWED BY STAGGER (PARTITION BY a RANGE INTERVAL '1' MINUTE)\nGROUP BY a",
    );
    assert_eq!((e.line(), e.column()), (2, 1), "{e}");
    assert!(e.reason().contains("GROUP BY"), "{e}");
    let stagger = "WINDOWED BY STAGGER (PARTITION BY a RANGE INTERVAL '1' MINUTE)";
    let e = parse_err(&format!(
        "INSERT INTO o SELECT a FROM s {stagger}\n {stagger}"
    ));
    assert!(matches!(e, KdaError::Query { .. }), "{e:?}");
    assert_eq!((e.line(), e.column()), (2, 2), "{e}");
}

#[test]
fn malformed_stagger_is_rejected() {
    let e = parse_err("INSERT INTO o SELECT a FROM s WINDOWED BY STAGGER (PARTITION BY a)");
    assert!(e.reason().contains("expected RANGE"), "{e}");
    let e = parse_err("INSERT INTO o SELECT a FROM s WINDOWED BY TUMBLING (a)");
    assert!(e.reason().contains("STAGGER"), "{e}");
    assert_eq!(e.column(), 43);
    let e = parse_err(
        "INSERT INTO o SELECT a FROM s WINDOWED BY STAGGER (PARTITION BY RANGE INTERVAL '1' MINUTE)",
    );
    assert!(e.reason().contains("partition keys"), "{e}");
}

#[test]
fn two_pump_chain() {
    let code = r#"
CREATE OR REPLACE STREAM "INTERMEDIATE_SQL_STREAM" (ticker_symbol VARCHAR(4), price DECIMAL( 10 , 2 ));
CREATE OR REPLACE PUMP "PUMP_1" AS INSERT INTO "INTERMEDIATE_SQL_STREAM"
    SELECT STREAM ticker_symbol, price FROM "SOURCE_SQL_STREAM_001" WHERE price > 10;

CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (ticker_symbol VARCHAR(4), avg_price DOUBLE PRECISION);
create or replace pump pump_2 as insert into "DESTINATION_SQL_STREAM"
    select stream ticker_symbol, AVG(price) AS avg_price
    FROM "INTERMEDIATE_SQL_STREAM"
    GROUP BY ticker_symbol, step("INTERMEDIATE_SQL_STREAM".ROWTIME by interval '10' second);
"#;
    let p = parse_ok(code);
    let names: Vec<_> = p.streams.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["INTERMEDIATE_SQL_STREAM", "DESTINATION_SQL_STREAM"]);
    assert_eq!(columns(&p.streams[0])[1], ("PRICE", "DECIMAL(10,2)"));
    assert_eq!(columns(&p.streams[1])[1], ("AVG_PRICE", "DOUBLE PRECISION"));
    let pumps: Vec<_> = p
        .pumps
        .iter()
        .map(|p| (p.name.as_str(), p.target.as_str(), p.statement, p.line))
        .collect();
    assert_eq!(
        pumps,
        [
            ("PUMP_1", "INTERMEDIATE_SQL_STREAM", 2, 3),
            ("PUMP_2", "DESTINATION_SQL_STREAM", 4, 7)
        ]
    );
    assert!(p.pumps[0].select.contains("FROM \"SOURCE_SQL_STREAM_001\""));
    assert!(
        p.pumps[1]
            .select
            .starts_with("select ticker_symbol, AVG(price)")
    );
    assert!(
        p.pumps[1]
            .select
            .ends_with("ROWTIME, interval '10' second)")
    );
    for pump in &p.pumps {
        reparse(&pump.select);
    }
}

#[test]
fn comments_and_semicolons_inside_strings_do_not_split() {
    let code = "-- header comment; not a statement\n\
                /* block; comment */ ;;\n\
                CREATE STREAM \"a;b\" (\"c;d\" VARCHAR(8)) DESCRIPTION 'x;y';\n\
                INSERT INTO \"a;b\" SELECT STREAM 'semi;colon' AS \"c;d\" -- trailing; comment\n\
                FROM src /* ; */ WHERE x = 'it''s; fine'; ; -- done";
    let p = parse_ok(code);
    assert_eq!(p.streams.len(), 1);
    assert_eq!(p.streams[0].name, "a;b");
    assert_eq!(columns(&p.streams[0]), [("c;d", "VARCHAR(8)")]);
    assert_eq!(p.streams[0].line, 3);
    let pump = &p.pumps[0];
    assert_eq!(
        (pump.name.as_str(), pump.statement, pump.line),
        ("INSERT_2", 2, 4)
    );
    assert_eq!(pump.target, "a;b");
    assert_eq!(
        pump.select,
        "SELECT 'semi;colon' AS \"c;d\" -- trailing; comment\nFROM src /* ; */ WHERE x = 'it''s; fine'"
    );
    reparse(&pump.select);
}

#[test]
fn bare_insert_with_tumble_table_function_passes_through() {
    let select = "SELECT ticker, count(*) FROM TUMBLE(src, event_time, INTERVAL '1' MINUTE) \
                  GROUP BY window_start, window_end, ticker";
    let p = parse_ok(&format!("INSERT INTO out {select}"));
    assert!(p.streams.is_empty());
    let pump = &p.pumps[0];
    assert_eq!(pump.name, "INSERT_1");
    assert_eq!(pump.target, "OUT");
    assert_eq!(pump.select, select);
    assert!(!pump.stagger);
    assert_eq!(group_by_len(&reparse(&pump.select)), 3);
}

#[test]
fn insert_forms() {
    let p = parse_ok(
        "INSERT EXPEDITED INTO \"Out\" (a, \"B\") SELECT x, y FROM s;\n\
         INSERT INTO o2 (SELECT x FROM s);\n\
         INSERT INTO o3 SELECT STREAM DISTINCT x FROM s;\n\
         INSERT INTO o4 SELECT stream, x FROM s",
    );
    let p0 = &p.pumps[0];
    assert_eq!(
        (p0.target.as_str(), p0.target_columns.clone()),
        ("Out", vec!["A".to_string(), "B".to_string()])
    );
    assert_eq!(p.pumps[1].select, "(SELECT x FROM s)");
    assert!(p.pumps[1].target_columns.is_empty());
    assert_eq!(p.pumps[2].select, "SELECT DISTINCT x FROM s");
    assert_eq!(p.pumps[3].select, "SELECT stream, x FROM s");
    let names: Vec<_> = p.pumps.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["INSERT_1", "INSERT_2", "INSERT_3", "INSERT_4"]);
    for pump in &p.pumps {
        reparse(&pump.select);
    }
}

#[test]
fn unterminated_string_is_a_lexical_error() {
    let e = parse_err(
        "CREATE STREAM s (a INT);\nINSERT INTO s SELECT 'oops FROM t;\nINSERT INTO s SELECT 1",
    );
    assert!(matches!(e, KdaError::Lexical { .. }), "{e:?}");
    assert_eq!((e.statement(), e.line(), e.column()), (2, 2, 22));
    assert_eq!(e.reason(), "unterminated string literal");
    let e = parse_err("INSERT INTO o SELECT 1;\nINSERT INTO o SELECT a FROM \"x");
    assert_eq!((e.statement(), e.line(), e.column()), (2, 2, 29));
    assert_eq!(e.reason(), "expected close delimiter '\"' before EOF");
    let e = parse_err("INSERT INTO o SELECT a /* never closed");
    assert!(matches!(e, KdaError::Lexical { .. }), "{e:?}");
}

#[test]
fn stream_without_name() {
    let e =
        parse_err("CREATE OR REPLACE STREAM \"A\" (x INT);\n\n\n\n  CREATE OR REPLACE STREAM ;");
    assert!(matches!(e, KdaError::Syntax { .. }), "{e:?}");
    assert_eq!((e.statement(), e.line(), e.column()), (2, 5, 28));
    assert_eq!(
        e.to_string(),
        "statement 2 (line 5, column 28): expected a stream name after CREATE OR REPLACE STREAM"
    );
    let e = parse_err("CREATE STREAM (x INT)");
    assert_eq!(
        e.reason(),
        "expected a stream name after CREATE STREAM, found ("
    );
}

#[test]
fn select_syntax_error_points_into_the_original_code() {
    let code = "CREATE OR REPLACE STREAM \"D\" (a INT);\n\
                CREATE OR REPLACE PUMP \"P\" AS INSERT INTO \"D\"\n\
                SELECT STREAM a > > 1 FROM \"SOURCE_SQL_STREAM_001\"\n\
                WHERE a > 1;";
    let e = parse_err(code);
    assert!(matches!(e, KdaError::Query { .. }), "{e:?}");
    assert_eq!((e.statement(), e.line(), e.column()), (2, 3, 19));
    assert!(e.reason().starts_with("invalid query: "), "{e}");
    // After a rewrite that shifts text on the same line.
    let code = "INSERT INTO o\n  SELECT STREAM a FROM s\n  GROUP BY STEP(s.ROWTIME BY INTERVAL '1' SECOND) ),";
    let e = parse_err(code);
    assert_eq!((e.statement(), e.line(), e.column()), (1, 3, 51));
}

#[test]
fn error_at_end_of_query_points_after_it() {
    let e = parse_err("INSERT INTO o SELECT a FROM s WHERE");
    assert!(matches!(e, KdaError::Query { .. }), "{e:?}");
    assert_eq!((e.line(), e.column()), (1, 36));
}

#[test]
fn unknown_column_type_names_the_column() {
    let e = parse_err("CREATE STREAM s (\n  a INT,\n  \"Weird\" MONEY(4));");
    assert!(matches!(e, KdaError::UnknownType { .. }), "{e:?}");
    assert_eq!((e.statement(), e.line(), e.column()), (1, 3, 11));
    assert_eq!(e.reason(), "unknown type MONEY for column \"Weird\"");
    let e = parse_err("CREATE STREAM s (a VARCHAR(4,2))");
    assert!(matches!(e, KdaError::Syntax { .. }), "{e:?}");
    let e = parse_err("CREATE STREAM s (a, b INT)");
    assert!(
        e.reason().starts_with("expected a type after column a"),
        "{e}"
    );
}

#[test]
fn unsupported_statements_are_named() {
    for (code, word) in [
        ("SELECT STREAM * FROM s", "SELECT"),
        ("CREATE TABLE t (a INT)", "CREATE TABLE"),
        ("DROP STREAM s", "DROP"),
    ] {
        let e = parse_err(&format!("CREATE STREAM s (a INT);\n{code}"));
        assert!(matches!(e, KdaError::Unsupported { .. }), "{e:?}");
        assert_eq!((e.statement(), e.line()), (2, 2));
        assert!(e.reason().contains(word), "{e}");
        assert!(
            e.reason()
                .contains("supported statements are CREATE [OR REPLACE] STREAM"),
            "{e}"
        );
    }
}

#[test]
fn column_types_are_normalized() {
    let p = parse_ok(
        "create stream s (a varchar, b Char(3), c double precision, d timestamp, e int not null, \
         f decimal(19, 5), g numeric(4), h boolean, i \"TIME\") description 'x'",
    );
    let types: Vec<_> = p.streams[0]
        .columns
        .iter()
        .map(|c| c.sql_type.as_str())
        .collect();
    assert_eq!(
        types,
        [
            "VARCHAR",
            "CHAR(3)",
            "DOUBLE PRECISION",
            "TIMESTAMP",
            "INT",
            "DECIMAL(19,5)",
            "NUMERIC(4)",
            "BOOLEAN",
            "TIME"
        ]
    );
    assert_eq!(p.streams[0].name, "S");
    let e = parse_err("CREATE STREAM s (a INT) DESCRIPTION 42");
    assert_eq!(e.reason(), "expected a string after DESCRIPTION, found 42");
    let e = parse_err("CREATE STREAM s (a INT b INT)");
    assert_eq!(e.reason(), "expected , or ) after column a, found b");
}

#[test]
fn pump_header_errors() {
    let e = parse_err("CREATE PUMP p INSERT INTO o SELECT 1");
    assert_eq!(e.reason(), "expected AS after CREATE PUMP p, found INSERT");
    let e = parse_err("CREATE PUMP p AS INSERT INTO o");
    assert_eq!(e.reason(), "expected a SELECT after INSERT INTO o");
    let e = parse_err("INSERT INTO o DELETE FROM s");
    assert_eq!(
        e.reason(),
        "expected a SELECT after INSERT INTO o, found DELETE"
    );
    let e = parse_err("INSERT INTO app.o SELECT 1");
    assert_eq!(
        (e.column(), e.reason().as_str()),
        (16, "expected a SELECT after INSERT INTO app, found .")
    );
    let e = parse_err("CREATE OR STREAM s (a INT)");
    assert_eq!(e.reason(), "expected REPLACE after CREATE OR, found STREAM");
}

#[test]
fn deep_bracket_nesting_is_refused_before_parsing() {
    // sqlparser backtracks on nested POSITION( / CAST(, taking exponential time.
    let deep = format!("INSERT INTO o\nSELECT {}1 +", "POSITION(".repeat(40));
    let e = parse_err(&deep);
    assert!(e.reason().contains("nested more than 10 deep"), "{e}");
    assert_eq!((e.line(), e.column()), (2, 106));
    let ok = format!(
        "INSERT INTO o SELECT {}1{} FROM s",
        "(".repeat(10),
        ")".repeat(10)
    );
    assert_eq!(parse_ok(&ok).pumps.len(), 1);
}

#[test]
fn values_and_with_queries_pass_through() {
    let p = parse_ok(
        "INSERT INTO o VALUES (1, 'a'); INSERT INTO o WITH w AS (SELECT 1 AS x) SELECT x FROM w",
    );
    assert_eq!(p.pumps[0].select, "VALUES (1, 'a')");
    assert!(p.pumps[0].target_columns.is_empty());
    assert_eq!(
        p.pumps[1].select,
        "WITH w AS (SELECT 1 AS x) SELECT x FROM w"
    );
    assert_eq!(p.pumps[1].statement, 2);
}

#[test]
fn empty_program_and_empty_statements() {
    assert_eq!(parse_ok(""), Program::default());
    assert_eq!(parse_ok(" ; -- nothing\n ;/* */;"), Program::default());
}

#[test]
fn non_ascii_text_keeps_positions() {
    let e = parse_err("INSERT INTO \"ストリーム\" SELECT 'é' > > 1 FROM s");
    assert_eq!((e.line(), e.column()), (1, 34));
    let p = parse_ok("INSERT INTO \"ストリーム\" SELECT 'é' AS x FROM s");
    assert_eq!(p.pumps[0].target, "ストリーム");
    assert_eq!(p.pumps[0].select, "SELECT 'é' AS x FROM s");
}

const WORDS: &[&str] = &[
    "CREATE",
    "OR",
    "REPLACE",
    "STREAM",
    "PUMP",
    "AS",
    "INSERT",
    "INTO",
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP",
    "BY",
    "STEP",
    "WINDOWED",
    "STAGGER",
    "PARTITION",
    "RANGE",
    "INTERVAL",
    "'1'",
    "MINUTE",
    "(",
    ")",
    ",",
    ";",
    "\"Q\"",
    "'",
    "\"",
    "--",
    "/*",
    "*/",
    "VARCHAR(4)",
    "DECIMAL",
    "DESCRIPTION",
    "ROWTIME",
    ".",
    "x",
    "*",
    "FLOOR",
    "TO",
    "DISTINCT",
    "\n",
    "NOT",
    "NULL",
    "UNION",
    "HAVING",
    "é",
];

const TEMPLATE: &str = "CREATE OR REPLACE STREAM \"D\" (a VARCHAR(4), b DECIMAL(4,2));\n\
CREATE OR REPLACE PUMP \"P\" AS INSERT INTO \"D\" (a, b)\n\
SELECT STREAM a, COUNT(*) AS b FROM \"S\" WHERE a SIMILAR TO '%x;y%'\n\
WINDOWED BY STAGGER (PARTITION BY a, STEP(\"S\".ROWTIME BY INTERVAL '1' MINUTE) RANGE INTERVAL '1' MINUTE);\n\
INSERT INTO o SELECT STREAM a FROM (SELECT STREAM a FROM s GROUP BY a, STEP(ROWTIME BY INTERVAL '1' SECOND))";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn edited_templates_never_panic_and_accepted_selects_reparse(
        edits in proptest::collection::vec((0..TEMPLATE.len(), 0..WORDS.len(), any::<bool>()), 1..4),
    ) {
        let mut code = TEMPLATE.to_string();
        for (at, word, delete) in edits {
            let at = (0..=at.min(code.len())).rev().find(|&i| code.is_char_boundary(i)).unwrap_or(0);
            if delete {
                let end = code[at..].find(' ').map_or(code.len(), |n| at + n);
                code.replace_range(at..end, "");
            } else {
                code.insert_str(at, &format!(" {} ", WORDS[word]));
            }
        }
        if let Ok(p) = parse_program(&code) {
            for pump in &p.pumps {
                let parsed = Parser::parse_sql(&GenericDialect {}, &pump.select);
                prop_assert!(parsed.is_ok(), "{:?} for {}", parsed, pump.select);
            }
        }
    }

    #[test]
    fn never_panics_on_arbitrary_text(code in any::<String>()) {
        match parse_program(&code) {
            Ok(p) => prop_assert!(p.pumps.iter().all(|p| !p.select.is_empty())),
            Err(e) => prop_assert!(e.statement() >= 1 && e.line() >= 1 && e.column() >= 1),
        }
    }

    #[test]
    fn never_panics_on_keyword_soup(picks in proptest::collection::vec(0..WORDS.len(), 0..40)) {
        let code = picks.iter().filter_map(|&i| WORDS.get(i).copied()).collect::<Vec<_>>().join(" ");
        if let Err(e) = parse_program(&code) {
            prop_assert!(e.statement() >= 1 && e.line() >= 1 && e.column() >= 1);
            prop_assert!(e.to_string().starts_with("statement "));
            prop_assert!(!e.reason().starts_with(char::is_uppercase), "{}", e);
            prop_assert!(e.line() <= code.lines().count().max(1) + 1, "{}", e);
        }
    }

    #[test]
    fn accepted_selects_reparse(
        picks in proptest::collection::vec(0..WORDS.len(), 0..25),
        prefix in 0..3usize,
    ) {
        let head = ["INSERT INTO o SELECT STREAM ", "CREATE PUMP p AS INSERT INTO o SELECT ", "INSERT INTO o "][prefix];
        let body = picks.iter().filter_map(|&i| WORDS.get(i).copied()).collect::<Vec<_>>().join(" ");
        if let Ok(p) = parse_program(&format!("{head}{body}")) {
            for pump in &p.pumps {
                let parsed = Parser::parse_sql(&GenericDialect {}, &pump.select);
                prop_assert!(parsed.is_ok(), "{:?} for {}", parsed, pump.select);
            }
        }
    }
}

#[test]
fn edit_template_is_accepted_unedited() {
    let p = parse_ok(TEMPLATE);
    assert_eq!(p.pumps.len(), 2);
    assert!(p.pumps[0].stagger && !p.pumps[1].stagger);
    assert_eq!(
        squash(&p.pumps[1].select),
        "SELECT a FROM (SELECT a FROM s GROUP BY a, STEP(ROWTIME, INTERVAL '1' SECOND))"
    );
}
