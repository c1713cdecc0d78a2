//! What each call needs: a person's approval, nothing (`pass`), or a refusal (`deny`), by the
//! route it matches; and which parts of the call form the params the person approves.
//!
//! A route is a method and a path template whose `{name}` segments match one path segment
//! each. The first route of the upstream that matches wins, in the order of the gate file. A
//! path with dot segments, empty segments or encoded slashes matches nothing: the upstream might
//! resolve it to another route than the one that was checked.

use std::fmt;

use serde::Deserialize;

/// What a route requires before a call is forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Need {
    /// A person's passkey approval of exactly this call.
    Approve,
    /// Nothing: forwarded with the credential (read-only calls the operator trusts).
    Pass,
    /// Refused.
    Deny,
}

impl Need {
    pub fn as_str(self) -> &'static str {
        match self {
            Need::Approve => "approve",
            Need::Pass => "pass",
            Need::Deny => "deny",
        }
    }
}

/// A part of a call that can form its params.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    /// The path template's variables, as an object of strings.
    Path,
    /// The query string, as an object of strings (a name given twice is refused).
    Query,
    /// The body: JSON as it is, a form as an object of strings.
    Body,
}

impl Part {
    pub const ALL: [Part; 3] = [Part::Path, Part::Query, Part::Body];
    pub const NAMES: &str = "path, query, body";

    pub fn as_str(self) -> &'static str {
        match self {
            Part::Path => "path",
            Part::Query => "query",
            Part::Body => "body",
        }
    }
}

/// One route of an upstream, as the gate file gives it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// `METHOD /path/{var}`.
    pub route: MethodPath,
    /// The action name the person approves, e.g. `payments.charge` (for `approve` routes).
    #[serde(default)]
    pub action: Option<Action>,
    pub need: Need,
    /// The parts that form the params (default: all that the call has).
    #[serde(default)]
    pub params: Option<Vec<Part>>,
}

impl RouteSpec {
    /// The parts that form the params.
    pub fn parts(&self) -> &[Part] {
        self.params.as_deref().unwrap_or(&Part::ALL)
    }
}

/// An action name: 1 to 128 of `A-Z a-z 0-9 . _ : -`, as the gateway accepts.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Action(String);

impl TryFrom<String> for Action {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        let valid = !name.is_empty()
            && name.len() <= 128
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".:_-".contains(&b));
        if valid {
            Ok(Action(name))
        } else {
            Err(format!(
                "action {name:?}: use 1 to 128 of A-Z a-z 0-9 . _ : -"
            ))
        }
    }
}

impl Action {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A method and a path template.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct MethodPath {
    pub method: http::Method,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Variable(String),
}

impl TryFrom<String> for MethodPath {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let bad = |why: &str| format!("route {text:?}: {why}; write it as \"POST /v1/charges\"");
        let (method, path) = text
            .split_once(' ')
            .ok_or_else(|| bad("give a method and a path"))?;
        let method = http::Method::from_bytes(method.as_bytes())
            .ok()
            .filter(|m| m.as_str().bytes().all(|b| b.is_ascii_uppercase()))
            .ok_or_else(|| bad("the method is not an upper-case HTTP method"))?;
        let rest = path
            .strip_prefix('/')
            .ok_or_else(|| bad("the path must start with /"))?;
        let mut segments = Vec::new();
        let mut names = Vec::new();
        if !rest.is_empty() {
            for segment in rest.split('/') {
                segments.push(template_segment(segment, &mut names).map_err(|why| bad(&why))?);
            }
        }
        Ok(MethodPath { method, segments })
    }
}

fn template_segment(segment: &str, names: &mut Vec<String>) -> Result<Segment, String> {
    if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
        let valid =
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(format!("{{{name}}} is not a variable name (A-Z a-z 0-9 _)"));
        }
        if names.iter().any(|n| n == name) {
            return Err(format!("{{{name}}} appears twice"));
        }
        names.push(name.to_owned());
        return Ok(Segment::Variable(name.to_owned()));
    }
    if !usable_segment(segment) || segment.contains(['{', '}']) {
        return Err(format!(
            "the segment {segment:?} is empty, a dot segment, or has braces"
        ));
    }
    Ok(Segment::Literal(segment.to_owned()))
}

/// A path segment that means the same to every server: not empty, not `.` or `..` (also
/// percent-encoded), no encoded slash or backslash.
fn usable_segment(segment: &str) -> bool {
    let lower = segment.to_ascii_lowercase();
    let decoded_dots = lower.replace("%2e", ".");
    !segment.is_empty()
        && decoded_dots != "."
        && decoded_dots != ".."
        && !lower.contains("%2f")
        && !lower.contains("%5c")
        && !segment.contains('\\')
}

impl fmt::Display for MethodPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ", self.method)?;
        if self.segments.is_empty() {
            return f.write_str("/");
        }
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => write!(f, "/{text}")?,
                Segment::Variable(name) => write!(f, "/{{{name}}}")?,
            }
        }
        Ok(())
    }
}

/// The variables of a matched path, percent-decoded.
pub type PathVars = Vec<(String, String)>;

impl MethodPath {
    /// The variables when `method` and `path` (as sent, percent-encoded) match this route.
    pub fn matches(&self, method: &http::Method, path: &str) -> Option<PathVars> {
        if method != self.method {
            return None;
        }
        let rest = path.strip_prefix('/')?;
        let given: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        if given.len() != self.segments.len() {
            return None;
        }
        let mut vars = Vec::new();
        for (segment, text) in self.segments.iter().zip(given) {
            match segment {
                Segment::Literal(literal) if literal == text => {}
                Segment::Literal(_) => return None,
                Segment::Variable(name) => {
                    let value = percent_decode(text)?;
                    vars.push((name.clone(), value));
                }
            }
        }
        Some(vars)
    }
}

/// Whether every segment of `path` is one that means the same to every server.
pub fn is_plain_path(path: &str) -> bool {
    path.strip_prefix('/')
        .is_some_and(|rest| rest.is_empty() || rest.split('/').all(usable_segment))
}

/// `text` percent-decoded as UTF-8; `None` when it is not.
fn percent_decode(text: &str) -> Option<String> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .ok()
        .map(|decoded| decoded.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(text: &str) -> MethodPath {
        MethodPath::try_from(text.to_owned()).unwrap()
    }

    #[test]
    fn templates_match_one_segment_per_variable() {
        let repo = route("DELETE /repos/{owner}/{repo}");
        assert_eq!(
            repo.matches(&http::Method::DELETE, "/repos/alice/my%20repo"),
            Some(vec![
                ("owner".into(), "alice".into()),
                ("repo".into(), "my repo".into())
            ])
        );
        assert_eq!(repo.matches(&http::Method::GET, "/repos/alice/x"), None);
        assert_eq!(repo.matches(&http::Method::DELETE, "/repos/alice"), None);
        assert_eq!(repo.matches(&http::Method::DELETE, "/repos/a/b/c"), None);
        assert_eq!(repo.to_string(), "DELETE /repos/{owner}/{repo}");
        assert_eq!(
            route("GET /").matches(&http::Method::GET, "/"),
            Some(vec![])
        );
    }

    #[test]
    fn paths_that_servers_may_resolve_differently_are_not_plain() {
        for path in [
            "/v1/../admin",
            "/v1/./charges",
            "/v1//charges",
            "/v1/%2e%2E/admin",
            "/v1/a%2fb",
            "/v1/a%5Cb",
            "/v1/a\\b",
        ] {
            assert!(!is_plain_path(path), "{path}");
        }
        assert!(is_plain_path("/v1/charges/ch_1"));
        assert!(is_plain_path("/"));
    }

    #[test]
    fn bad_templates_are_refused() {
        for text in [
            "post /a",
            "POST a",
            "POST /a/{}",
            "POST /{a}/{a}",
            "POST /a//b",
            "POST",
        ] {
            assert!(MethodPath::try_from(text.to_owned()).is_err(), "{text}");
        }
    }
}
