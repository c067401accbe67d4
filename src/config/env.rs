//! `${VAR}` interpolation: the config file's text with environment variables
//! substituted before it is parsed, so secrets need not sit in the file.
//! `${VAR:-default}` gives a default and `$$` is a literal `$`; a variable
//! that is unset and has no default is an error naming its line.

use super::{ConfigError, err};

/// Replaces `${VAR}` and `${VAR:-default}` from `lookup`; `$$` is a literal `$`.
pub fn interpolate_env(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let line = text[..text.len() - rest.len() + i].matches('\n').count() + 1;
            let Some(end) = body.find('}') else {
                return Err(err(
                    "",
                    format!("line {line}: `${{` is never closed with `}}`"),
                ));
            };
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(err(
                    "",
                    format!("line {line}: `${{{expr}}}` is not a valid variable name"),
                ));
            }
            match (lookup(name), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(err(
                        "",
                        format!(
                            "line {line}: environment variable {name} is not set (write ${{{name}:-default}} for a default)"
                        ),
                    ));
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}
