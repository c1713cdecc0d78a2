//! The gate file (TOML): where the Handsign gateway is, the gate's own agent key, for each
//! upstream API its URL, audience, credential and routes, and named tool sets for the gates
//! that see tool calls ([`crate::tools`]).
//!
//! Every value is checked while the file is read, by the types it deserializes into, so that a
//! mistake is refused at start with the line and column of the value at fault (the `toml`
//! crate's spans), never found on the first call.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use url::Url;

use crate::policy::{Need, Part, RouteSpec};
use crate::tools::ToolSet;

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateFile {
    /// Where the gate listens (default `127.0.0.1:7000`).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The URL callers use to reach the gate: DPoP proofs of bring-your-own-token callers name
    /// it (default `http://` + `listen`).
    #[serde(default)]
    pub public_url: Option<HttpUrl>,
    /// Seconds a call to an `approve` route is held open while the person decides, before it
    /// is answered `202` (default 25, at most 300).
    #[serde(default = "default_hold")]
    pub hold_seconds: Bounded<1, 300>,
    /// Largest request body accepted, checked before anything else is done for the call
    /// (default 1 MiB, at most 64 MiB).
    #[serde(default = "default_body")]
    pub max_body_bytes: Bounded<1, { 64 * 1024 * 1024 }>,
    /// Most approvals in flight at once (asked, not yet used or over); calls beyond it get `503`
    /// (default 64, at most 10000).
    #[serde(default = "default_pending")]
    pub max_pending_approvals: Bounded<1, 10_000>,
    /// Seconds a person has to decide (the approval request's `ttl`; default the gateway's).
    #[serde(default)]
    pub approval_ttl_seconds: Option<Bounded<10, 86_400>>,
    /// Most connections open to the gate at once; a caller beyond it waits until one closes
    /// (default 256, at most 65536).
    #[serde(default = "default_max_connections")]
    pub max_connections: Bounded<1, 65_536>,
    /// Seconds a caller has to send a request's line and headers, from connecting or from the
    /// previous answer on the connection (default 10, at most 300).
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout_seconds: Bounded<1, 300>,
    /// Seconds a caller has to send a request's body, from the end of its headers (default 30,
    /// at most 3600).
    #[serde(default = "default_body_read_timeout")]
    pub body_read_timeout_seconds: Bounded<1, 3600>,
    /// Where the gate records used tokens: a Redis URL (`redis://host:6379/0`) makes the record
    /// outlive the gate and be shared by every gate on that Redis; without it the record is in
    /// memory, and tokens issued before the gate started are refused.
    #[serde(default)]
    pub redis_url: Option<RedisUrl>,
    pub handsign: HandsignSection,
    /// The agents allowed to call, by key: when given, every call must carry a DPoP proof made
    /// with one of these keys (from any address), and approvals name that agent. When empty,
    /// calls are taken from loopback only.
    #[serde(default)]
    pub callers: Vec<CallerSpec>,
    /// The upstream APIs of the HTTP gate; a file for tool gates only may have none.
    #[serde(default)]
    pub upstreams: BTreeMap<UpstreamName, Upstream>,
    /// Named tool sets (`[tools.NAME]`), for the MCP gate and the coding agents' hooks.
    #[serde(default)]
    pub tools: BTreeMap<ToolSetName, ToolSet>,
}

/// An agent allowed to call the gate.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawCaller")]
pub struct CallerSpec {
    /// How approvals and audit lines name it.
    pub name: String,
    /// Its key's RFC 7638 thumbprint (the agent id `handsign agent keygen` prints).
    pub key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCaller {
    name: String,
    key: String,
}

impl TryFrom<RawCaller> for CallerSpec {
    type Error = String;

    fn try_from(raw: RawCaller) -> Result<Self, String> {
        let name = raw.name.trim();
        if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
            return Err(format!(
                "callers: name {:?}: give 1 to 64 printable characters",
                raw.name
            ));
        }
        let thumbprint = raw.key.len() == 43
            && raw
                .key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !thumbprint {
            return Err(format!(
                "callers: key {:?} is not an agent id (the 43-character key thumbprint that \
                 `handsign agent keygen` prints)",
                raw.key
            ));
        }
        Ok(CallerSpec {
            name: name.to_owned(),
            key: raw.key,
        })
    }
}

/// The Handsign gateway and the gate's identity there.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandsignSection {
    /// The gateway's public URL: it issues the tokens and serves their keys.
    pub url: HttpUrl,
    /// The gate's agent key file (created by `handsign gate enroll`), relative to the gate file.
    pub agent_key: PathBuf,
    /// The user whose passkey approves the calls.
    pub user: String,
    /// The agent's name as the user sees it (default `handsign gate`).
    #[serde(default = "default_agent_name")]
    pub agent_name: String,
}

/// One upstream API, reached under `/<name>/` at the gate.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// Where calls go: a call to `/<name>/v1/charges` goes to `<base_url>/v1/charges`.
    pub base_url: HttpUrl,
    /// The audience tokens for this upstream name.
    pub audience: String,
    /// The credential the gate adds to every forwarded call.
    #[serde(default)]
    pub credential: Option<CredentialSpec>,
    /// Extra CA certificate (PEM) trusted for this upstream's TLS, relative to the gate file.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Seconds a forwarded call may take, answer included (default 30, at most 600).
    #[serde(default = "default_upstream_timeout")]
    pub timeout_seconds: Bounded<1, 600>,
    #[serde(default)]
    pub routes: Vec<Spanned<RouteSpec>>,
}

/// The header the gate adds, and where its value comes from: the gate's environment or a file,
/// never the caller.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawCredential")]
pub struct CredentialSpec {
    pub header: http::HeaderName,
    pub source: CredentialSource,
    /// Text put before the value, e.g. `Bearer `.
    pub prefix: String,
}

#[derive(Debug, Clone)]
pub enum CredentialSource {
    Env(String),
    File(PathBuf),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredential {
    header: String,
    #[serde(default)]
    value_env: Option<String>,
    #[serde(default)]
    value_file: Option<PathBuf>,
    #[serde(default)]
    prefix: String,
}

impl TryFrom<RawCredential> for CredentialSpec {
    type Error = String;

    fn try_from(raw: RawCredential) -> Result<Self, String> {
        let header = http::HeaderName::from_bytes(raw.header.as_bytes())
            .map_err(|_| format!("header: {:?} is not an HTTP header name", raw.header))?;
        let source = match (raw.value_env, raw.value_file) {
            (Some(var), None) if !var.is_empty() => CredentialSource::Env(var),
            (None, Some(path)) => CredentialSource::File(path),
            (Some(_), None) => return Err("value_env: the variable name is empty".into()),
            (None, None) => {
                return Err("credential: give value_env (an environment variable) or \
                            value_file (a file) for the header's value"
                    .into());
            }
            (Some(_), Some(_)) => {
                return Err("credential: give value_env or value_file, not both".into());
            }
        };
        if http::HeaderValue::from_str(&raw.prefix).is_err() {
            return Err("prefix: not valid in an HTTP header".into());
        }
        Ok(CredentialSpec {
            header,
            source,
            prefix: raw.prefix,
        })
    }
}

/// An upstream's name: the first path segment at the gate.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct UpstreamName(String);

/// 1 to 64 of `A-Z a-z 0-9 - _`: a name that is safe in a path, a TOML key and a message.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl TryFrom<String> for UpstreamName {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        if is_plain_name(&name) {
            Ok(UpstreamName(name))
        } else {
            Err(format!(
                "upstream name {name:?}: use 1 to 64 of A-Z a-z 0-9 - _ (it is the gate's \
                 path prefix)"
            ))
        }
    }
}

impl UpstreamName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UpstreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tool set's name: `[tools.NAME]`, chosen on the command line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct ToolSetName(String);

impl TryFrom<String> for ToolSetName {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        if is_plain_name(&name) {
            Ok(ToolSetName(name))
        } else {
            Err(format!(
                "tool set name {name:?}: use 1 to 64 of A-Z a-z 0-9 - _"
            ))
        }
    }
}

impl ToolSetName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An `http` or `https` URL, kept without a trailing slash.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct HttpUrl(String);

impl TryFrom<String> for HttpUrl {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let url = Url::parse(&text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(format!(
                "{text:?}: give an http:// or https:// URL with a host"
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!("{text:?}: no query or fragment here"));
        }
        Ok(HttpUrl(text.trim_end_matches('/').to_owned()))
    }
}

impl HttpUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A `redis://`, `rediss://` or `unix://` URL. It may carry a password, so neither its
/// errors nor its `Debug` show it.
#[derive(Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct RedisUrl(String);

impl TryFrom<String> for RedisUrl {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        match Url::parse(&text) {
            Ok(url) if matches!(url.scheme(), "redis" | "rediss" | "unix") => Ok(RedisUrl(text)),
            _ => Err("give a redis://host:port/db, rediss:// or unix:// URL".into()),
        }
    }
}

impl RedisUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RedisUrl(..)")
    }
}

/// A whole number in `MIN..=MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "u64")]
pub struct Bounded<const MIN: u64, const MAX: u64>(pub u64);

impl<const MIN: u64, const MAX: u64> TryFrom<u64> for Bounded<MIN, MAX> {
    type Error = String;

    fn try_from(value: u64) -> Result<Self, String> {
        if (MIN..=MAX).contains(&value) {
            Ok(Bounded(value))
        } else {
            Err(format!("{value} is out of range: give {MIN} to {MAX}"))
        }
    }
}

impl<const MIN: u64, const MAX: u64> Bounded<MIN, MAX> {
    pub fn secs(self) -> Duration {
        Duration::from_secs(self.0)
    }

    pub fn get(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7000))
}

fn default_hold() -> Bounded<1, 300> {
    Bounded(25)
}

fn default_body() -> Bounded<1, { 64 * 1024 * 1024 }> {
    Bounded(1024 * 1024)
}

fn default_pending() -> Bounded<1, 10_000> {
    Bounded(64)
}

fn default_max_connections() -> Bounded<1, 65_536> {
    Bounded(256)
}

fn default_header_read_timeout() -> Bounded<1, 300> {
    Bounded(10)
}

fn default_body_read_timeout() -> Bounded<1, 3600> {
    Bounded(30)
}

fn default_upstream_timeout() -> Bounded<1, 600> {
    Bounded(30)
}

fn default_agent_name() -> String {
    "handsign gate".into()
}

/// Why a gate file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the gate file {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("the gate file {path} is invalid: {message}")]
    Invalid { path: String, message: String },
}

impl GateFile {
    /// Reads and checks the gate file at `path`; paths in it are made relative to its folder.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: shown.clone(),
            error,
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        Self::parse(&text, base).map_err(|message| ConfigError::Invalid {
            path: shown,
            message,
        })
    }

    /// Parses the file's `text`; relative paths in it are taken from `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Self, String> {
        let mut file: GateFile = toml::from_str(text).map_err(|e| e.to_string())?;
        file.check(text)?;
        file.handsign.agent_key = base.join(&file.handsign.agent_key);
        for (name, set) in &mut file.tools {
            set.check(name.as_str(), text)?;
        }
        for upstream in file.upstreams.values_mut() {
            if let Some(ca) = &mut upstream.ca_file {
                *ca = base.join(&*ca);
            }
            if let Some(CredentialSpec {
                source: CredentialSource::File(path),
                ..
            }) = &mut upstream.credential
            {
                *path = base.join(&*path);
            }
        }
        Ok(file)
    }

    /// The tool set `[tools.NAME]`, or an error listing the ones the file has.
    pub fn tool_set(&self, name: &str) -> Result<&ToolSet, String> {
        self.tools
            .iter()
            .find(|(set, _)| set.as_str() == name)
            .map(|(_, set)| set)
            .ok_or_else(|| {
                let names: Vec<&str> = self.tools.keys().map(ToolSetName::as_str).collect();
                format!(
                    "no [tools.{name}] section (tool sets in the file: {})",
                    if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names.join(", ")
                    }
                )
            })
    }

    /// The checks that span several values: something to gate, no upstream without routes,
    /// no route twice.
    fn check(&self, text: &str) -> Result<(), String> {
        if self.upstreams.is_empty() && self.tools.is_empty() {
            return Err(
                "no [upstreams.NAME] or [tools.NAME] section: the gate has nothing to gate".into(),
            );
        }
        if self.handsign.user.trim().is_empty() {
            return Err("handsign.user: give the user whose passkey approves calls".into());
        }
        for (name, upstream) in &self.upstreams {
            if upstream.routes.is_empty() {
                return Err(format!(
                    "upstreams.{name}: no routes; add [[upstreams.{name}.routes]] entries"
                ));
            }
            for (index, route) in upstream.routes.iter().enumerate() {
                let earlier = upstream.routes[..index]
                    .iter()
                    .find(|other| other.get_ref().route == route.get_ref().route);
                if let Some(earlier) = earlier {
                    return Err(format!(
                        "line {}: upstreams.{name}.routes: `{}` is listed twice (first at line {})",
                        line_of(text, route.span().start),
                        route.get_ref().route,
                        line_of(text, earlier.span().start),
                    ));
                }
                let spec = route.get_ref();
                if spec.need == Need::Approve && spec.action.is_none() {
                    return Err(format!(
                        "line {}: upstreams.{name}.routes: `{}` needs approval but has no \
                         action: add action = \"...\"",
                        line_of(text, route.span().start),
                        spec.route
                    ));
                }
                if spec.params.as_ref().is_some_and(|parts| parts.is_empty()) {
                    return Err(format!(
                        "line {}: upstreams.{name}.routes: `{}` has params = []: list at least \
                         one of {}",
                        line_of(text, route.span().start),
                        spec.route,
                        Part::NAMES
                    ));
                }
            }
        }
        Ok(())
    }

    /// The URL callers reach the gate at.
    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.as_str().to_owned(),
            None => format!("http://{}", self.listen),
        }
    }
}

/// The 1-based line and column (in characters) of byte `offset` in `text`.
pub(crate) fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or_default();
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let column = before.get(line_start..).unwrap_or_default().chars().count() + 1;
    (line_of(text, offset), column)
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(0, |before| before.bytes().filter(|&b| b == b'\n').count())
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
listen = "127.0.0.1:7000"

[handsign]
url = "https://handsign.example"
agent_key = "gate.jwk"
user = "alice"

[upstreams.payments]
base_url = "https://api.payments.example/"
audience = "https://api.payments.example"
credential = { header = "Authorization", value_env = "PAYMENTS_KEY", prefix = "Bearer " }

[[upstreams.payments.routes]]
route = "POST /v1/charges"
action = "payments.charge"
need = "approve"

[[upstreams.payments.routes]]
route = "GET /v1/charges/{id}"
need = "pass"
"#;

    fn error_of(text: &str) -> String {
        match GateFile::parse(text, Path::new("/etc/gate")) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(message) => message,
        }
    }

    #[test]
    fn a_good_file_is_read_with_paths_from_its_folder() {
        let file = GateFile::parse(GOOD, Path::new("/etc/gate")).unwrap();
        assert_eq!(file.handsign.agent_key, Path::new("/etc/gate/gate.jwk"));
        let payments = &file.upstreams[&UpstreamName("payments".into())];
        assert_eq!(payments.base_url.as_str(), "https://api.payments.example");
        assert_eq!(payments.routes.len(), 2);
        assert_eq!(file.hold_seconds, Bounded(25));
        assert_eq!(file.max_connections, Bounded(256));
        assert_eq!(file.header_read_timeout_seconds, Bounded(10));
        assert_eq!(file.body_read_timeout_seconds, Bounded(30));
        assert!(file.redis_url.is_none());
        let with_redis = format!("redis_url = \"redis://:pw@127.0.0.1:6379/0\"\n{GOOD}");
        let file = GateFile::parse(&with_redis, Path::new("/etc/handsign")).unwrap();
        assert_eq!(
            file.redis_url.as_ref().map(RedisUrl::as_str),
            Some("redis://:pw@127.0.0.1:6379/0")
        );
        let message = error_of(&format!("redis_url = \"http://:pw@host\"\n{GOOD}"));
        assert!(message.contains("redis_url"), "{message}");
    }

    #[test]
    fn errors_name_the_line_and_the_field() {
        let typo = GOOD.replace("need = \"approve\"", "need = \"aprove\"");
        let message = error_of(&typo);
        assert!(message.contains("line 17"), "{message}");
        assert!(message.contains("aprove"), "{message}");

        let unknown = GOOD.replace("listen =", "lisen =");
        let message = error_of(&unknown);
        assert!(
            message.contains("line 2") && message.contains("lisen"),
            "{message}"
        );

        let no_action = GOOD.replace("action = \"payments.charge\"\n", "");
        let message = error_of(&no_action);
        assert!(
            message.contains("line 14") && message.contains("action"),
            "{message}"
        );

        let twice = GOOD.replace("GET /v1/charges/{id}", "POST /v1/charges");
        let message = error_of(&twice);
        assert!(
            message.contains("listed twice (first at line 14)"),
            "{message}"
        );

        let both = GOOD.replace(
            "value_env = \"PAYMENTS_KEY\"",
            "value_env = \"PAYMENTS_KEY\", value_file = \"key\"",
        );
        let message = error_of(&both);
        assert!(
            message.contains("line 12") && message.contains("not both"),
            "{message}"
        );

        let route = GOOD.replace("POST /v1/charges", "POST v1/charges");
        let message = error_of(&route);
        assert!(
            message.contains("line 15") && message.contains("route"),
            "{message}"
        );

        let hold = GOOD.replace("listen =", "hold_seconds = 0\nlisten =");
        let message = error_of(&hold);
        assert!(
            message.contains("line 2") && message.contains("1 to 300"),
            "{message}"
        );
    }
}
