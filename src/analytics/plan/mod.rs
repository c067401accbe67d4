//! Plans one pump's SELECT with DataFusion: SQL to a logical plan (names,
//! types, coercion, functions), then to physical expressions the engine
//! evaluates batch by batch. A pump is either stateless (WHERE and a
//! projection, row by row) or windowed (WHERE, then `GROUP BY
//! window_start, window_end, keys…` with aggregates, then HAVING and a
//! projection when a window closes). Anything else a stream cannot answer
//! (joins, ORDER BY, subqueries, window functions) is refused here, before
//! anything runs.

pub mod rewrite;

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion_common::config::ConfigOptions;
use datafusion_common::{DFSchema, DataFusionError, TableReference};
use datafusion_expr::execution_props::ExecutionProps;
use datafusion_expr::logical_plan::builder::LogicalTableSource;
use datafusion_expr::planner::{ContextProvider, ExprPlanner};
use datafusion_expr::{AggregateUDF, Expr, LogicalPlan, ScalarUDF, TableSource, WindowUDF};
use datafusion_physical_expr::PhysicalExpr;
use datafusion_physical_expr::aggregate::{AggregateExprBuilder, AggregateFunctionExpr};
use datafusion_sql::planner::{ParserOptions, SqlToRel};
use sqlparser::ast::{Query, Statement};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

use super::window::WindowSpec;
use rewrite::{ROWTIME, WINDOW_END, WINDOW_START};

/// Why a SELECT cannot run, and where (line, column within it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanError {
    pub reason: String,
    pub at: Option<(u64, u64)>,
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

fn reason(e: DataFusionError) -> PlanError {
    let at = e
        .diagnostic()
        .and_then(|d| d.span)
        .map(|s| (s.start.line, s.start.column));
    let text = e.strip_backtrace();
    // DataFusion prefixes the rule or stage that failed; the reason is last.
    let reason = text
        .rsplit_once("\ncaused by\n")
        .map_or(text.as_str(), |(_, r)| r)
        .trim()
        .to_string();
    PlanError { reason, at }
}

/// The timestamp type of ROWTIME, windows and TIMESTAMP columns.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, None)
}

/// The schema a pump reading a stream of `columns` sees: the columns,
/// ROWTIME, and the window's bounds when it is windowed.
pub fn input_schema(columns: &Schema, windowed: bool) -> SchemaRef {
    let mut fields: Vec<Field> = columns
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(ROWTIME, timestamp_type(), false));
    if windowed {
        fields.push(Field::new(WINDOW_START, timestamp_type(), false));
        fields.push(Field::new(WINDOW_END, timestamp_type(), false));
    }
    Arc::new(Schema::new(fields))
}

/// The functions and streams a pump may name.
pub struct Catalog {
    /// In-application streams by exact name: their columns (no ROWTIME).
    pub streams: HashMap<String, SchemaRef>,
    scalars: HashMap<String, Arc<ScalarUDF>>,
    aggregates: HashMap<String, Arc<AggregateUDF>>,
    planners: Vec<Arc<dyn ExprPlanner>>,
    options: ConfigOptions,
    /// The table the pump being planned reads, with its extra columns.
    table: Option<(String, SchemaRef)>,
}

impl Catalog {
    pub fn new(streams: HashMap<String, SchemaRef>) -> Catalog {
        let mut scalars = HashMap::new();
        for f in datafusion_functions::all_default_functions() {
            for n in std::iter::once(f.name()).chain(f.aliases().iter().map(String::as_str)) {
                scalars.insert(n.to_string(), f.clone());
            }
        }
        let mut aggregates = HashMap::new();
        for f in datafusion_functions_aggregate::all_default_aggregate_functions() {
            for n in std::iter::once(f.name()).chain(f.aliases().iter().map(String::as_str)) {
                aggregates.insert(n.to_string(), f.clone());
            }
        }
        let planners: Vec<Arc<dyn ExprPlanner>> = vec![
            Arc::new(datafusion_functions::core::planner::CoreFunctionPlanner::default()),
            Arc::new(datafusion_functions::datetime::planner::DatetimeFunctionPlanner),
            Arc::new(datafusion_functions::unicode::planner::UnicodeFunctionPlanner),
            Arc::new(datafusion_functions_aggregate::planner::AggregateFunctionPlanner),
        ];
        Catalog {
            streams,
            scalars,
            aggregates,
            planners,
            options: ConfigOptions::default(),
            table: None,
        }
    }
}

impl rewrite::Names for Catalog {
    fn stream(&self, name: &str) -> Option<String> {
        self.streams
            .keys()
            .find(|k| *k == name)
            .or_else(|| self.streams.keys().find(|k| k.eq_ignore_ascii_case(name)))
            .cloned()
    }

    fn columns(&self, stream: &str) -> Vec<String> {
        self.streams
            .get(stream)
            .map(|s| s.fields().iter().map(|f| f.name().clone()).collect())
            .unwrap_or_default()
    }
}

impl ContextProvider for Catalog {
    fn get_table_source(
        &self,
        name: TableReference,
    ) -> datafusion_common::Result<Arc<dyn TableSource>> {
        match &self.table {
            Some((t, schema)) if t == name.table() => {
                Ok(Arc::new(LogicalTableSource::new(schema.clone())))
            }
            _ => Err(DataFusionError::Plan(format!(
                "no in-application stream is named {name}"
            ))),
        }
    }

    fn get_expr_planners(&self) -> &[Arc<dyn ExprPlanner>] {
        &self.planners
    }

    fn get_function_meta(&self, name: &str) -> Option<Arc<ScalarUDF>> {
        self.scalars.get(&name.to_ascii_lowercase()).cloned()
    }

    fn get_higher_order_meta(&self, _name: &str) -> Option<Arc<datafusion_expr::HigherOrderUDF>> {
        None
    }

    fn get_aggregate_meta(&self, name: &str) -> Option<Arc<AggregateUDF>> {
        self.aggregates.get(&name.to_ascii_lowercase()).cloned()
    }

    fn get_window_meta(&self, _name: &str) -> Option<Arc<WindowUDF>> {
        None
    }

    fn get_variable_type(&self, _names: &[String]) -> Option<DataType> {
        None
    }

    fn options(&self) -> &ConfigOptions {
        &self.options
    }

    fn udf_names(&self) -> Vec<String> {
        self.scalars.keys().cloned().collect()
    }

    fn udaf_names(&self) -> Vec<String> {
        self.aggregates.keys().cloned().collect()
    }

    fn udwf_names(&self) -> Vec<String> {
        Vec::new()
    }

    fn higher_order_function_names(&self) -> Vec<String> {
        Vec::new()
    }
}

/// A pump's SELECT, ready to evaluate.
pub struct Compiled {
    /// The in-application stream it reads.
    pub source: String,
    /// What its input batches hold (see [`input_schema`]).
    pub input: SchemaRef,
    /// Rows it keeps (WHERE), on the input.
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    pub kind: Kind,
    /// The rows it emits.
    pub output: SchemaRef,
}

pub enum Kind {
    /// The projection, on the input.
    Stateless {
        projection: Vec<Arc<dyn PhysicalExpr>>,
    },
    Windowed(Box<Windowed>),
}

pub struct Windowed {
    pub window: WindowSpec,
    /// Group keys on the input: `window_start`, `window_end`, then the
    /// query's own.
    pub group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    pub aggregates: Vec<Arc<AggregateFunctionExpr>>,
    /// The aggregate's output: group keys, then one column per aggregate.
    pub grouped: SchemaRef,
    /// HAVING and the projection, on `grouped`.
    pub having: Option<Arc<dyn PhysicalExpr>>,
    pub projection: Vec<Arc<dyn PhysicalExpr>>,
}

/// Parses `sql`, one SELECT.
pub fn parse_select(sql: &str) -> Result<Query, PlanError> {
    let statements = Parser::parse_sql(&GenericDialect {}, sql).map_err(|e| PlanError {
        reason: e.to_string(),
        at: None,
    })?;
    match <[Statement; 1]>::try_from(statements) {
        Ok([Statement::Query(q)]) => Ok(*q),
        _ => Err(PlanError {
            reason: "a pump's body is one SELECT".into(),
            at: None,
        }),
    }
}

/// Plans `sql`, a pump's SELECT, against the streams of `catalog`.
pub fn compile(sql: &str, catalog: &mut Catalog) -> Result<Compiled, PlanError> {
    let query = parse_select(sql)?;
    let shaped = rewrite::shape(query, catalog)?;
    let columns = catalog
        .streams
        .get(&shaped.source)
        .cloned()
        .ok_or_else(|| PlanError {
            reason: format!("no in-application stream is named {}", shaped.source),
            at: None,
        })?;
    let input = input_schema(&columns, shaped.window.is_some());
    if let Some(w) = &shaped.window
        && let super::window::TimeColumn::Column(c) = &w.time
        && !matches!(columns.field_with_name(c), Ok(f) if *f.data_type() == timestamp_type())
    {
        return Err(PlanError {
            reason: format!("the window is over {c}, which is not a TIMESTAMP column"),
            at: None,
        });
    }
    catalog.table = Some((shaped.source.clone(), input.clone()));
    let options = ParserOptions {
        collect_spans: true,
        ..ParserOptions::default()
    };
    let planned = SqlToRel::new_with_options(&*catalog, options)
        .sql_statement_to_plan(Statement::Query(Box::new(shaped.query)));
    catalog.table = None;
    let plan = planned.map_err(reason)?;
    let plan = datafusion_optimizer::Analyzer::new()
        .execute_and_check(plan, &catalog.options, |_, _| {})
        .map_err(reason)?;
    lower(plan, shaped.source, input, shaped.window)
}

fn refuse(what: &str) -> PlanError {
    PlanError {
        reason: format!("{what} is not supported in a pump"),
        at: None,
    }
}

fn physical(e: &Expr, schema: &DFSchema) -> Result<Arc<dyn PhysicalExpr>, PlanError> {
    datafusion_physical_expr::create_physical_expr(e, schema, &ExecutionProps::new())
        .map_err(reason)
}

/// The WHERE under `plan` (a Filter over the scan), checked down to the scan.
fn scan_filter(plan: &LogicalPlan) -> Result<Option<Expr>, PlanError> {
    let mut node = plan;
    let mut filter = None;
    loop {
        match node {
            LogicalPlan::TableScan(_) => return Ok(filter),
            LogicalPlan::Filter(f) if filter.is_none() => {
                filter = Some(f.predicate.clone());
                node = f.input.as_ref();
            }
            LogicalPlan::SubqueryAlias(a) => node = a.input.as_ref(),
            other => {
                let node = other.display().to_string();
                return Err(refuse(node.split(':').next().unwrap_or(&node)));
            }
        }
    }
}

fn lower(
    plan: LogicalPlan,
    source: String,
    input: SchemaRef,
    window: Option<WindowSpec>,
) -> Result<Compiled, PlanError> {
    let LogicalPlan::Projection(p) = &plan else {
        return Err(refuse("a SELECT without a list of columns"));
    };
    let output: SchemaRef = Arc::new(p.schema.as_arrow().clone());
    let (having, below) = match p.input.as_ref() {
        LogicalPlan::Filter(f) if matches!(f.input.as_ref(), LogicalPlan::Aggregate(_)) => {
            (Some(f.predicate.clone()), f.input.as_ref())
        }
        other => (None, other),
    };
    let LogicalPlan::Aggregate(agg) = below else {
        if window.is_some() {
            return Err(refuse("a window without GROUP BY"));
        }
        let filter = scan_filter(below)?;
        let in_schema = below.schema();
        return Ok(Compiled {
            source,
            input,
            filter: filter.map(|f| physical(&f, in_schema)).transpose()?,
            kind: Kind::Stateless {
                projection: p
                    .expr
                    .iter()
                    .map(|e| physical(e, in_schema))
                    .collect::<Result<_, _>>()?,
            },
            output,
        });
    };
    let Some(window) = window else {
        return Err(PlanError {
            reason: "GROUP BY on a stream needs a window: TUMBLE/HOP in FROM, or STEP(ROWTIME BY INTERVAL …), FLOOR(… TO MINUTE) in GROUP BY".into(),
            at: None,
        });
    };
    let agg_input = agg.input.schema();
    let filter = scan_filter(agg.input.as_ref())?;
    let mut aggregates = Vec::new();
    for (e, field) in agg
        .aggr_expr
        .iter()
        .zip(agg.schema.fields().iter().skip(agg.group_expr.len()))
    {
        aggregates.push(Arc::new(aggregate(e, agg_input, field.name())?));
    }
    let grouped = agg.schema.as_ref();
    Ok(Compiled {
        source,
        input,
        filter: filter.map(|f| physical(&f, agg_input)).transpose()?,
        kind: Kind::Windowed(Box::new(Windowed {
            window,
            group_exprs: agg
                .group_expr
                .iter()
                .map(|e| physical(e, agg_input))
                .collect::<Result<_, _>>()?,
            aggregates,
            grouped: Arc::new(grouped.as_arrow().clone()),
            having: having.map(|h| physical(&h, grouped)).transpose()?,
            projection: p
                .expr
                .iter()
                .map(|e| physical(e, grouped))
                .collect::<Result<_, _>>()?,
        })),
        output,
    })
}

fn aggregate(e: &Expr, input: &DFSchema, name: &str) -> Result<AggregateFunctionExpr, PlanError> {
    let e = match e {
        Expr::Alias(a) => a.expr.as_ref(),
        e => e,
    };
    let Expr::AggregateFunction(af) = e else {
        return Err(refuse(&format!("`{e}` as an aggregate")));
    };
    if af.params.filter.is_some() || !af.params.order_by.is_empty() {
        return Err(refuse("an aggregate with FILTER or ORDER BY"));
    }
    let args = af
        .params
        .args
        .iter()
        .map(|a| physical(a, input))
        .collect::<Result<Vec<_>, _>>()?;
    AggregateExprBuilder::new(af.func.clone(), args)
        .schema(Arc::new(input.as_arrow().clone()))
        .alias(name)
        .with_distinct(af.params.distinct)
        .build()
        .map_err(reason)
}

#[cfg(test)]
mod tests;
