//! Where a gateway keeps its state, chosen once at start: the embedded store and secret files in
//! the data directory (one instance, nothing else installed), or Redis (any number of instances
//! sharing everything: records, change events, and the signing and VAPID keys).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use handsign_verify::ReplicaWait;

use crate::events::Events;
use crate::store::Store;
use crate::store::embedded::EmbeddedStore;
use crate::store::redis::{DEFAULT_PREFIX, RedisStore, RedisTarget};

/// The store, the change events, and where secrets are kept.
pub struct Storage {
    pub store: Arc<dyn Store>,
    pub events: Events,
    secrets: Secrets,
}

enum Secrets {
    DataDir(PathBuf),
    Redis(RedisStore),
}

impl Storage {
    /// Redis when `redis_url` is given, else the embedded store in `data_dir`.
    pub async fn open(data_dir: &Path, redis_url: Option<&str>) -> anyhow::Result<Self> {
        Self::open_waiting(data_dir, redis_url, ReplicaWait::NONE).await
    }

    /// Like [`open`](Self::open), with Redis's once-only writes waiting for replicas as
    /// `replicas` says.
    pub async fn open_waiting(
        data_dir: &Path,
        redis_url: Option<&str>,
        replicas: ReplicaWait,
    ) -> anyhow::Result<Self> {
        match redis_url {
            Some(urls) => {
                let target = RedisTarget::parse(urls).map_err(anyhow::Error::msg)?;
                Self::redis(&target, DEFAULT_PREFIX, replicas).await
            }
            None => Self::embedded(data_dir),
        }
    }

    /// Where the embedded store of `data_dir` is kept.
    pub fn embedded_file(data_dir: &Path) -> PathBuf {
        data_dir.join("handsign.redb")
    }

    /// The embedded store in `data_dir` (created owner-only if needed).
    pub fn embedded(data_dir: &Path) -> anyhow::Result<Self> {
        crate::secret_file::private_dir(data_dir)?;
        let store = EmbeddedStore::open(&Self::embedded_file(data_dir))?;
        Ok(Storage {
            store: Arc::new(store),
            events: Events::default(),
            secrets: Secrets::DataDir(data_dir.to_owned()),
        })
    }

    /// Redis at `target`, keys under `prefix`, once-only writes waiting as `replicas` says;
    /// fails when Redis cannot be reached or cannot do that wait.
    pub async fn redis(
        target: &RedisTarget,
        prefix: &str,
        replicas: ReplicaWait,
    ) -> anyhow::Result<Self> {
        let store = RedisStore::connect(target, prefix)
            .await?
            .wait_for_replicas(replicas)
            .await?;
        let events = crate::store::redis::shared_events(&store)
            .await
            .context("cannot subscribe to the gateway's events in Redis")?;
        Ok(Storage {
            store: Arc::new(store.clone()),
            events,
            secrets: Secrets::Redis(store),
        })
    }

    /// Whether several instances may share this state (Redis): then operator commands go to
    /// the store directly, not to one instance's local socket.
    pub fn is_shared(&self) -> bool {
        matches!(self.secrets, Secrets::Redis(_))
    }

    /// The secret `name`, read with `parse`; on first start `create` makes it (the value and
    /// its stored form). In the data directory it is an owner-only file; in Redis one key that
    /// the first instance to start creates and every other reads.
    pub async fn load_or_create_secret<T>(
        &self,
        name: &str,
        parse: impl Fn(&[u8]) -> anyhow::Result<T>,
        create: impl FnOnce() -> anyhow::Result<(T, Vec<u8>)>,
    ) -> anyhow::Result<T> {
        match &self.secrets {
            Secrets::DataDir(dir) => crate::secret_file::load_or_create(dir, name, parse, create),
            Secrets::Redis(store) => {
                let stored = store
                    .load_or_create_secret(name, || create().map(|(_, stored)| stored))
                    .await?;
                parse(&stored).with_context(|| format!("the secret {name} in Redis is not usable"))
            }
        }
    }
}
