//! Deploys shared by a cluster: what one host accepted (a handler, a descriptor, a removal) is stored in a JetStream
//! object store on the broker, and every host applies what it finds there: all of it before it serves (a host that
//! joins later, or was down during a deploy, catches up), then each change as it comes.

use std::collections::HashMap;

use anyhow::Context as _;
use futures_util::StreamExt;
use tokio::io::AsyncReadExt as _;
use tokio::sync::mpsc;

/// One deploy as the cluster shares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shared {
    /// A handler's component.
    Handler {
        /// `project/name`.
        name: String,
        /// The component's bytes.
        bytes: Vec<u8>,
    },
    /// A descriptor.
    Descriptor {
        /// The endpoint it declares.
        endpoint: String,
        /// Its JSON text.
        text: String,
    },
    /// A handler was removed.
    HandlerRemoved {
        /// `project/name`.
        name: String,
    },
    /// An endpoint was removed.
    EndpointRemoved {
        /// Its name.
        endpoint: String,
    },
}

impl Shared {
    /// What it is about, for logs: `handler NAME` or `endpoint NAME`.
    pub fn describe(&self) -> String {
        match self {
            Shared::Handler { name, .. } | Shared::HandlerRemoved { name } => format!("handler {name}"),
            Shared::Descriptor { endpoint, .. } | Shared::EndpointRemoved { endpoint } => {
                format!("endpoint {endpoint}")
            }
        }
    }

    /// The object it is stored as: `h.<hex name>` or `e.<hex endpoint>` (object names allow few characters).
    fn object(&self) -> String {
        match self {
            Shared::Handler { name, .. } | Shared::HandlerRemoved { name } => format!("h.{}", hex(name)),
            Shared::Descriptor { endpoint, .. } | Shared::EndpointRemoved { endpoint } => {
                format!("e.{}", hex(endpoint))
            }
        }
    }
}

/// The cluster's store of deploys.
#[derive(Clone)]
pub struct Deploys {
    store: async_nats::jetstream::object_store::ObjectStore,
}

impl std::fmt::Debug for Deploys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deploys").finish_non_exhaustive()
    }
}

impl Deploys {
    /// Opens the cluster's bucket (`wasmsock-<cluster>-deploys`), creating it when no host has yet. Fails when the
    /// broker has no JetStream (start `nats-server -js`).
    pub async fn open(client: async_nats::Client, cluster: &str) -> anyhow::Result<Self> {
        let jetstream = async_nats::jetstream::new(client);
        let bucket = format!("wasmsock-{cluster}-deploys");
        let store = match jetstream.get_object_store(&bucket).await {
            Ok(store) => store,
            Err(_) => {
                let config = async_nats::jetstream::object_store::Config {
                    bucket: bucket.clone(),
                    description: Some(format!("the handlers and descriptors of wasmsock cluster {cluster}")),
                    ..Default::default()
                };
                match jetstream.create_object_store(config).await {
                    Ok(store) => store,
                    // Another host created it at the same moment.
                    Err(created) => {
                        jetstream.get_object_store(&bucket).await.map_err(|_| created).with_context(|| {
                            format!("opening the object store {bucket} on the broker (does it run with -js?)")
                        })?
                    }
                }
            }
        };
        Ok(Self { store })
    }

    /// Stores a deploy this host accepted, for every host of the cluster.
    pub async fn share(&self, change: &Shared) -> anyhow::Result<()> {
        let object = change.object();
        match change {
            Shared::Handler { bytes, .. } => {
                self.store.put(object.as_str(), &mut bytes.as_slice()).await?;
            }
            Shared::Descriptor { text, .. } => {
                self.store.put(object.as_str(), &mut text.as_bytes()).await?;
            }
            Shared::HandlerRemoved { .. } | Shared::EndpointRemoved { .. } => {
                self.store.delete(object.as_str()).await?;
            }
        }
        Ok(())
    }

    /// Every deploy in the store now, handlers first (a descriptor needs its handler), then follows the store: each
    /// later change goes to `changes` until the broker connection ends.
    pub async fn catch_up_and_follow(&self, changes: mpsc::UnboundedSender<Shared>) -> anyhow::Result<Vec<Shared>> {
        // Watch first, then list: a change made in between comes twice (applying it again changes nothing), never
        // not at all.
        let mut watch = self.store.watch().await.context("watching the cluster's deploys")?;
        let mut list = self.store.list().await.context("listing the cluster's deploys")?;
        let mut names = Vec::new();
        while let Some(info) = list.next().await {
            let info = info.context("listing the cluster's deploys")?;
            if !info.deleted {
                names.push(info.name);
            }
        }
        let mut now = Vec::new();
        for name in names {
            if let Some(change) = self.fetch(&name).await? {
                now.push(change);
            }
        }
        now.sort_by_key(|change| matches!(change, Shared::Descriptor { .. }));
        let store = self.clone();
        tokio::spawn(async move {
            // The object's last seen content, so the echo of a change this host made is recognised.
            let mut seen: HashMap<String, String> = HashMap::new();
            while let Some(info) = watch.next().await {
                let Ok(info) = info else { continue };
                let change = if info.deleted {
                    seen.remove(&info.name);
                    removal(&info.name)
                } else {
                    if info.digest.is_some() && seen.get(&info.name) == info.digest.as_ref() {
                        continue;
                    }
                    if let Some(digest) = &info.digest {
                        seen.insert(info.name.clone(), digest.clone());
                    }
                    match store.fetch(&info.name).await {
                        Ok(change) => change,
                        Err(err) => {
                            tracing::warn!("cannot read {} from the cluster's deploys: {err:#}", info.name);
                            None
                        }
                    }
                };
                if let Some(change) = change
                    && changes.send(change).is_err()
                {
                    return;
                }
            }
        });
        Ok(now)
    }

    async fn fetch(&self, object: &str) -> anyhow::Result<Option<Shared>> {
        let mut reader = self.store.get(object).await.with_context(|| format!("reading {object}"))?;
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).await.with_context(|| format!("reading {object}"))?;
        Ok(match object.split_once('.') {
            Some(("h", name)) => wasmsock_wire::cluster::unhex(name).map(|name| Shared::Handler { name, bytes }),
            Some(("e", endpoint)) => wasmsock_wire::cluster::unhex(endpoint)
                .and_then(|endpoint| String::from_utf8(bytes).ok().map(|text| Shared::Descriptor { endpoint, text })),
            _ => None,
        })
    }
}

fn removal(object: &str) -> Option<Shared> {
    match object.split_once('.') {
        Some(("h", name)) => wasmsock_wire::cluster::unhex(name).map(|name| Shared::HandlerRemoved { name }),
        Some(("e", endpoint)) => {
            wasmsock_wire::cluster::unhex(endpoint).map(|endpoint| Shared::EndpointRemoved { endpoint })
        }
        _ => None,
    }
}

fn hex(text: &str) -> String {
    wasmsock_wire::cluster::hex(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_name_what_they_hold_and_come_back_as_removals() {
        let handler = Shared::Handler { name: "examples/chat".into(), bytes: vec![] };
        assert_eq!(handler.object(), "h.6578616d706c65732f63686174");
        assert_eq!(removal(&handler.object()), Some(Shared::HandlerRemoved { name: "examples/chat".into() }));
        let endpoint = Shared::EndpointRemoved { endpoint: "chat".into() };
        assert_eq!(removal(&endpoint.object()), Some(endpoint.clone()));
        assert_eq!(endpoint.describe(), "endpoint chat");
        assert_eq!(removal("x.00"), None);
    }
}
