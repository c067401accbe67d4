//! A splitter of delimited text for the decoder and schema inference: rows
//! on the row delimiter, fields on the column delimiter, RFC 4180 quoting
//! (`"a, b"`, with `""` for a quote inside) with any delimiter strings.
//!
//! Fields point into the record; only quoted fields with `""` escapes are
//! copied, into one buffer reused across records. It must not interpret
//! values (that is the decoder's job) or panic on any input.

use super::offset;

/// One CSV field: a span of the record, or of [`CsvRows`]' own text when a
/// quoted field had `""` escapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsvField {
    start: u32,
    end: u32,
    escaped: bool,
    /// Whether the field was quoted (a quoted empty field is an empty
    /// string, an unquoted one is NULL).
    quoted: bool,
}

impl CsvField {
    /// Whether the field is NULL: empty and not quoted.
    pub fn is_null(&self) -> bool {
        !self.quoted && self.start == self.end
    }
}

/// The rows of a CSV record, reused across records.
#[derive(Debug, Default)]
pub struct CsvRows {
    fields: Vec<CsvField>,
    row_ends: Vec<usize>,
    unescaped: String,
}

impl CsvRows {
    /// Each row's fields.
    pub fn rows(&self) -> impl Iterator<Item = &[CsvField]> {
        let starts = std::iter::once(0).chain(self.row_ends.iter().copied());
        starts
            .zip(self.row_ends.iter().copied())
            .map(|(from, to)| self.fields.get(from..to).unwrap_or_default())
    }

    /// A field's text; `None` for an unquoted empty field (NULL).
    pub fn field<'a>(&'a self, input: &'a str, field: &CsvField) -> Option<&'a str> {
        if field.is_null() {
            return None;
        }
        let (start, end) = (field.start as usize, field.end as usize);
        let source = if field.escaped {
            self.unescaped.as_str()
        } else {
            input
        };
        Some(source.get(start..end).unwrap_or_default())
    }
}

/// What follows a field.
enum Next {
    Column(usize),
    Row(usize),
    End,
    Other,
}

struct Delimiters<'d> {
    row: &'d [u8],
    column: &'d [u8],
    /// `\r\n` also ends a row (when the row delimiter is `\n`).
    crlf: bool,
}

impl Delimiters<'_> {
    fn at(&self, b: &[u8], pos: usize) -> Next {
        let Some(rest) = b.get(pos..).filter(|r| !r.is_empty()) else {
            return Next::End;
        };
        let row_first = self.row.len() >= self.column.len();
        if row_first && rest.starts_with(self.row) {
            return Next::Row(self.row.len());
        }
        if rest.starts_with(self.column) {
            return Next::Column(self.column.len());
        }
        if rest.starts_with(self.row) {
            return Next::Row(self.row.len());
        }
        if self.crlf && rest.starts_with(b"\r\n") {
            return Next::Row(2);
        }
        Next::Other
    }

    fn may_start(&self, c: u8) -> bool {
        self.row.first() == Some(&c) || self.column.first() == Some(&c) || (self.crlf && c == b'\r')
    }
}

/// Splits delimited text into rows of fields (RFC 4180 quoting with the
/// given delimiters). A row delimiter at the very end does not start a row.
pub fn split_csv(
    text: &str,
    row_delimiter: &str,
    column_delimiter: &str,
    out: &mut CsvRows,
) -> Result<(), String> {
    out.fields.clear();
    out.row_ends.clear();
    out.unescaped.clear();
    if row_delimiter.is_empty() || column_delimiter.is_empty() {
        return Err("a csv delimiter is empty".to_string());
    }
    if u32::try_from(text.len()).is_err() {
        return Err("csv text is larger than 4 GiB".to_string());
    }
    let delimiters = Delimiters {
        row: row_delimiter.as_bytes(),
        column: column_delimiter.as_bytes(),
        crlf: row_delimiter == "\n",
    };
    let b = text.as_bytes();
    let mut pos = 0;
    while pos < b.len() {
        loop {
            let (field, end) = if b.get(pos) == Some(&b'"') {
                quoted_field(text, pos, &mut out.unescaped)?
            } else {
                let mut end = pos;
                while let Some(&c) = b.get(end) {
                    if delimiters.may_start(c) && !matches!(delimiters.at(b, end), Next::Other) {
                        break;
                    }
                    end += 1;
                }
                let span = (offset(pos), offset(end));
                let field = CsvField {
                    start: span.0,
                    end: span.1,
                    escaped: false,
                    quoted: false,
                };
                (field, end)
            };
            out.fields.push(field);
            match delimiters.at(b, end) {
                Next::Column(len) => pos = end + len,
                Next::Row(len) => {
                    pos = end + len;
                    break;
                }
                Next::End => {
                    pos = b.len();
                    break;
                }
                Next::Other => {
                    return Err(format!(
                        "unexpected character after closing quote at byte {end}"
                    ));
                }
            }
        }
        out.row_ends.push(out.fields.len());
    }
    Ok(())
}

/// Reads the quoted field whose opening quote is at `pos`; returns it and
/// the position after its closing quote.
fn quoted_field(
    text: &str,
    pos: usize,
    unescaped: &mut String,
) -> Result<(CsvField, usize), String> {
    let b = text.as_bytes();
    let start = pos + 1;
    let mut segment = start;
    let mut escaped_from: Option<usize> = None;
    let mut at = start;
    loop {
        let quote = b
            .get(at..)
            .and_then(|rest| rest.iter().position(|&c| c == b'"'))
            .map(|i| at + i)
            .ok_or_else(|| format!("unterminated quoted field from byte {pos}"))?;
        if b.get(quote + 1) == Some(&b'"') {
            escaped_from.get_or_insert(unescaped.len());
            unescaped.push_str(text.get(segment..=quote).unwrap_or_default());
            segment = quote + 2;
            at = quote + 2;
            continue;
        }
        let field = match escaped_from {
            Some(from) => {
                unescaped.push_str(text.get(segment..quote).unwrap_or_default());
                let (start, end) = (offset(from), offset(unescaped.len()));
                CsvField {
                    start,
                    end,
                    escaped: true,
                    quoted: true,
                }
            }
            None => CsvField {
                start: offset(start),
                end: offset(quote),
                escaped: false,
                quoted: true,
            },
        };
        return Ok((field, quote + 1));
    }
}
