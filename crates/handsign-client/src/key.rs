//! The agent's key: an Ed25519 key pair whose RFC 7638 thumbprint is the agent's id.
//!
//! The private key is the agent's only credential: whoever holds it can ask in the agent's name
//! and, with a token, act in its name. So the key file is created owner-only (0600) and
//! atomically (no reader ever sees half a key, and an existing key is never overwritten, since
//! that would silently change the agent's id), and a key file that group or others may read is
//! refused rather than used: a key that may have leaked must be replaced, not trusted.

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

use handsign_protocol::keys::{Jwk, SigningKey};

/// An agent's Ed25519 key. Its `Debug` shows the agent id only, never the private key.
#[derive(Clone)]
pub struct AgentKey {
    key: SigningKey,
}

/// Why a key file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot {action} key file {}: {error}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        /// Part of the message rather than a `source`, so the reason is printed once.
        error: io::Error,
    },
    #[error(
        "key file {} already exists; refusing to overwrite it (the agent's id would change)",
        path.display()
    )]
    Exists { path: PathBuf },
    #[error(
        "key file {} is accessible to group or others (mode {mode:04o}); the key may have leaked: \
         make a new key, or if you are sure nobody read it, run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("key file {} does not hold a private Ed25519 JWK: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error("no randomness available from the operating system: {0}")]
    Randomness(String),
}

impl KeyFileError {
    fn io(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Self {
        let path = path.to_owned();
        move |error| KeyFileError::Io {
            action,
            path,
            error,
        }
    }

    /// Whether the file was not there at all (as opposed to there but unusable).
    fn is_not_found(&self) -> bool {
        matches!(self, KeyFileError::Io { error, .. } if error.kind() == io::ErrorKind::NotFound)
    }
}

impl AgentKey {
    /// A new key from the operating system's random number generator.
    pub fn generate() -> Result<Self, KeyFileError> {
        SigningKey::generate()
            .map(Self::from_signing_key)
            .map_err(|e| KeyFileError::Randomness(e.to_string()))
    }

    /// Wraps a key held elsewhere (for example in a secret store).
    pub fn from_signing_key(key: SigningKey) -> Self {
        AgentKey { key }
    }

    /// The agent id: the RFC 7638 thumbprint of the public key, as the gateway names the agent.
    pub fn id(&self) -> &str {
        self.key.kid()
    }

    /// The public JWK (`kty`, `crv`, `x`), what `handsign agent add --key` takes.
    pub fn public_jwk(&self) -> Jwk {
        self.key.public_key().to_jwk()
    }

    /// The underlying key, for signing DPoP proofs.
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// Reads the private JWK at `path`, refusing a file that group or others may access.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, KeyFileError> {
        let path = path.as_ref();
        let mut file = File::open(path).map_err(KeyFileError::io("open", path))?;
        let metadata = file.metadata().map_err(KeyFileError::io("inspect", path))?;
        if !metadata.is_file() {
            return Err(KeyFileError::Invalid {
                path: path.to_owned(),
                reason: "not a regular file".into(),
            });
        }
        check_owner_only(path, &metadata)?;
        let mut text = String::new();
        file.read_to_string(&mut text)
            .map_err(KeyFileError::io("read", path))?;
        let invalid = |reason: String| KeyFileError::Invalid {
            path: path.to_owned(),
            reason,
        };
        let jwk: Jwk = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        let key = SigningKey::from_jwk(&jwk).map_err(|e| invalid(e.to_string()))?;
        Ok(AgentKey { key })
    }

    /// Makes a new key and writes it to `path` (owner-only, atomically); refuses if `path`
    /// exists.
    pub fn create(path: impl AsRef<Path>) -> Result<Self, KeyFileError> {
        let key = Self::generate()?;
        key.save_new(path)?;
        Ok(key)
    }

    /// Reads the key at `path`, or makes one there when there is no file yet. Two processes
    /// racing to create it end up with the same key.
    pub fn load_or_create(path: impl AsRef<Path>) -> Result<Self, KeyFileError> {
        let path = path.as_ref();
        match Self::load(path) {
            Err(e) if e.is_not_found() => match Self::create(path) {
                Err(KeyFileError::Exists { .. }) => Self::load(path),
                created => created,
            },
            loaded => loaded,
        }
    }

    /// Writes this key as a private JWK to `path`, which must not exist yet. The file is
    /// written under a temporary name, flushed, then linked into place, which fails rather than
    /// replace an existing file.
    pub fn save_new(&self, path: impl AsRef<Path>) -> Result<(), KeyFileError> {
        let path = path.as_ref();
        let mut text = serde_json::to_string_pretty(&self.key.to_private_jwk()).map_err(|e| {
            KeyFileError::Invalid {
                path: path.to_owned(),
                reason: e.to_string(),
            }
        })?;
        text.push('\n');
        let temporary = temporary_path(path)?;
        let written = write_owner_only(&temporary, text.as_bytes());
        let linked = written.and_then(|()| {
            std::fs::hard_link(&temporary, path).map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    KeyFileError::Exists {
                        path: path.to_owned(),
                    }
                } else {
                    KeyFileError::Io {
                        action: "create",
                        path: path.to_owned(),
                        error: e,
                    }
                }
            })
        });
        // The temporary name goes whatever happened; the key lives on under `path` if linked.
        let _ = std::fs::remove_file(&temporary);
        linked?;
        sync_directory(path);
        Ok(())
    }
}

impl std::fmt::Debug for AgentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AgentKey({})", self.id())
    }
}

/// A fresh name next to `path`, so that linking it into place stays on one file system.
fn temporary_path(path: &Path) -> Result<PathBuf, KeyFileError> {
    let name = path.file_name().ok_or_else(|| KeyFileError::Invalid {
        path: path.to_owned(),
        reason: "the path names no file".into(),
    })?;
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).map_err(|e| KeyFileError::Randomness(e.to_string()))?;
    let suffix = handsign_protocol::base64url::encode(random);
    Ok(path.with_file_name(format!(".{}.{suffix}.tmp", name.to_string_lossy())))
}

fn write_owner_only(path: &Path, contents: &[u8]) -> Result<(), KeyFileError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(KeyFileError::io("create", path))?;
    file.write_all(contents)
        .map_err(KeyFileError::io("write", path))?;
    file.sync_all().map_err(KeyFileError::io("write", path))
}

/// Makes the new directory entry durable; a failure here loses nothing already written, so it
/// is not reported.
fn sync_directory(path: &Path) {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if let Ok(directory) = File::open(directory) {
        let _ = directory.sync_all();
    }
}

#[cfg(unix)]
fn check_owner_only(path: &Path, metadata: &std::fs::Metadata) -> Result<(), KeyFileError> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_owner_only(_path: &Path, _metadata: &std::fs::Metadata) -> Result<(), KeyFileError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn load_or_create_writes_owner_only_and_reloads_the_same_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.jwk");
        let created = AgentKey::load_or_create(&path).unwrap();
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
        let loaded = AgentKey::load_or_create(&path).unwrap();
        assert_eq!(loaded.id(), created.id());
        assert_eq!(AgentKey::load(&path).unwrap().id(), created.id());
        // Only the key file is left: the temporary name is gone.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn create_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.jwk");
        let first = AgentKey::create(&path).unwrap();
        assert!(matches!(
            AgentKey::create(&path),
            Err(KeyFileError::Exists { .. })
        ));
        assert_eq!(AgentKey::load(&path).unwrap().id(), first.id());
    }

    #[cfg(unix)]
    #[test]
    fn a_key_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.jwk");
        AgentKey::create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = AgentKey::load_or_create(&path).unwrap_err();
        assert!(
            matches!(error, KeyFileError::Permissions { mode: 0o644, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("chmod 600"), "{error}");
    }

    #[test]
    fn a_file_that_is_not_a_private_jwk_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.jwk");
        let public = serde_json::to_string(&AgentKey::generate().unwrap().public_jwk()).unwrap();
        write_owner_only(&path, public.as_bytes()).unwrap();
        let error = AgentKey::load(&path).unwrap_err();
        assert!(matches!(error, KeyFileError::Invalid { .. }), "{error}");
    }

    #[test]
    fn id_is_the_thumbprint_of_the_public_jwk() {
        let key = AgentKey::generate().unwrap();
        assert_eq!(
            handsign_protocol::keys::thumbprint(&key.public_jwk()).unwrap(),
            key.id()
        );
        assert!(key.public_jwk().d.is_none());
        assert!(
            !format!("{key:?}").contains(key.signing_key().to_private_jwk().d.unwrap().as_str())
        );
    }
}
