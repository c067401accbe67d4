//! Front end for the Kinesis Data Analytics (KDA) SQL dialect.
//!
//! It turns the text of a KDA SQL application (`ApplicationCode`) into a
//! [`Program`]: the in-application streams declared with `CREATE STREAM` and
//! the pumps that feed them, written either as `CREATE PUMP ... AS INSERT
//! INTO ... SELECT STREAM ...` or as a bare `INSERT INTO ... SELECT ...`. Each
//! pump's query is rewritten at the token level into core SQL that
//! `sqlparser`'s `GenericDialect` parses, and is checked to parse as exactly
//! one query.
//!
//! This module is purely syntactic. It must not plan or run queries, resolve
//! stream or column names, check types, or depend on anything but `sqlparser`,
//! `thiserror` and std. Every position it reports is 1-based and points into
//! the original code, and no input text may make it panic.

use sqlparser::ast::Statement;
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer, Whitespace};

/// A parsed KDA application: its stream declarations and pumps, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Program {
    pub streams: Vec<StreamDecl>,
    pub pumps: Vec<Pump>,
}

/// `CREATE [OR REPLACE] STREAM name (col TYPE, ...)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamDecl {
    /// Quoted names keep their exact text; unquoted names are uppercased.
    pub name: String,
    pub columns: Vec<ColumnDecl>,
    /// 1-based line where the statement starts.
    pub line: usize,
}

/// One column of a [`StreamDecl`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDecl {
    /// Quoted names keep their exact text; unquoted names are uppercased.
    pub name: String,
    /// The type as written, uppercased and without inner spaces around its
    /// parameters, e.g. `VARCHAR(4)`, `DECIMAL(10,2)`, `DOUBLE`.
    pub sql_type: String,
}

/// A continuous `INSERT INTO target SELECT ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pump {
    /// The pump's name, or `INSERT_<n>` for a bare `INSERT` statement `n`.
    pub name: String,
    /// The stream inserted into (quoted names exact, unquoted uppercased).
    pub target: String,
    /// The explicit INSERT column list, folded like `target`; empty if none.
    pub target_columns: Vec<String>,
    /// The query in core SQL, parseable by sqlparser's `GenericDialect`.
    pub select: String,
    /// Whether a `WINDOWED BY STAGGER` clause was turned into a `GROUP BY`.
    pub stagger: bool,
    /// 1-based statement number in the code.
    pub statement: usize,
    /// Where the query starts (line, column): `select` positions are from it.
    pub select_at: (usize, usize),
    /// 1-based line where the statement starts.
    pub line: usize,
}

/// Where the code is wrong (1-based, in the original text), and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("statement {statement} (line {line}, column {column}): {reason}")]
pub struct Failure {
    /// Number of the statement, counting only non-empty ones.
    pub statement: usize,
    pub line: usize,
    /// Column in characters.
    pub column: usize,
    pub reason: String,
}

/// Why the code was rejected; every kind carries a [`Failure`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub enum KdaError {
    /// The text could not be split into tokens, e.g. an unterminated string.
    Lexical(Failure),
    /// A stream declaration, pump header or KDA clause is malformed, or a
    /// query nests brackets too deeply.
    Syntax(Failure),
    /// A column is declared with a type KDA does not have.
    UnknownType(Failure),
    /// The statement is not one of the supported kinds.
    Unsupported(Failure),
    /// The rewritten query is not a single query that sqlparser accepts.
    Query(Failure),
}

impl KdaError {
    /// Where and why, whatever the kind.
    pub fn failure(&self) -> &Failure {
        match self {
            Self::Lexical(f)
            | Self::Syntax(f)
            | Self::UnknownType(f)
            | Self::Unsupported(f)
            | Self::Query(f) => f,
        }
    }

    /// 1-based number of the offending statement (empty statements not counted).
    pub fn statement(&self) -> usize {
        self.failure().statement
    }

    /// 1-based line in the original code.
    pub fn line(&self) -> usize {
        self.failure().line
    }

    /// 1-based column (in characters) in the original code.
    pub fn column(&self) -> usize {
        self.failure().column
    }

    /// What is wrong, without the position.
    pub fn reason(&self) -> String {
        self.failure().reason.clone()
    }
}

/// Parses KDA application code into its stream declarations and pumps.
///
/// Statements are numbered from 1, counting only non-empty ones.
pub fn parse_program(code: &str) -> Result<Program, KdaError> {
    let toks = lex(code)?;
    let mut program = Program::default();
    for stmt in split(&toks) {
        parse_statement(stmt, &mut program)?;
    }
    Ok(program)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Pos {
    line: usize,
    column: usize,
}

impl Pos {
    const START: Pos = Pos { line: 1, column: 1 };

    fn of(loc: Location) -> Pos {
        let get = |n: u64| usize::try_from(n).unwrap_or(usize::MAX).max(1);
        let (line, column) = (get(loc.line), get(loc.column));
        Pos { line, column }
    }

    fn advance(&mut self, c: char) {
        let newline = c == '\n';
        self.line = self.line.saturating_add(usize::from(newline));
        self.column = if newline { 0 } else { self.column }.saturating_add(1);
    }
}

/// Builds an error of kind `kind` (a `KdaError` constructor).
fn error(kind: fn(Failure) -> KdaError, statement: usize, pos: Pos, reason: String) -> KdaError {
    kind(Failure {
        statement,
        line: pos.line,
        column: pos.column,
        reason,
    })
}

fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    let first = chars.next().map(|c| c.to_lowercase());
    first.into_iter().flatten().chain(chars).collect()
}

/// A token with its exact original text and where it starts and ends.
struct Tok<'a> {
    token: Token,
    text: &'a str,
    pos: Pos,
    end: Pos,
}

fn is_blank(token: &Token) -> bool {
    matches!(token, Token::Whitespace(_))
}

/// An unquoted keyword (any case), or punctuation written exactly as `want`.
fn is(tok: &Tok<'_>, want: &str) -> bool {
    match &tok.token {
        Token::Word(w) => w.quote_style.is_none() && w.value.eq_ignore_ascii_case(want),
        _ => tok.text == want,
    }
}

/// A name as SQL folds it: quoted names keep their text, unquoted ones are
/// uppercased; `None` if the token is not a name.
fn folded(tok: &Tok<'_>) -> Option<String> {
    match &tok.token {
        Token::Word(w) if w.quote_style.is_some() => Some(w.value.clone()),
        Token::Word(w) => Some(w.value.to_uppercase()),
        _ => None,
    }
}

fn lex(code: &str) -> Result<Vec<Tok<'_>>, KdaError> {
    let dialect = GenericDialect {};
    let mut spans = Vec::new();
    let outcome = Tokenizer::new(&dialect, code).tokenize_with_location_into_buf(&mut spans);
    let toks = attach_text(code, spans);
    let Err(e) = outcome else {
        return Ok(toks);
    };
    // The failing token opens a new statement unless one is already open.
    let mut open = toks.iter().rev().take_while(|t| !is(t, ";"));
    let opens = open.all(|t| is_blank(&t.token));
    let statement = split(&toks).len().saturating_add(usize::from(opens));
    let pos = Pos::of(e.location);
    let reason = lower_first(e.message.trim_end_matches('.'));
    Err(error(KdaError::Lexical, statement, pos, reason))
}

/// Walks the code once, turning each token's line/column span into its text.
fn attach_text(code: &str, spans: Vec<TokenWithSpan>) -> Vec<Tok<'_>> {
    let mut chars = code.char_indices().peekable();
    let mut at = Pos::START;
    let mut seek = |target: Pos| {
        while at < target
            && let Some((_, c)) = chars.next()
        {
            at.advance(c);
        }
        chars.peek().map_or(code.len(), |&(i, _)| i)
    };
    let mut toks = Vec::with_capacity(spans.len());
    for t in spans {
        let (pos, end) = (Pos::of(t.span.start), Pos::of(t.span.end));
        let from = seek(pos);
        let text = code.get(from..seek(end).max(from)).unwrap_or("");
        let token = t.token;
        toks.push(Tok {
            token,
            text,
            pos,
            end,
        });
    }
    toks
}

/// One non-empty statement: its tokens (without the `;`) and where it ends.
#[derive(Clone, Copy)]
struct Stmt<'t, 'a> {
    number: usize,
    toks: &'t [Tok<'a>],
    end: Pos,
}

fn split<'t, 'a>(toks: &'t [Tok<'a>]) -> Vec<Stmt<'t, 'a>> {
    let mut out: Vec<Stmt<'t, 'a>> = Vec::new();
    let mut push = |toks: &'t [Tok<'a>], end: Pos| {
        if toks.iter().any(|t| !is_blank(&t.token)) {
            let number = out.len().saturating_add(1);
            out.push(Stmt { number, toks, end });
        }
    };
    let mut start = 0usize;
    for (i, t) in toks.iter().enumerate() {
        if t.token == Token::SemiColon {
            push(toks.get(start..i).unwrap_or(&[]), t.pos);
            start = i.saturating_add(1);
        }
    }
    let end = toks.last().map_or(Pos::START, |t| t.end);
    push(toks.get(start..).unwrap_or(&[]), end);
    out
}

/// Reads a statement's significant tokens one by one.
struct Cursor<'t, 'a> {
    s: Stmt<'t, 'a>,
    i: usize,
}

impl<'t, 'a> Cursor<'t, 'a> {
    fn rest(&self) -> &'t [Tok<'a>] {
        self.s.toks.get(self.i..).unwrap_or(&[])
    }

    fn peek_at(&self, skip: usize) -> Option<&'t Tok<'a>> {
        self.rest().iter().filter(|t| !is_blank(&t.token)).nth(skip)
    }

    fn peek(&self) -> Option<&'t Tok<'a>> {
        self.peek_at(0)
    }

    fn bump(&mut self) -> Option<&'t Tok<'a>> {
        let rest = self.rest();
        let k = rest.iter().position(|t| !is_blank(&t.token))?;
        self.i = self.i.saturating_add(k).saturating_add(1);
        rest.get(k)
    }

    fn here(&self) -> Pos {
        self.peek().map_or(self.s.end, |t| t.pos)
    }

    /// Consumes the next token if it is `want` (see [`is`]).
    fn eat(&mut self, want: &str) -> bool {
        let hit = self.peek().is_some_and(|t| is(t, want));
        if hit {
            self.bump();
        }
        hit
    }

    fn fail(&self, kind: fn(Failure) -> KdaError, reason: String) -> KdaError {
        error(kind, self.s.number, self.here(), reason)
    }

    /// `expected {what} after {after}`, naming what was found if anything.
    fn expected(&self, what: &str, after: &str) -> KdaError {
        let found = self.peek().map(|t| format!(", found {}", shorten(t.text)));
        let found = found.unwrap_or_default();
        let reason = format!("expected {what} after {after}{found}");
        self.fail(KdaError::Syntax, reason)
    }

    fn expect(&mut self, want: &str, after: &str) -> Result<(), KdaError> {
        let hit = self.eat(want);
        hit.then_some(()).ok_or_else(|| self.expected(want, after))
    }

    /// A name: returns it folded, and as written (for messages).
    fn name(&mut self, what: &str, after: &str) -> Result<(String, &'a str), KdaError> {
        let found = self.peek().and_then(|t| Some((folded(t)?, t.text)));
        let found = found.ok_or_else(|| self.expected(what, after))?;
        self.bump();
        Ok(found)
    }
}

/// At most 40 characters of a token's text, for messages.
fn shorten(text: &str) -> String {
    text.trim().chars().take(40).collect()
}

const SUPPORTED: &str = "supported statements are CREATE [OR REPLACE] STREAM, \
CREATE [OR REPLACE] PUMP ... AS INSERT INTO ... SELECT and INSERT INTO ... SELECT";

fn parse_statement(stmt: Stmt<'_, '_>, program: &mut Program) -> Result<(), KdaError> {
    let mut cur = Cursor { s: stmt, i: 0 };
    let line = cur.here().line;
    if cur.eat("CREATE") {
        let head = if cur.eat("OR") {
            cur.expect("REPLACE", "CREATE OR")?;
            "CREATE OR REPLACE"
        } else {
            "CREATE"
        };
        if cur.eat("STREAM") {
            let decl = parse_stream(&mut cur, &format!("{head} STREAM"), line)?;
            program.streams.push(decl);
            return Ok(());
        }
        if cur.eat("PUMP") {
            let pump = parse_pump(&mut cur, &format!("{head} PUMP"), line)?;
            program.pumps.push(pump);
            return Ok(());
        }
        let what = cur.peek().map(|t| format!(" {}", shorten(t.text)));
        let what = what.unwrap_or_default();
        let reason = format!("unsupported statement {head}{what}; {SUPPORTED}");
        return Err(cur.fail(KdaError::Unsupported, reason));
    }
    if cur.eat("INSERT") {
        let name = format!("INSERT_{}", stmt.number);
        program.pumps.push(parse_insert(&mut cur, name, line)?);
        return Ok(());
    }
    let what = cur.peek().map_or(String::new(), |t| shorten(t.text));
    let reason = format!("unsupported statement starting with {what}; {SUPPORTED}");
    Err(cur.fail(KdaError::Unsupported, reason))
}

/// Parses `name (col TYPE [NOT NULL], ...) [DESCRIPTION '...']`.
fn parse_stream(cur: &mut Cursor<'_, '_>, head: &str, line: usize) -> Result<StreamDecl, KdaError> {
    let (name, written) = cur.name("a stream name", head)?;
    cur.expect("(", &format!("{head} {written}"))?;
    let mut columns = Vec::new();
    loop {
        let after = if columns.is_empty() { "(" } else { "," };
        let after = format!("{after} in the column list");
        let (name, written) = cur.name("a column name", &after)?;
        let sql_type = parse_type(cur, written)?;
        if cur.eat("NOT") {
            cur.expect("NULL", "NOT")?;
        }
        columns.push(ColumnDecl { name, sql_type });
        if cur.eat(")") {
            break;
        }
        if !cur.eat(",") {
            return Err(cur.expected(", or )", &format!("column {written}")));
        }
    }
    if cur.eat("DESCRIPTION") {
        match cur.peek().map(|t| &t.token) {
            Some(Token::SingleQuotedString(_)) => cur.bump(),
            _ => return Err(cur.expected("a string", "DESCRIPTION")),
        };
    }
    if cur.peek().is_some() {
        let after = format!("the column list of stream {written}");
        return Err(cur.expected("the end of the statement", &after));
    }
    Ok(StreamDecl {
        name,
        columns,
        line,
    })
}

/// Column types KDA accepts, indexed by how many parameters they may take.
const TYPES: [&str; 3] = [
    "INTEGER INT BIGINT SMALLINT TINYINT DOUBLE REAL BOOLEAN DATE",
    "VARCHAR CHAR CHARACTER VARBINARY BINARY TIMESTAMP TIME FLOAT",
    "DECIMAL DEC NUMERIC",
];

fn parse_type(cur: &mut Cursor<'_, '_>, column: &str) -> Result<String, KdaError> {
    let Some(word) = cur.peek().and_then(folded) else {
        return Err(cur.expected("a type", &format!("column {column}")));
    };
    let Some(max) = TYPES.iter().position(|l| l.split(' ').any(|n| n == word)) else {
        let reason = format!("unknown type {word} for column {column}");
        return Err(cur.fail(KdaError::UnknownType, reason));
    };
    cur.bump();
    if word == "DOUBLE" && cur.eat("PRECISION") {
        return Ok("DOUBLE PRECISION".to_string());
    }
    if max == 0 || !cur.eat("(") {
        return Ok(word);
    }
    let mut params = Vec::new();
    loop {
        match cur.peek().map(|t| &t.token) {
            Some(Token::Number(n, _)) if n.chars().all(|c| c.is_ascii_digit()) => {
                params.push(n.clone());
                cur.bump();
            }
            _ => return Err(cur.expected("a whole number", &format!("{word}("))),
        }
        if params.len() >= max || !cur.eat(",") {
            cur.expect(")", &format!("the parameters of {word}"))?;
            return Ok(format!("{word}({})", params.join(",")));
        }
    }
}

fn parse_pump(cur: &mut Cursor<'_, '_>, head: &str, line: usize) -> Result<Pump, KdaError> {
    let (name, written) = cur.name("a pump name", head)?;
    cur.expect("AS", &format!("{head} {written}"))?;
    cur.expect("INSERT", "AS")?;
    parse_insert(cur, name, line)
}

/// Parses `[EXPEDITED] INTO target [(cols)] query`, after `INSERT`.
fn parse_insert(cur: &mut Cursor<'_, '_>, name: String, line: usize) -> Result<Pump, KdaError> {
    cur.eat("EXPEDITED");
    cur.expect("INTO", "INSERT")?;
    let (target, written) = cur.name("a stream name", "INSERT INTO")?;
    let after = format!("INSERT INTO {written}");
    let mut target_columns = Vec::new();
    let opens_query = |t: &Tok<'_>| ["SELECT", "WITH", "VALUES", "("].iter().any(|w| is(t, w));
    if !cur.peek_at(1).is_some_and(opens_query) && cur.eat("(") {
        loop {
            let (column, _) = cur.name("a column name", "( or , in the INSERT column list")?;
            target_columns.push(column);
            if !cur.eat(",") {
                break;
            }
        }
        cur.expect(")", "the INSERT column list")?;
    }
    if !cur.peek().is_some_and(opens_query) {
        return Err(cur.expected("a SELECT", &after));
    }
    let statement = cur.s.number;
    let first = cur.rest().iter().find(|t| !is_blank(&t.token));
    let select_at = first.map_or((line, 1), |t| (t.pos.line, t.pos.column));
    let (select, stagger) = core_query(cur.rest(), statement, &after)?;
    Ok(Pump {
        name,
        target,
        target_columns,
        select,
        stagger,
        statement,
        select_at,
        line,
    })
}

/// What becomes of one token of a query in the core SQL text.
#[derive(Clone, Copy)]
enum Action {
    Keep,
    Drop,
    Replace(&'static str),
}

impl Action {
    fn run<'a>((tok, action): (&Tok<'a>, Action)) -> Option<Run<'a>> {
        match action {
            Action::Keep => Some((tok.text, tok.pos, true)),
            Action::Drop => None,
            Action::Replace(text) => Some((text, tok.pos, false)),
        }
    }
}

/// Deepest bracket nesting handed to sqlparser: some of its rules (`POSITION(`,
/// `CAST(`, `FLOOR(`...) backtrack, so its time grows exponentially with it.
const MAX_NESTING: isize = 10;

/// A query's tokens with the bracket depth before each of them.
struct View<'t, 'a> {
    q: &'t [Tok<'a>],
    depth: Vec<isize>,
    stmt: usize,
}

impl<'t, 'a> View<'t, 'a> {
    fn new(q: &'t [Tok<'a>], stmt: usize) -> Self {
        let mut d = 0isize;
        let mut depth = Vec::with_capacity(q.len());
        for t in q {
            depth.push(d);
            match t.token {
                Token::LParen | Token::LBracket | Token::LBrace => d = d.saturating_add(1),
                Token::RParen | Token::RBracket | Token::RBrace => d = d.saturating_sub(1),
                _ => {}
            }
        }
        View { q, depth, stmt }
    }

    fn is(&self, k: usize, want: &str) -> bool {
        self.q.get(k).is_some_and(|t| is(t, want))
    }

    /// Whether `k` is whitespace, a comment, or past the end.
    fn blank(&self, k: usize) -> bool {
        self.q.get(k).is_none_or(|t| is_blank(&t.token))
    }

    fn depth(&self, k: usize) -> isize {
        self.depth.get(k).copied().unwrap_or(0)
    }

    fn next_sig(&self, k: usize) -> Option<usize> {
        let from = k.saturating_add(1);
        (from..self.q.len()).find(|&n| !self.blank(n))
    }

    /// The next significant token after `k` if it is `want`.
    fn next_is(&self, k: usize, want: &str) -> Option<usize> {
        self.next_sig(k).filter(|&n| self.is(n, want))
    }

    /// The first `want` directly inside the parens opened at `open`.
    fn find_inside(&self, open: usize, want: &str) -> Option<usize> {
        let inner = self.depth(open).saturating_add(1);
        let mut inside =
            (open.saturating_add(1)..self.q.len()).take_while(|&k| self.depth(k) >= inner);
        inside.find(|&k| self.depth(k) == inner && self.is(k, want))
    }

    /// The next significant token after `k`, which must be `want`.
    fn need(&self, k: usize, want: &str, after: &str) -> Result<usize, KdaError> {
        self.next_is(k, want).ok_or_else(|| {
            let at = self.next_sig(k).unwrap_or(k);
            self.fail_at(at, format!("expected {want} after {after}"))
        })
    }

    fn fail_at(&self, k: usize, reason: String) -> KdaError {
        let tok = self.q.get(k).or(self.q.last());
        let pos = tok.map_or(Pos::START, |t| t.pos);
        error(KdaError::Syntax, self.stmt, pos, reason)
    }
}

/// Rewrites a KDA query into core SQL and checks that it parses.
fn core_query(toks: &[Tok<'_>], stmt: usize, after: &str) -> Result<(String, bool), KdaError> {
    let first = toks.iter().position(|t| !is_blank(&t.token)).unwrap_or(0);
    let last = toks.iter().rposition(|t| !is_blank(&t.token)).unwrap_or(0);
    let v = View::new(toks.get(first..=last).unwrap_or(&[]), stmt);
    if let Some(k) = (0..v.q.len()).find(|&k| v.depth(k) > MAX_NESTING) {
        let reason = format!("brackets nested more than {MAX_NESTING} deep are not supported");
        return Err(v.fail_at(k.saturating_sub(1), reason));
    }
    let mut actions = vec![Action::Keep; v.q.len()];
    let mut stagger = false;
    for k in 0..v.q.len() {
        if v.is(k, "SELECT") {
            drop_select_stream(&v, k, &mut actions);
        } else if v.is(k, "STEP") {
            rewrite_step(&v, k, &mut actions);
        } else if v.is(k, "WINDOWED") && v.next_is(k, "BY").is_some() {
            rewrite_stagger(&v, k, &mut actions)?;
            stagger = true;
        }
    }
    let runs: Vec<Run<'_>> = v.q.iter().zip(actions).filter_map(Action::run).collect();
    let text: String = runs.iter().map(|r| r.0).collect();
    let text = text.trim_end().to_string();
    verify(&text, &runs, stmt, after)?;
    Ok((text, stagger))
}

fn set(actions: &mut [Action], k: usize, action: Action) {
    if let Some(slot) = actions.get_mut(k) {
        *slot = action;
    }
}

/// Drops the space, tab or newline just before token `k`, if there is one.
fn drop_plain_before(v: &View<'_, '_>, k: usize, actions: &mut [Action]) {
    let plain = [Whitespace::Space, Whitespace::Tab, Whitespace::Newline].map(Token::Whitespace);
    if let Some(b) = k.checked_sub(1)
        && v.q.get(b).is_some_and(|t| plain.contains(&t.token))
    {
        set(actions, b, Action::Drop);
    }
}

/// `SELECT STREAM x` → `SELECT x`, unless `STREAM` is itself a column.
fn drop_select_stream(v: &View<'_, '_>, select: usize, actions: &mut [Action]) {
    let Some(stream) = v.next_is(select, "STREAM") else {
        return;
    };
    let is_column = v
        .next_sig(stream)
        .is_none_or(|k| [",", ".", "FROM", "AS"].iter().any(|w| v.is(k, w)));
    if !is_column {
        set(actions, stream, Action::Drop);
        if v.blank(stream.saturating_add(1)) {
            drop_plain_before(v, stream, actions);
        }
    }
}

/// `STEP(x BY INTERVAL ...)` → `STEP(x, INTERVAL ...)`.
fn rewrite_step(v: &View<'_, '_>, step: usize, actions: &mut [Action]) {
    let Some(open) = v.next_is(step, "(") else {
        return;
    };
    if let Some(by) = v.find_inside(open, "BY") {
        set(actions, by, Action::Replace(","));
        drop_plain_before(v, by, actions);
    }
}

/// `WINDOWED BY STAGGER (PARTITION BY keys RANGE ...)` → `GROUP BY keys`.
fn rewrite_stagger(
    v: &View<'_, '_>,
    windowed: usize,
    actions: &mut [Action],
) -> Result<(), KdaError> {
    let by = v.next_sig(windowed).unwrap_or(windowed);
    let stagger = v.need(by, "STAGGER", "WINDOWED BY")?;
    let open = v.need(stagger, "(", "WINDOWED BY STAGGER")?;
    let partition = v.need(open, "PARTITION", "WINDOWED BY STAGGER (")?;
    let keys_by = v.need(partition, "BY", "PARTITION")?;
    let Some(close) = v.find_inside(open, ")") else {
        return Err(v.fail_at(open, "unclosed ( in WINDOWED BY STAGGER".to_string()));
    };
    let Some(range) = v.find_inside(open, "RANGE").filter(|&r| r > keys_by) else {
        let reason = "expected RANGE after the partition keys in WINDOWED BY STAGGER";
        return Err(v.fail_at(close, reason.to_string()));
    };
    if v.next_sig(keys_by).is_none_or(|k| k >= range) {
        let reason = "expected partition keys after PARTITION BY";
        return Err(v.fail_at(range, reason.to_string()));
    }
    if v.next_sig(range).is_none_or(|k| k >= close) {
        return Err(v.fail_at(close, "expected a window length after RANGE".to_string()));
    }
    if let Some(group) = group_by_in_same_query(v, windowed) {
        let reason = "cannot combine WINDOWED BY STAGGER with GROUP BY in the same query";
        return Err(v.fail_at(group, reason.to_string()));
    }
    let spaced = v.blank(keys_by.saturating_add(1));
    let group = if spaced { "GROUP BY" } else { "GROUP BY " };
    set(actions, windowed, Action::Replace(group));
    for k in windowed.saturating_add(1)..=keys_by {
        set(actions, k, Action::Drop);
    }
    for k in range..=close {
        set(actions, k, Action::Drop);
    }
    drop_plain_before(v, range, actions);
    // Keep the keys apart from a word that follows the clause directly.
    let next = close.saturating_add(1);
    if !v.blank(next) && ![")", ","].iter().any(|w| v.is(next, w)) {
        set(actions, close, Action::Replace(" "));
    }
    Ok(())
}

/// A `GROUP BY` at the same level as `at`, within the same SELECT. The scan
/// stops at the neighbouring `WINDOWED` clauses, which check their own side.
fn group_by_in_same_query(v: &View<'_, '_>, at: usize) -> Option<usize> {
    let d = v.depth(at);
    let stops = |k: usize, words: &[&str]| {
        v.depth(k) < d || (v.depth(k) == d && words.iter().any(|w| v.is(k, w)))
    };
    let mut start = at;
    while let Some(k) = start
        .checked_sub(1)
        .filter(|&k| !stops(k, &["SELECT", "WINDOWED"]))
    {
        start = k;
    }
    let ends = ["UNION", "EXCEPT", "INTERSECT", "WINDOWED"];
    let from = at.saturating_add(1);
    let end = (from..v.q.len())
        .find(|&k| stops(k, &ends))
        .unwrap_or(v.q.len());
    (start..end).find(|&k| v.depth(k) == d && v.is(k, "GROUP") && v.next_is(k, "BY").is_some())
}

/// A run of core SQL text: the text, the original position it came from,
/// and whether it was copied verbatim (so positions inside it map too).
type Run<'a> = (&'a str, Pos, bool);

fn verify(text: &str, runs: &[Run<'_>], stmt: usize, after: &str) -> Result<(), KdaError> {
    match Parser::parse_sql(&GenericDialect {}, text) {
        Ok(s) if matches!(s.as_slice(), [Statement::Query(_)]) => Ok(()),
        Ok(_) => {
            let start = runs.first().map_or(Pos::START, |r| r.1);
            let reason = format!("expected a single query after {after}");
            Err(error(KdaError::Query, stmt, start, reason))
        }
        Err(e) => {
            let message = match &e {
                ParserError::TokenizerError(s) | ParserError::ParserError(s) => s.as_str(),
                ParserError::RecursionLimitExceeded => "recursion limit exceeded",
            };
            let (message, loc) = split_location(message);
            let reason = format!("invalid query: {}", lower_first(message));
            Err(error(KdaError::Query, stmt, map_back(runs, loc), reason))
        }
    }
}

/// Splits sqlparser's ` at Line: L, Column: C` suffix off a message.
fn split_location(message: &str) -> (&str, Option<Pos>) {
    let parse = || {
        let (head, tail) = message.rsplit_once(" at Line: ")?;
        let (line, column) = tail.split_once(", Column: ")?;
        let line: usize = line.trim().parse().ok().filter(|&n| n > 0)?;
        let column: usize = column.trim().parse().ok().filter(|&n| n > 0)?;
        Some((head, Pos { line, column }))
    };
    parse().map_or((message, None), |(head, pos)| (head, Some(pos)))
}

/// Maps a position in the core SQL text back to the original code; with no
/// position, or one past the end, points just after the last run.
fn map_back(runs: &[Run<'_>], target: Option<Pos>) -> Pos {
    let mut out = Pos::START;
    let mut last = runs.first().map_or(Pos::START, |r| r.1);
    for &(text, pos, verbatim) in runs {
        let mut orig = pos;
        for c in text.chars() {
            if Some(out) == target {
                return if verbatim { orig } else { pos };
            }
            out.advance(c);
            if verbatim {
                orig.advance(c);
            }
        }
        last = orig;
    }
    last
}

#[cfg(test)]
mod tests;
