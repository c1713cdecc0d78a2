//! The gateway's secrets on disk (token signing key, VAPID key): created on first start in the
//! data directory, readable by the owner only, never half written.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::Path;

use anyhow::Context as _;

/// Creates `dir` (and its parents) owner-only if it does not exist.
pub fn private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))
}

/// The secret in `dir/name`, read with `parse`; when there is none, `create` makes one (the value
/// and its file contents), which is written owner-only (0600) under a temporary name and linked
/// into place, so that a crash never leaves half a key and two processes starting at once agree
/// on one key.
pub fn load_or_create<T>(
    dir: &Path,
    name: &str,
    parse: impl Fn(&[u8]) -> anyhow::Result<T>,
    create: impl FnOnce() -> anyhow::Result<(T, Vec<u8>)>,
) -> anyhow::Result<T> {
    private_dir(dir)?;
    let path = dir.join(name);
    let read = |path: &Path| -> anyhow::Result<T> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        parse(&bytes).with_context(|| format!("{} holds no usable key", path.display()))
    };
    if path.exists() {
        return read(&path);
    }
    let (value, contents) = create()?;
    let suffix = handsign_protocol::base64url::encode(crate::domain::random_bytes::<9>()?);
    let tmp = dir.join(format!(".{name}.{suffix}.tmp"));
    let written = (|| -> anyhow::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        file.write_all(&contents)?;
        file.sync_all()?;
        Ok(())
    })();
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, &path).map_err(Into::into));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(value),
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::AlreadyExists) =>
        {
            read(&path)
        }
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn a_secret_is_created_owner_only_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let parse = |bytes: &[u8]| Ok(String::from_utf8(bytes.to_vec())?);
        let first =
            load_or_create(&data, "k", parse, || Ok(("one".into(), b"one".to_vec()))).unwrap();
        let again =
            load_or_create(&data, "k", parse, || Ok(("two".into(), b"two".to_vec()))).unwrap();
        assert_eq!((first.as_str(), again.as_str()), ("one", "one"));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data.join("k")), 0o600);
        assert_eq!(mode(&data), 0o700);
        assert_eq!(
            std::fs::read_dir(&data).unwrap().count(),
            1,
            "no temporary file left"
        );
    }
}
