//! An access key's permissions, in the IAM policy document shape people
//! already write: `{ Statement: [ { Effect, Action, Resource } ] }` (a
//! statement, or a list of them; `Action` and `Resource` a string or a
//! list). Actions are `service:Operation` (`firehose:PutRecord`,
//! `kinesis:GetRecords`), resources ARNs or bare stream names; both take
//! `*` and `?` wildcards, actions without regard to case as IAM compares
//! them. An explicit `Deny` wins over any `Allow`; nothing allowed is
//! denied.

use serde_json::Value;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    pub allow: bool,
    pub actions: Vec<String>,
    pub resources: Vec<String>,
}

/// A key's policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub statements: Vec<Statement>,
}

/// `*` (any run) and `?` (any one character) glob match.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Whether a statement's resource pattern names `resource` (an ARN): as an
/// ARN pattern, or as a bare name matched against the ARN's last part.
fn resource_matches(pattern: &str, resource: &str) -> bool {
    if pattern == "*" || glob(pattern, resource) {
        return true;
    }
    if pattern.starts_with("arn:") {
        return false;
    }
    let name = resource.rsplit_once('/').map_or(resource, |(_, n)| n);
    glob(pattern, name)
}

impl Policy {
    /// Whether the policy lets `action` act on `resource`.
    pub fn allows(&self, action: &str, resource: &str) -> bool {
        let action = action.to_ascii_lowercase();
        let applies = |s: &&Statement| {
            s.actions
                .iter()
                .any(|a| glob(&a.to_ascii_lowercase(), &action))
                && s.resources.iter().any(|r| resource_matches(r, resource))
        };
        let matching: Vec<&Statement> = self.statements.iter().filter(applies).collect();
        !matching.iter().any(|s| !s.allow) && matching.iter().any(|s| s.allow)
    }
}

fn strings(v: &Value, field: &str, at: &str) -> Result<Vec<String>, String> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(a) if !a.is_empty() => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("{at}.{field}: every entry must be a string"))
            })
            .collect(),
        _ => Err(format!(
            "{at}.{field}: a string or a non-empty list of strings"
        )),
    }
}

/// A policy from its document (YAML turned JSON, or a JSON string); Err
/// names the part (`Statement[1].Effect`) and the reason.
pub fn parse(doc: &Value) -> Result<Policy, String> {
    let doc = match doc {
        Value::String(s) => serde_json::from_str::<Value>(s)
            .map_err(|e| format!("is not a JSON policy document: {e}"))?,
        other => other.clone(),
    };
    let statements = match doc.get("Statement") {
        Some(Value::Array(a)) => a.clone(),
        Some(s @ Value::Object(_)) => vec![s.clone()],
        _ => return Err("Statement: required, a statement or a list of them".into()),
    };
    let mut out = Vec::new();
    for (i, s) in statements.iter().enumerate() {
        let at = format!("Statement[{i}]");
        let Some(obj) = s.as_object() else {
            return Err(format!("{at}: must be a map"));
        };
        for k in obj.keys() {
            if !matches!(k.as_str(), "Sid" | "Effect" | "Action" | "Resource") {
                return Err(format!(
                    "{at}.{k}: not supported (Sid, Effect, Action, Resource)"
                ));
            }
        }
        let allow = match obj.get("Effect").and_then(Value::as_str) {
            Some("Allow") => true,
            Some("Deny") => false,
            _ => return Err(format!("{at}.Effect: Allow or Deny")),
        };
        let actions = strings(obj.get("Action").unwrap_or(&Value::Null), "Action", &at)?;
        for a in &actions {
            if a != "*" && !a.contains(':') {
                return Err(format!(
                    "{at}.Action: `{a}` is not service:Operation (firehose:PutRecord, kinesis:*)"
                ));
            }
        }
        let resources = strings(obj.get("Resource").unwrap_or(&Value::Null), "Resource", &at)?;
        out.push(Statement {
            allow,
            actions,
            resources,
        });
    }
    Ok(Policy { statements: out })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LOGS_APP: &str = "arn:aws:firehose:us-east-1:000000000000:deliverystream/logs-app";

    #[test]
    fn allow_by_wildcards_and_deny_wins() {
        let p = parse(&json!({ "Statement": [
            { "Effect": "Allow", "Action": "firehose:PutRecord*", "Resource": "logs-*" },
            { "Effect": "Allow", "Action": ["kinesis:Get*", "kinesis:DescribeStream"], "Resource": "arn:aws:kinesis:*:*:stream/clicks" },
            { "Effect": "Deny", "Action": "firehose:*", "Resource": "*-secret" },
        ]}))
        .unwrap();
        assert!(p.allows("firehose:PutRecordBatch", LOGS_APP));
        assert!(
            p.allows("Firehose:putrecord", LOGS_APP),
            "actions ignore case"
        );
        assert!(!p.allows(
            "firehose:PutRecord",
            "arn:aws:firehose:us-east-1:000000000000:deliverystream/orders"
        ));
        assert!(!p.allows("firehose:DeleteDeliveryStream", LOGS_APP));
        assert!(!p.allows(
            "firehose:PutRecord",
            "arn:aws:firehose:us-east-1:000000000000:deliverystream/logs-secret"
        ));
        assert!(p.allows(
            "kinesis:GetRecords",
            "arn:aws:kinesis:us-east-1:000000000000:stream/clicks"
        ));
        assert!(!p.allows(
            "kinesis:PutRecord",
            "arn:aws:kinesis:us-east-1:000000000000:stream/clicks"
        ));
        assert!(glob("a*b?c", "aXXbYc") && !glob("a*b?c", "abc") && glob("*", ""));
    }

    #[test]
    fn a_json_string_policy_and_refusals_name_the_part() {
        let p = parse(&json!(
            r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#
        ))
        .unwrap();
        assert!(p.allows(
            "kinesis:DeleteStream",
            "arn:aws:kinesis:us-east-1:0:stream/x"
        ));
        let bad = |v: Value| parse(&v).unwrap_err();
        assert!(bad(json!({})).starts_with("Statement"));
        assert!(
            bad(json!({"Statement": [{"Effect": "Maybe", "Action": "*", "Resource": "*"}]}))
                .starts_with("Statement[0].Effect")
        );
        assert!(
            bad(
                json!({"Statement": [{"Effect": "Allow", "Action": "PutRecord", "Resource": "*"}]})
            )
            .contains("service:Operation")
        );
        assert!(bad(json!({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {}}]})).contains("Condition"));
        assert!(
            bad(json!({"Statement": [{"Effect": "Allow", "Action": "*"}]})).contains("Resource")
        );
        assert!(bad(json!("{not json")).contains("JSON"));
    }
}
