//! The params of a call: what the person approves and what the token is bound to.
//!
//! They are a JSON object with a member for each part the route takes that the call has:
//! `path` (the template's variables), `query` and `body`, e.g.
//! `{"body": {"amount": 5000, "currency": "eur"}}` or
//! `{"path": {"owner": "alice", "repo": "site"}}`. A bring-your-own-token caller asks for
//! exactly this object; the gate derives it from the call for both kinds of caller with this one
//! function, so the hash the person approved is the hash of what is forwarded.
//!
//! Anything that cannot be shown to the person exactly is refused before an approval is asked:
//! JSON with duplicate keys or over-precise numbers, a query or form naming a key twice, a body
//! that is neither JSON nor a form, text that is not UTF-8.

use bytes::Bytes;
use handsign_protocol::canonical::Limits;
use handsign_protocol::params::CanonicalParams;
use http::{HeaderMap, header};
use serde_json::{Map, Value};

use crate::policy::{Part, PathVars};

/// What the gate canonicalizes: the gateway's defaults.
pub fn limits() -> Limits {
    Limits::default()
}

/// The params of a call, checked to be representable exactly.
pub fn derive(
    parts: &[Part],
    vars: &PathVars,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Value, String> {
    let mut params = Map::new();
    for part in parts {
        let value = match part {
            Part::Path if vars.is_empty() => None,
            Part::Path => Some(Value::Object(
                vars.iter()
                    .map(|(name, value)| (name.clone(), Value::String(value.clone())))
                    .collect(),
            )),
            Part::Query => match query {
                Some(query) if !query.is_empty() => Some(form("the query", query.as_bytes())?),
                _ => None,
            },
            Part::Body if body.is_empty() => None,
            Part::Body => Some(body_params(headers, body)?),
        };
        if let Some(value) = value {
            params.insert(part.as_str().to_owned(), value);
        }
    }
    let params = Value::Object(params);
    CanonicalParams::from_value(&params, &limits())
        .map_err(|error| format!("the params cannot be shown exactly as approved: {error}"))?;
    Ok(params)
}

/// The body as params: JSON as it is (strictly), a form as an object of strings.
fn body_params(headers: &HeaderMap, body: &Bytes) -> Result<Value, String> {
    if handsign_verify::is_json(headers) {
        // Strict first: serde_json would keep the last of two equal keys and round numbers.
        CanonicalParams::parse(body, &limits())
            .map_err(|error| format!("the JSON body cannot be approved exactly: {error}"))?;
        return serde_json::from_slice(body)
            .map_err(|error| format!("the JSON body cannot be read: {error}"));
    }
    if handsign_verify::media_type(headers) == "application/x-www-form-urlencoded" {
        return form("the form body", body);
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    Err(format!(
        "the body's Content-Type is {:?}: the gate can show a person JSON \
         (application/json) or a form (application/x-www-form-urlencoded) only",
        content_type.chars().take(100).collect::<String>()
    ))
}

/// `name=value&...` as an object of strings; a name given twice is refused, since an upstream
/// may read either value.
fn form(what: &str, text: &[u8]) -> Result<Value, String> {
    if std::str::from_utf8(text).is_err() {
        return Err(format!("{what} is not UTF-8"));
    }
    let mut object = Map::new();
    for (name, value) in url::form_urlencoded::parse(text) {
        if object
            .insert(name.to_string(), Value::String(value.into_owned()))
            .is_some()
        {
            return Err(format!(
                "{what} gives {name:?} more than once: the upstream might read either value"
            ));
        }
    }
    Ok(Value::Object(object))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn headers(content_type: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, content_type.parse().unwrap());
        headers
    }

    #[test]
    fn every_present_part_by_default() {
        let vars = vec![("id".to_owned(), "ch 1".to_owned())];
        let params = derive(
            &Part::ALL,
            &vars,
            Some("expand=customer"),
            &headers("application/json"),
            &Bytes::from_static(br#"{"amount": 5000}"#),
        )
        .unwrap();
        assert_eq!(
            params,
            json!({"path": {"id": "ch 1"}, "query": {"expand": "customer"}, "body": {"amount": 5000}})
        );
        let none = derive(&Part::ALL, &vec![], None, &HeaderMap::new(), &Bytes::new()).unwrap();
        assert_eq!(none, json!({}));
        let form = derive(
            &[Part::Body],
            &vec![],
            Some("ignored=1"),
            &headers("application/x-www-form-urlencoded"),
            &Bytes::from_static(b"amount=5000&currency=eur"),
        )
        .unwrap();
        assert_eq!(form, json!({"body": {"amount": "5000", "currency": "eur"}}));
    }

    #[test]
    fn what_cannot_be_shown_exactly_is_refused() {
        let json = headers("application/json");
        for body in [
            &br#"{"a": 1, "a": 2}"#[..],
            br#"{"amount": 9007199254740993}"#,
            b"not json",
        ] {
            let result = derive(
                &Part::ALL,
                &vec![],
                None,
                &json,
                &Bytes::copy_from_slice(body),
            );
            assert!(result.is_err(), "{}", String::from_utf8_lossy(body));
        }
        let twice = derive(&Part::ALL, &vec![], Some("a=1&a=2"), &json, &Bytes::new());
        assert!(twice.unwrap_err().contains("more than once"));
        let binary = derive(
            &Part::ALL,
            &vec![],
            None,
            &headers("application/octet-stream"),
            &Bytes::from_static(b"\x00"),
        );
        assert!(binary.unwrap_err().contains("octet-stream"));
    }
}
