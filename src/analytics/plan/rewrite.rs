//! Shapes one pump's SELECT for the planner: finds its source stream and
//! its window (a `TUMBLE`/`HOP` table function, or a `STEP`, `FLOOR … TO`,
//! `date_bin` or `date_trunc` over a time column in `GROUP BY`), rewrites
//! the KDA functions DataFusion does not know into ones it does, and
//! resolves unquoted names case-insensitively to the exact names of the
//! streams and columns. It only rewrites syntax; names and types are the
//! planner's to check.

use std::ops::ControlFlow;

use sqlparser::ast::{
    CeilFloorKind, DateTimeField, Expr, FunctionArg, FunctionArgExpr, FunctionArguments,
    GroupByExpr, Ident, ObjectName, ObjectNamePart, Query, Select, SelectItem, SetExpr,
    TableFactor, Value, visit_expressions_mut,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

use super::PlanError;
use crate::analytics::window::{TimeColumn, WindowSpec};

/// The column every in-application stream has: the record's arrival.
pub const ROWTIME: &str = "ROWTIME";
pub const WINDOW_START: &str = "window_start";
pub const WINDOW_END: &str = "window_end";

/// A SELECT ready to plan.
pub(super) struct Shaped {
    pub query: Query,
    /// The stream it reads, by its exact name.
    pub source: String,
    pub window: Option<WindowSpec>,
}

/// What names exist: streams and the columns of each.
pub(super) trait Names {
    fn stream(&self, name: &str) -> Option<String>;
    fn columns(&self, stream: &str) -> Vec<String>;
}

fn at(reason: impl Into<String>, ident: Option<&Ident>) -> PlanError {
    PlanError {
        reason: reason.into(),
        at: ident.map(|i| (i.span.start.line, i.span.start.column)),
    }
}

fn select_of(query: &mut Query) -> Result<&mut Select, PlanError> {
    if query.with.is_some() || query.order_by.is_some() || query.limit_clause.is_some() {
        return Err(at(
            "WITH, ORDER BY and LIMIT are not supported on a stream (it has no end to sort or count to)",
            None,
        ));
    }
    match query.body.as_mut() {
        SetExpr::Select(s) => Ok(s),
        other => Err(at(
            format!("a pump selects from one stream; `{other}` is not supported"),
            None,
        )),
    }
}

/// Shapes `query`, a pump's SELECT.
pub(super) fn shape(mut query: Query, names: &dyn Names) -> Result<Shaped, PlanError> {
    let select = select_of(&mut query)?;
    let (source, tvf) = source_of(select, names)?;
    let columns = names.columns(&source);
    let mut window = tvf;
    let group_window = take_group_window(select, &columns)?;
    if let Some((spec, text)) = group_window {
        if window.is_some() {
            return Err(at(
                "a pump has one window: a TUMBLE/HOP source and a window in GROUP BY are two",
                None,
            ));
        }
        substitute(select, &text)?;
        window = Some(spec);
    }
    if window.is_some() {
        ensure_window_keys(select)?;
        rowtime_is_window_end(select);
    }
    let mut known: Vec<String> = columns;
    known.push(ROWTIME.to_string());
    if window.is_some() {
        known.push(WINDOW_START.to_string());
        known.push(WINDOW_END.to_string());
    }
    canonical_names(&mut query, names, &known)?;
    Ok(Shaped {
        query,
        source,
        window,
    })
}

fn single_name(name: &ObjectName) -> Option<&Ident> {
    match name.0.as_slice() {
        [ObjectNamePart::Identifier(i)] => Some(i),
        _ => None,
    }
}

fn exact(names: &dyn Names, ident: &Ident) -> Result<String, PlanError> {
    let found = if ident.quote_style.is_some() {
        names.stream(&ident.value).filter(|n| *n == ident.value)
    } else {
        names.stream(&ident.value)
    };
    found.ok_or_else(|| {
        at(
            format!("no in-application stream is named {}", ident.value),
            Some(ident),
        )
    })
}

/// The stream read, and the window a TUMBLE/HOP source defines.
fn source_of(
    select: &mut Select,
    names: &dyn Names,
) -> Result<(String, Option<WindowSpec>), PlanError> {
    let [from] = select.from.as_mut_slice() else {
        return Err(at(
            "a pump reads exactly one stream in FROM (joins are not supported)",
            None,
        ));
    };
    if !from.joins.is_empty() {
        return Err(at("joins are not supported", None));
    }
    let TableFactor::Table { name, args, .. } = &mut from.relation else {
        return Err(at(format!("`{}` is not a stream", from.relation), None));
    };
    let ident = single_name(name)
        .cloned()
        .ok_or_else(|| at(format!("`{name}` is not a stream name"), None))?;
    let Some(tvf) = args.take() else {
        let stream = exact(names, &ident)?;
        *name = ObjectName(vec![ObjectNamePart::Identifier(Ident::with_quote(
            '"',
            stream.clone(),
        ))]);
        return Ok((stream, None));
    };
    let kind = ident.value.to_ascii_uppercase();
    let args: Vec<&Expr> = tvf
        .args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
            _ => Err(at(
                format!("{kind}'s arguments are expressions"),
                Some(&ident),
            )),
        })
        .collect::<Result<_, _>>()?;
    let (table, col, slide, size) = match (kind.as_str(), args.as_slice()) {
        ("TUMBLE", [t, c, size]) => (*t, *c, *size, *size),
        ("HOP", [t, c, slide, size]) => (*t, *c, *slide, *size),
        ("TUMBLE" | "HOP", _) => {
            return Err(at(
                "TUMBLE(stream, time_column, size) and HOP(stream, time_column, slide, size) take 3 and 4 arguments",
                Some(&ident),
            ));
        }
        _ => {
            return Err(at(
                format!("{kind} is not a stream or a window (TUMBLE, HOP)"),
                Some(&ident),
            ));
        }
    };
    let table_ident = match table {
        Expr::Identifier(i) => i.clone(),
        other => return Err(at(format!("`{other}` is not a stream name"), None)),
    };
    let stream = exact(names, &table_ident)?;
    let columns = names.columns(&stream);
    let time = time_column(descriptor(col), &columns)?;
    let spec = WindowSpec {
        time,
        size_ms: interval_ms(size)?,
        slide_ms: interval_ms(slide)?,
    };
    if spec.slide_ms > spec.size_ms {
        return Err(at(
            "a HOP's slide is larger than its size: rows between windows would be lost",
            Some(&ident),
        ));
    }
    *name = ObjectName(vec![ObjectNamePart::Identifier(Ident::with_quote(
        '"',
        stream.clone(),
    ))]);
    Ok((stream, Some(spec)))
}

/// `DESCRIPTOR(col)` (Flink's spelling) is `col`.
fn descriptor(e: &Expr) -> &Expr {
    if let Expr::Function(f) = e
        && f.name.to_string().eq_ignore_ascii_case("descriptor")
        && let FunctionArguments::List(l) = &f.args
        && let [FunctionArg::Unnamed(FunctionArgExpr::Expr(inner))] = l.args.as_slice()
    {
        return inner;
    }
    e
}

/// The time column `e` names: ROWTIME or an input column.
fn time_column(e: &Expr, columns: &[String]) -> Result<TimeColumn, PlanError> {
    let ident = match e {
        Expr::Identifier(i) => i,
        Expr::CompoundIdentifier(parts) if parts.len() == 2 => &parts[1],
        other => {
            return Err(at(
                format!("a window is over a time column or ROWTIME, not `{other}`"),
                None,
            ));
        }
    };
    if ident.value.eq_ignore_ascii_case(ROWTIME) {
        return Ok(TimeColumn::Rowtime);
    }
    resolve_column(ident, columns)
        .map(TimeColumn::Column)
        .ok_or_else(|| at(format!("no column is named {}", ident.value), Some(ident)))
}

fn resolve_column(ident: &Ident, columns: &[String]) -> Option<String> {
    if ident.quote_style.is_some() {
        return columns.iter().find(|c| **c == ident.value).cloned();
    }
    columns
        .iter()
        .find(|c| **c == ident.value)
        .or_else(|| {
            columns
                .iter()
                .find(|c| c.eq_ignore_ascii_case(&ident.value))
        })
        .cloned()
}

/// Milliseconds of `INTERVAL '60' SECOND`, `INTERVAL '1 minute'` and the
/// like (seconds to days: months and years have no fixed length).
pub(super) fn interval_ms(e: &Expr) -> Result<i64, PlanError> {
    let Expr::Interval(i) = e else {
        return Err(at(
            format!("`{e}` is not an INTERVAL such as INTERVAL '1' MINUTE"),
            None,
        ));
    };
    let text = match i.value.as_ref() {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::Number(s, _) => s.clone(),
            other => other.to_string(),
        },
        other => other.to_string(),
    };
    let (number, unit): (String, String) = match &i.leading_field {
        Some(f) => (text.trim().to_string(), f.to_string()),
        None => {
            let mut parts = text.split_whitespace();
            let n = parts.next().unwrap_or("").to_string();
            (n, parts.next().unwrap_or("SECOND").to_string())
        }
    };
    let unit_ms = unit_ms(&unit).ok_or_else(|| {
        at(
            format!("a window's INTERVAL is in seconds, minutes, hours or days, not {unit}"),
            None,
        )
    })?;
    let n: f64 = number
        .parse()
        .map_err(|_| at(format!("`{number}` is not a number of {unit}"), None))?;
    let ms = n * unit_ms as f64;
    if !(1.0..=31_622_400_000.0).contains(&ms) {
        return Err(at(
            format!("a window of {e} is outside 1 millisecond to 366 days"),
            None,
        ));
    }
    Ok(ms as i64)
}

fn unit_ms(unit: &str) -> Option<i64> {
    Some(match unit.to_ascii_uppercase().trim_end_matches('S') {
        "MILLISECOND" => 1,
        "SECOND" => 1000,
        "MINUTE" => 60_000,
        "HOUR" => 3_600_000,
        "DAY" => 86_400_000,
        _ => return None,
    })
}

fn field_ms(field: &DateTimeField) -> Option<i64> {
    unit_ms(&field.to_string())
}

/// If `e` is a tumbling window over a time column (`STEP(t, i)`,
/// `FLOOR(t TO unit)`, `date_bin(i, t)`, `date_trunc('unit', t)`), its spec.
fn window_expr(e: &Expr, columns: &[String]) -> Result<Option<WindowSpec>, PlanError> {
    let (time, size_ms) = match e {
        Expr::Floor {
            expr,
            field: CeilFloorKind::DateTimeField(f),
        } => {
            let ms = field_ms(f).ok_or_else(|| {
                at(
                    format!("FLOOR(… TO {f}) is not a window of fixed length"),
                    None,
                )
            })?;
            (expr.as_ref(), ms)
        }
        Expr::Function(f) => {
            let name = f.name.to_string().to_ascii_lowercase();
            let FunctionArguments::List(l) = &f.args else {
                return Ok(None);
            };
            let args: Vec<&Expr> = l
                .args
                .iter()
                .filter_map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                    _ => None,
                })
                .collect();
            match (name.as_str(), args.as_slice()) {
                ("step", [t, i]) => (*t, interval_ms(i)?),
                ("date_bin", [i, t]) => (*t, interval_ms(i)?),
                ("date_trunc", [Expr::Value(v), t]) => match &v.value {
                    Value::SingleQuotedString(u) => match unit_ms(u) {
                        Some(ms) => (*t, ms),
                        None => return Ok(None),
                    },
                    _ => return Ok(None),
                },
                _ => return Ok(None),
            }
        }
        _ => return Ok(None),
    };
    let time = time_column(time, columns)?;
    Ok(Some(WindowSpec {
        time,
        size_ms,
        slide_ms: size_ms,
    }))
}

fn is_name(e: &Expr, name: &str) -> bool {
    match e {
        Expr::Identifier(i) => i.value.eq_ignore_ascii_case(name),
        Expr::CompoundIdentifier(p) => p.last().is_some_and(|i| i.value.eq_ignore_ascii_case(name)),
        _ => false,
    }
}

/// Takes the window out of GROUP BY, with the text it was written as. A
/// window over ROWTIME (KDA's `STEP(… ROWTIME BY …)`) is the window when
/// there is one, and any other `FLOOR(… TO …)` or `STEP` stays a group key
/// (KDA's two-window idiom: emit by ROWTIME, group by event time);
/// otherwise the first window expression over a time column is the window.
fn take_group_window(
    select: &mut Select,
    columns: &[String],
) -> Result<Option<(WindowSpec, String)>, PlanError> {
    let GroupByExpr::Expressions(exprs, modifiers) = &mut select.group_by else {
        return Err(at("GROUP BY ALL is not supported", None));
    };
    if !modifiers.is_empty() {
        return Err(at(
            "GROUP BY modifiers (ROLLUP, CUBE) are not supported",
            None,
        ));
    }
    let mut found: Vec<(usize, WindowSpec)> = Vec::new();
    for (i, e) in exprs.iter().enumerate() {
        if let Some(spec) = window_expr(e, columns)? {
            found.push((i, spec));
        }
    }
    let chosen = found
        .iter()
        .find(|(_, s)| s.time == TimeColumn::Rowtime)
        .or_else(|| found.first())
        .cloned();
    let Some((i, spec)) = chosen else {
        return Ok(None);
    };
    let e = exprs.remove(i);
    Ok(Some((spec, e.to_string())))
}

fn parse_expr(text: &str) -> Result<Expr, PlanError> {
    Parser::new(&GenericDialect {})
        .try_with_sql(text)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| at(format!("cannot rewrite `{text}`: {e}"), None))
}

/// Replaces the window expression `text` by `window_start` wherever the
/// SELECT list or HAVING repeat it.
fn substitute(select: &mut Select, text: &str) -> Result<(), PlanError> {
    let start = Expr::Identifier(Ident::new(WINDOW_START));
    let mut swap = |e: &mut Expr| {
        if e.to_string() == text {
            *e = start.clone();
        }
        ControlFlow::<()>::Continue(())
    };
    for item in select.projection.iter_mut() {
        if let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } = item {
            let _ = visit_expressions_mut(e, &mut swap);
        }
    }
    if let Some(h) = select.having.as_mut() {
        let _ = visit_expressions_mut(h, &mut swap);
    }
    Ok(())
}

/// A windowed query groups by `window_start, window_end` first.
fn ensure_window_keys(select: &mut Select) -> Result<(), PlanError> {
    let GroupByExpr::Expressions(exprs, _) = &mut select.group_by else {
        return Ok(());
    };
    exprs.retain(|e| !is_name(e, WINDOW_START) && !is_name(e, WINDOW_END));
    exprs.insert(0, Expr::Identifier(Ident::new(WINDOW_END)));
    exprs.insert(0, Expr::Identifier(Ident::new(WINDOW_START)));
    Ok(())
}

/// In a windowed query a selected ROWTIME is the window's end (when its
/// result is emitted), as in KDA.
fn rowtime_is_window_end(select: &mut Select) {
    for item in select.projection.iter_mut() {
        if let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } = item
            && is_name(e, ROWTIME)
        {
            *item = SelectItem::ExprWithAlias {
                expr: Expr::Identifier(Ident::new(WINDOW_END)),
                alias: Ident::with_quote('"', ROWTIME),
            };
        }
    }
}

/// KDA functions into DataFusion's, and unquoted names into exact ones.
fn canonical_names(
    query: &mut Query,
    names: &dyn Names,
    known: &[String],
) -> Result<(), PlanError> {
    let mut failed = None;
    let _ = visit_expressions_mut(query, |e: &mut Expr| match rewrite_one(e, names, known) {
        Ok(()) => ControlFlow::Continue(()),
        Err(err) => {
            failed = Some(err);
            ControlFlow::Break(())
        }
    });
    failed.map_or(Ok(()), Err)
}

fn quoted(exact: String, span_of: &Ident) -> Ident {
    let mut i = Ident::with_quote('"', exact);
    i.span = span_of.span;
    i
}

fn rewrite_one(e: &mut Expr, names: &dyn Names, known: &[String]) -> Result<(), PlanError> {
    match e {
        Expr::Identifier(i) => {
            if let Some(c) = resolve_column(i, known) {
                *i = quoted(c, i);
            }
        }
        Expr::CompoundIdentifier(parts) => {
            if let [q, c] = parts.as_mut_slice() {
                if let Some(s) = names.stream(&q.value)
                    && (q.quote_style.is_none() || s == q.value)
                {
                    *q = quoted(s, q);
                }
                if let Some(exact) = resolve_column(c, known) {
                    *c = quoted(exact, c);
                }
            }
        }
        Expr::Floor {
            expr,
            field: CeilFloorKind::DateTimeField(f),
        } if !matches!(f, DateTimeField::NoDateTime) => {
            *e = parse_expr(&format!(
                "date_trunc('{}', {expr})",
                f.to_string().to_lowercase()
            ))?;
        }
        Expr::Function(f) if f.name.to_string().eq_ignore_ascii_case("step") => {
            if let FunctionArguments::List(l) = &f.args
                && let [a, b] = l.args.as_slice()
            {
                *e = parse_expr(&format!(
                    "date_bin({b}, {a}, TIMESTAMP '1970-01-01 00:00:00')"
                ))?;
            }
        }
        Expr::SimilarTo {
            negated,
            expr,
            pattern,
            escape_char: None,
        } => {
            if let Expr::Value(v) = pattern.as_ref()
                && let Value::SingleQuotedString(p) = &v.value
            {
                let op = if *negated { "!~" } else { "~" };
                let regex = similar_to_regex(p).replace('\'', "''");
                *e = parse_expr(&format!("{expr} {op} '{regex}'"))?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// SQL's SIMILAR TO pattern as an anchored regular expression: `%` is any
/// run, `_` any one character, `.` and the anchors are themselves, and the
/// rest (`|`, `*`, `+`, `?`, `{}`, `[]`, `()`) keeps its meaning.
fn similar_to_regex(p: &str) -> String {
    let mut out = String::from("^(?:");
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' => out.push_str(".*"),
            '_' => out.push('.'),
            '.' | '^' | '$' => {
                out.push('\\');
                out.push(c);
            }
            '\\' => {
                out.push('\\');
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            c => out.push(c),
        }
    }
    out.push_str(")$");
    out
}

#[cfg(test)]
mod tests;
