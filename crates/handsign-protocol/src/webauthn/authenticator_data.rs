//! The fixed 37-byte head of `authenticatorData` (WebAuthn Level 3, section 6.1): the RP ID hash,
//! the flags and the signature counter.

use std::fmt;

/// The flags byte of `authenticatorData`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AuthenticatorFlags(u8);

impl AuthenticatorFlags {
    /// UP: a person was present (touched the key, or equivalent).
    pub const USER_PRESENT: u8 = 0x01;
    /// UV: the authenticator verified the person (PIN, biometric).
    pub const USER_VERIFIED: u8 = 0x04;
    /// BE: the credential may be backed up (synced passkey).
    pub const BACKUP_ELIGIBLE: u8 = 0x08;
    /// BS: the credential is currently backed up.
    pub const BACKED_UP: u8 = 0x10;
    /// AT: attested credential data follows (registration only).
    pub const ATTESTED_CREDENTIAL_DATA: u8 = 0x40;
    /// ED: extension data follows.
    pub const EXTENSION_DATA: u8 = 0x80;

    /// Wraps a flags byte as it appears in `authenticatorData`.
    pub const fn from_bits(bits: u8) -> Self {
        Self(bits)
    }

    /// The flags byte.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// UP.
    pub const fn user_present(self) -> bool {
        self.0 & Self::USER_PRESENT != 0
    }

    /// UV.
    pub const fn user_verified(self) -> bool {
        self.0 & Self::USER_VERIFIED != 0
    }

    /// BE.
    pub const fn backup_eligible(self) -> bool {
        self.0 & Self::BACKUP_ELIGIBLE != 0
    }

    /// BS.
    pub const fn backed_up(self) -> bool {
        self.0 & Self::BACKED_UP != 0
    }

    /// AT.
    pub const fn attested_credential_data(self) -> bool {
        self.0 & Self::ATTESTED_CREDENTIAL_DATA != 0
    }

    /// ED.
    pub const fn extension_data(self) -> bool {
        self.0 & Self::EXTENSION_DATA != 0
    }
}

impl fmt::Debug for AuthenticatorFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (Self::USER_PRESENT, "UP"),
            (Self::USER_VERIFIED, "UV"),
            (Self::BACKUP_ELIGIBLE, "BE"),
            (Self::BACKED_UP, "BS"),
            (Self::ATTESTED_CREDENTIAL_DATA, "AT"),
            (Self::EXTENSION_DATA, "ED"),
        ];
        write!(f, "AuthenticatorFlags({:#04x}", self.0)?;
        for (bit, name) in names {
            if self.0 & bit != 0 {
                write!(f, " {name}")?;
            }
        }
        write!(f, ")")
    }
}

/// The fixed head of `authenticatorData` (rpIdHash 32, flags 1, signCount 4 bytes), and what
/// follows it.
pub(crate) struct AuthenticatorDataHead<'a> {
    pub(crate) rp_id_hash: [u8; 32],
    pub(crate) flags: AuthenticatorFlags,
    pub(crate) sign_count: u32,
    /// Attested credential data and extensions, if any.
    pub(crate) rest: &'a [u8],
}

impl<'a> AuthenticatorDataHead<'a> {
    /// Splits the head off; `None` when fewer than 37 bytes.
    pub(crate) fn parse(bytes: &'a [u8]) -> Option<Self> {
        let (rp_id_hash, rest) = bytes.split_first_chunk::<32>()?;
        let (&flags, rest) = rest.split_first()?;
        let (sign_count, rest) = rest.split_first_chunk::<4>()?;
        Some(Self {
            rp_id_hash: *rp_id_hash,
            flags: AuthenticatorFlags(flags),
            sign_count: u32::from_be_bytes(*sign_count),
            rest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_is_split_at_37_bytes() {
        let mut bytes = vec![7u8; 32];
        bytes.push(0x45);
        bytes.extend_from_slice(&[0, 0, 1, 2]);
        bytes.push(0xaa);
        let head = AuthenticatorDataHead::parse(&bytes).unwrap();
        assert_eq!(head.rp_id_hash, [7u8; 32]);
        assert!(head.flags.user_present() && head.flags.user_verified());
        assert!(head.flags.attested_credential_data() && !head.flags.extension_data());
        assert_eq!(head.sign_count, 258);
        assert_eq!(head.rest, &[0xaa]);
        assert!(AuthenticatorDataHead::parse(&bytes[..37 - 1]).is_none());
        assert!(
            AuthenticatorDataHead::parse(&bytes[..37])
                .unwrap()
                .rest
                .is_empty()
        );
    }

    #[test]
    fn flags_debug_names_the_bits() {
        assert_eq!(
            format!("{:?}", AuthenticatorFlags::from_bits(0x1d)),
            "AuthenticatorFlags(0x1d UP UV BE BS)"
        );
    }
}
