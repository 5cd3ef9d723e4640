//! A blocking etcd v3 client: one lease kept alive in the background, keys bound to it, atomic
//! create-if-absent, prefix reads and deletes. The async runtime of the client crate lives
//! only in this module.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp,
    TxnOpResponse,
};

/// Errors of the etcd client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EtcdError {
    /// The server did not answer (unreachable, or not an etcd v3 server).
    #[error("etcd at {url} is unreachable: {message}")]
    Unreachable { url: String, message: String },
    /// A call the server answered with an error.
    #[error("etcd at {url}: {call} failed: {message}")]
    Call {
        url: String,
        call: &'static str,
        message: String,
    },
    /// The background runtime could not start.
    #[error("cannot start the etcd client's runtime: {0}")]
    Runtime(std::io::Error),
    /// The URL is not http://HOST:PORT.
    #[error("--etcd {0:?} is not an etcd URL (http://HOST:PORT)")]
    Url(String),
}

type Result<T> = std::result::Result<T, EtcdError>;

impl EtcdError {
    /// What went wrong, without the URL.
    pub fn reason(&self) -> String {
        match self {
            EtcdError::Unreachable { message, .. } => message.clone(),
            EtcdError::Call { call, message, .. } => format!("{call}: {message}"),
            e => e.to_string(),
        }
    }
}

/// A connection to one etcd server with this process's lease.
pub struct Etcd {
    url: String,
    rt: tokio::runtime::Runtime,
    client: Client,
    lease: i64,
    lease_lost: Arc<AtomicBool>,
}

/// The endpoint the client crate takes: `HOST:PORT` or `http://HOST:PORT`.
fn endpoint(url: &str) -> Result<String> {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') || url.starts_with("https://") {
        return Err(EtcdError::Url(url.to_string()));
    }
    Ok(format!("http://{rest}"))
}

/// The gRPC status's own message (e.g. "tcp connect error"), else the whole error.
fn short(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) if !s.message().is_empty() => {
            format!("{} ({:?})", s.message(), s.code())
        }
        e => e.to_string(),
    }
}

impl Etcd {
    /// Connects to `url`, grants a lease of `ttl` and keeps it alive until [`Etcd::close`] or
    /// drop; each call gives up after `timeout`.
    pub fn connect(url: &str, ttl: Duration, timeout: Duration) -> Result<Self> {
        let ep = endpoint(url)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("kvxfer-etcd")
            .enable_all()
            .build()
            .map_err(EtcdError::Runtime)?;
        let unreachable = |e: etcd_client::Error| EtcdError::Unreachable {
            url: url.to_string(),
            message: short(&e),
        };
        let opts = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_timeout(timeout);
        let mut client = rt
            .block_on(Client::connect([ep.as_str()], Some(opts)))
            .map_err(unreachable)?;
        let ttl_s = ttl.as_secs().max(1) as i64;
        let lease = rt
            .block_on(client.lease_grant(ttl_s, None))
            .map_err(unreachable)?
            .id();
        let lease_lost = Arc::new(AtomicBool::new(false));
        let (mut c, lost) = (client.clone(), lease_lost.clone());
        let period = Duration::from_millis((ttl_s as u64 * 1000 / 3).max(200));
        rt.spawn(async move {
            let Ok((mut keeper, mut stream)) = c.lease_keep_alive(lease).await else {
                lost.store(true, Ordering::Relaxed);
                return;
            };
            loop {
                let ok = keeper.keep_alive().await.is_ok()
                    && matches!(stream.message().await, Ok(Some(r)) if r.ttl() > 0);
                if !ok {
                    lost.store(true, Ordering::Relaxed);
                }
                tokio::time::sleep(period).await;
            }
        });
        Ok(Etcd {
            url: url.to_string(),
            rt,
            client,
            lease,
            lease_lost,
        })
    }

    /// The server's URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether a keep-alive of this process's lease failed (the server went away or the
    /// lease expired).
    pub fn lease_lost(&self) -> bool {
        self.lease_lost.load(Ordering::Relaxed)
    }

    fn call_err(&self, call: &'static str) -> impl FnOnce(etcd_client::Error) -> EtcdError + '_ {
        move |e| EtcdError::Call {
            url: self.url.clone(),
            call,
            message: short(&e),
        }
    }

    fn leased(&self, leased: bool) -> Option<PutOptions> {
        leased.then(|| PutOptions::new().with_lease(self.lease))
    }

    /// Writes `key`, bound to this process's lease when `leased` (it vanishes when the
    /// process does).
    pub fn put(&self, key: &str, value: &[u8], leased: bool) -> Result<()> {
        let mut c = self.client.clone();
        self.rt
            .block_on(c.put(key, value, self.leased(leased)))
            .map_err(self.call_err("put"))?;
        Ok(())
    }

    /// Writes `key` only if it does not exist, atomically; returns None when written, or the
    /// value that is there.
    pub fn create(&self, key: &str, value: &[u8], leased: bool) -> Result<Option<Vec<u8>>> {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value, self.leased(leased))])
            .or_else([TxnOp::get(key, None)]);
        let mut c = self.client.clone();
        let resp = self.rt.block_on(c.txn(txn)).map_err(self.call_err("txn"))?;
        if resp.succeeded() {
            return Ok(None);
        }
        let there = resp.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.value().to_vec()),
            _ => None,
        });
        // Deleted between the compare and the read: report it empty, the caller retries.
        Ok(Some(there.unwrap_or_default()))
    }

    /// The value of `key`, if it exists.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let mut c = self.client.clone();
        let resp = self
            .rt
            .block_on(c.get(key, None))
            .map_err(self.call_err("get"))?;
        Ok(resp.kvs().first().map(|kv| kv.value().to_vec()))
    }

    /// Every key under `prefix` with its value, in key order.
    pub fn get_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let mut c = self.client.clone();
        let resp = self
            .rt
            .block_on(c.get(prefix, Some(GetOptions::new().with_prefix())))
            .map_err(self.call_err("get"))?;
        Ok(resp
            .kvs()
            .iter()
            .map(|kv| {
                let k = String::from_utf8_lossy(kv.key()).into_owned();
                (k, kv.value().to_vec())
            })
            .collect())
    }

    /// Every key under `prefix` with the lease it is bound to (0: none), in key order. A key
    /// with a lease exists only while that lease lives.
    pub fn keys_with_leases(&self, prefix: &str) -> Result<Vec<(String, i64)>> {
        let mut c = self.client.clone();
        let opts = GetOptions::new().with_prefix().with_keys_only();
        let resp = self
            .rt
            .block_on(c.get(prefix, Some(opts)))
            .map_err(self.call_err("get"))?;
        Ok(resp
            .kvs()
            .iter()
            .map(|kv| (String::from_utf8_lossy(kv.key()).into_owned(), kv.lease()))
            .collect())
    }

    /// Deletes `key`; returns whether it was there.
    pub fn delete(&self, key: &str) -> Result<bool> {
        let mut c = self.client.clone();
        let resp = self
            .rt
            .block_on(c.delete(key, None))
            .map_err(self.call_err("delete"))?;
        Ok(resp.deleted() > 0)
    }

    /// Deletes every key under `prefix`; returns how many there were.
    pub fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        let mut c = self.client.clone();
        let resp = self
            .rt
            .block_on(c.delete(prefix, Some(DeleteOptions::new().with_prefix())))
            .map_err(self.call_err("delete"))?;
        Ok(resp.deleted() as u64)
    }

    /// Deletes `key` if its value is `value`, atomically.
    pub fn delete_if(&self, key: &str, value: &[u8]) -> Result<bool> {
        let txn = Txn::new()
            .when([Compare::value(key, CompareOp::Equal, value)])
            .and_then([TxnOp::delete(key, None)]);
        let mut c = self.client.clone();
        let resp = self.rt.block_on(c.txn(txn)).map_err(self.call_err("txn"))?;
        Ok(resp.succeeded())
    }

    /// Stops the client without revoking the lease (the server is out of reach): the lease
    /// expires after its time-to-live.
    pub fn abandon(self) {
        self.rt.shutdown_background();
    }

    /// Revokes this process's lease (its keys vanish) and stops the client.
    pub fn close(self) -> Result<()> {
        let mut c = self.client.clone();
        let r = self.rt.block_on(c.lease_revoke(self.lease));
        self.rt.shutdown_background();
        r.map(|_| ()).map_err(|e| EtcdError::Call {
            url: self.url.clone(),
            call: "lease revoke",
            message: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_accept_host_port_with_or_without_scheme() {
        assert_eq!(
            endpoint("http://10.0.0.1:2379").unwrap(),
            "http://10.0.0.1:2379"
        );
        assert_eq!(
            endpoint("127.0.0.1:2379/").unwrap(),
            "http://127.0.0.1:2379"
        );
        assert!(endpoint("https://h:2379").is_err());
        assert!(endpoint("http://h:2379/v3").is_err());
        assert!(endpoint("").is_err());
    }
}
