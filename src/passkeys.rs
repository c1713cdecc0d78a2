//! Passkey ceremonies with webauthn-rs: registration, login, and the approval ceremony whose
//! challenge is the statement digest.
//!
//! webauthn-rs chooses its own challenges and has no API for a chosen one. For approvals the
//! digest is written into both the options sent to the browser and the serialized ceremony state,
//! and read back to check that the substitution took; webauthn-rs then refuses any assertion
//! whose `clientDataJSON` names another challenge. This depends on the state's serde layout, so
//! webauthn-rs is pinned to an exact version and a test checks the substitution.

use handsign_protocol::base64url;
use webauthn_rs::prelude::{
    AuthenticationResult, CreationChallengeResponse, DiscoverableAuthentication, Passkey,
    PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential,
    RequestChallengeResponse, Url, Uuid, WebauthnError,
};
use webauthn_rs::{Webauthn, WebauthnBuilder};

use crate::config::PublicUrl;
use crate::domain::UserId;

/// Why a ceremony failed.
#[derive(Debug, thiserror::Error)]
pub enum CeremonyError {
    #[error("passkey check failed: {0}")]
    Webauthn(#[from] WebauthnError),
    #[error("the ceremony state could not be prepared: {0}")]
    State(String),
}

/// The relying party: the gateway's passkey configuration.
pub struct Passkeys {
    webauthn: Webauthn,
    rp_id: String,
    origin: String,
}

impl Passkeys {
    pub fn new(public: &PublicUrl) -> Result<Self, CeremonyError> {
        let origin = Url::parse(&public.origin).map_err(|e| CeremonyError::State(e.to_string()))?;
        let webauthn = WebauthnBuilder::new(&public.rp_id, &origin)?
            .rp_name("Handsign")
            .build()?;
        Ok(Passkeys {
            webauthn,
            rp_id: public.rp_id.clone(),
            origin: public.origin.clone(),
        })
    }

    pub fn rp_id(&self) -> &str {
        &self.rp_id
    }

    /// The origins assertions are accepted from (for receipts).
    pub fn origins(&self) -> Vec<String> {
        vec![self.origin.clone()]
    }

    /// Starts registering a passkey for `user`, excluding credentials already registered.
    pub fn start_registration(
        &self,
        user: &UserId,
        existing: &[Passkey],
    ) -> Result<(CreationChallengeResponse, PasskeyRegistration), CeremonyError> {
        let exclude = existing.iter().map(|p| p.cred_id().clone()).collect();
        let (mut options, state) = self.webauthn.start_passkey_registration(
            user_handle(user),
            user.as_str(),
            user.as_str(),
            Some(exclude),
        )?;
        // Ask for a discoverable credential where the authenticator can keep one, so that the
        // person logs in without typing a name. Preferred, not required: security keys that keep
        // no accounts still register (and log in by name).
        let fail = |e: serde_json::Error| CeremonyError::State(e.to_string());
        let mut value = serde_json::to_value(&options).map_err(fail)?;
        value["publicKey"]["authenticatorSelection"]["residentKey"] = "preferred".into();
        options = serde_json::from_value(value).map_err(fail)?;
        Ok((options, state))
    }

    pub fn finish_registration(
        &self,
        credential: &RegisterPublicKeyCredential,
        state: &PasskeyRegistration,
    ) -> Result<Passkey, CeremonyError> {
        Ok(self
            .webauthn
            .finish_passkey_registration(credential, state)?)
    }

    /// Starts a login with whichever discoverable passkey the person picks: no account is named.
    pub fn start_discoverable_login(
        &self,
    ) -> Result<(RequestChallengeResponse, DiscoverableAuthentication), CeremonyError> {
        Ok(self.webauthn.start_discoverable_authentication()?)
    }

    /// Finishes a discoverable login with `passkey`, the stored passkey the credential id names
    /// (the caller finds it; the user handle is not trusted).
    pub fn finish_discoverable_login(
        &self,
        credential: &PublicKeyCredential,
        state: DiscoverableAuthentication,
        passkey: &Passkey,
    ) -> Result<AuthenticationResult, CeremonyError> {
        // The `_v2` form takes a `Credential`, which webauthn-rs exports only with its
        // `danger-credential-internals` feature; this form takes the passkey as it is.
        #[allow(deprecated)]
        Ok(self.webauthn.finish_discoverable_authentication(
            credential,
            state,
            &[passkey.into()],
        )?)
    }

    /// Starts a login with one of `passkeys`.
    pub fn start_login(
        &self,
        passkeys: &[Passkey],
    ) -> Result<(RequestChallengeResponse, PasskeyAuthentication), CeremonyError> {
        Ok(self.webauthn.start_passkey_authentication(passkeys)?)
    }

    /// Starts an approval ceremony over `digest` (the statement digest) with one of `passkeys`
    /// (the addressed user's only): user verification required.
    pub fn start_approval(
        &self,
        passkeys: &[Passkey],
        digest: &[u8; 32],
    ) -> Result<(RequestChallengeResponse, PasskeyAuthentication), CeremonyError> {
        let (mut options, state) = self.webauthn.start_passkey_authentication(passkeys)?;
        options.public_key.challenge = digest.to_vec();
        let state = with_challenge(&state, digest)?;
        Ok((options, state))
    }

    /// Finishes a login or approval ceremony: origin, RP ID, user verification, signature and
    /// counter, for one of the credentials the ceremony allowed.
    pub fn finish_authentication(
        &self,
        credential: &PublicKeyCredential,
        state: &PasskeyAuthentication,
    ) -> Result<AuthenticationResult, CeremonyError> {
        Ok(self
            .webauthn
            .finish_passkey_authentication(credential, state)?)
    }
}

/// The WebAuthn user handle of `user`: stable, so that an authenticator replaces rather than
/// duplicates a user's discoverable credential, and derived from the name so it needs no storage.
/// Never trusted on the way back: users are found by credential id.
fn user_handle(user: &UserId) -> Uuid {
    use sha2::{Digest as _, Sha256};
    let digest = Sha256::digest(format!("handsign user handle\0{user}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
    Uuid::from_bytes(bytes)
}

/// `state` with its challenge replaced by `digest`, checked by reading it back.
fn with_challenge(
    state: &PasskeyAuthentication,
    digest: &[u8; 32],
) -> Result<PasskeyAuthentication, CeremonyError> {
    let fail = |what: &str| CeremonyError::State(format!("cannot set the challenge: {what}"));
    let encoded = base64url::encode(digest);
    let mut value = serde_json::to_value(state).map_err(|e| fail(&e.to_string()))?;
    let challenge = value
        .get_mut("ast")
        .and_then(|ast| ast.get_mut("challenge"))
        .ok_or_else(|| fail("the state has no ast.challenge"))?;
    *challenge = serde_json::Value::String(encoded.clone());
    let replaced: PasskeyAuthentication =
        serde_json::from_value(value).map_err(|e| fail(&e.to_string()))?;
    let read_back = serde_json::to_value(&replaced).map_err(|e| fail(&e.to_string()))?;
    if read_back["ast"]["challenge"] != serde_json::Value::String(encoded) {
        return Err(fail(
            "the substituted challenge did not survive a round trip",
        ));
    }
    Ok(replaced)
}

#[cfg(test)]
mod tests {
    use super::*;
    use url::Url as PlainUrl;

    #[test]
    fn approval_state_carries_the_digest() {
        let public = PublicUrl::parse(&PlainUrl::parse("http://localhost:8080").unwrap()).unwrap();
        let passkeys = Passkeys::new(&public).unwrap();
        let (_, state) = passkeys.start_login(&[]).unwrap();
        let digest = [0x42u8; 32];
        let replaced = with_challenge(&state, &digest).unwrap();
        let value = serde_json::to_value(&replaced).unwrap();
        assert_eq!(value["ast"]["challenge"], base64url::encode(digest));
        assert_ne!(
            serde_json::to_value(&state).unwrap()["ast"]["challenge"],
            value["ast"]["challenge"]
        );
    }
}
