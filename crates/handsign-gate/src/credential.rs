//! The upstream credential: read once at start from the gate's environment or a file, added to
//! forwarded calls only, never taken from a caller, never logged or echoed.

use std::fmt;

use http::{HeaderName, HeaderValue};

use crate::config::{CredentialSource, CredentialSpec};

/// A header and its secret value. `Debug` shows the header name only.
#[derive(Clone)]
pub struct Credential {
    header: HeaderName,
    value: HeaderValue,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("header", &self.header)
            .field("value", &"<redacted>")
            .finish()
    }
}

impl Credential {
    /// Reads the value `spec` names. The errors name the variable or file, never the value.
    pub fn load(spec: &CredentialSpec) -> Result<Self, String> {
        let secret = match &spec.source {
            CredentialSource::Env(var) => std::env::var(var).map_err(|_| {
                format!("the environment variable {var} (the upstream credential) is not set or not UTF-8")
            })?,
            CredentialSource::File(path) => std::fs::read_to_string(path)
                .map_err(|e| {
                    format!("cannot read the upstream credential file {}: {e}", path.display())
                })?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
        };
        if secret.is_empty() {
            return Err(format!(
                "the upstream credential for {} is empty",
                spec.header
            ));
        }
        let mut value =
            HeaderValue::from_str(&format!("{}{secret}", spec.prefix)).map_err(|_| {
                format!(
                    "the upstream credential for {} holds characters an HTTP header cannot",
                    spec.header
                )
            })?;
        value.set_sensitive(true);
        Ok(Credential {
            header: spec.header.clone(),
            value,
        })
    }

    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    pub(crate) fn value(&self) -> &HeaderValue {
        &self.value
    }
}
