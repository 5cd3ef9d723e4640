//! A thin blocking client over MLflow's tracking REST API (2.0) and its artifact proxy.

use std::time::Duration;

use serde_json::{json, Value};

use super::error::MlflowError;

mod types;
pub use types::{FileInfo, KeyValue, Metric, Run, RunData, RunInfo};

/// Largest answer body read, in bytes (artifact downloads included).
const MAX_BODY: u64 = 1 << 30;
/// Upper bound on runs/search pages read for one query.
const MAX_PAGES: usize = 1000;
/// Longest wait for a TCP connection to the server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for the server to start answering a request (a silent server ends here).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);
/// Per-request limit on metrics in runs/log-batch.
const BATCH_METRICS: usize = 1000;
/// Per-request limit on params in runs/log-batch.
const BATCH_PARAMS: usize = 100;
/// Per-request limit on tags in runs/log-batch.
const BATCH_TAGS: usize = 100;
/// Per-request limit on metrics, params and tags together in runs/log-batch.
const BATCH_ITEMS: usize = 1000;

/// How transient failures (refused or reset connections, timeouts, HTTP 5xx and 429) are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Requests tried in all, at least 1.
    pub attempts: u32,
    /// Wait before the first retry; doubled for each further retry.
    pub initial_backoff: Duration,
    /// Longest wait between two tries.
    pub max_backoff: Duration,
    /// Longest time one call may take, its tries and waits together.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            deadline: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0 for the first retry).
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(20)).unwrap_or(u32::MAX);
        self.initial_backoff
            .checked_mul(factor)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }
}

/// A connection to one MLflow tracking server.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    agent: ureq::Agent,
    retry: RetryPolicy,
}

/// One kind of request the client makes.
#[derive(Clone, Copy)]
enum Call<'a> {
    /// GET with query parameters.
    Get(&'a [(&'a str, &'a str)]),
    /// POST of a JSON body.
    PostJson(&'a Value),
    /// PUT of raw bytes.
    PutBytes(&'a [u8]),
}

/// Checks an http(s) URL as far as can be told without a connection: the scheme, no space or
/// control character, a host that is an IP address (v6 in brackets) or a host name, and a
/// port from 1 to 65535 when one is given.
fn check_uri(uri: &str) -> Result<(), String> {
    let rest = uri
        .strip_prefix("http://")
        .or_else(|| uri.strip_prefix("https://"))
        .ok_or("it does not start with http:// or https://")?;
    if let Some(c) = uri.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("it holds {c:?}"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // user:password@ may precede the host.
    let hostport = authority.rsplit('@').next().unwrap_or_default();
    let (host, port) = match hostport.strip_prefix('[') {
        Some(v6) => {
            let (ip, after) = v6.split_once(']').ok_or("an IPv6 host lacks its ']'")?;
            ip.parse::<std::net::Ipv6Addr>()
                .map_err(|_| format!("{ip:?} is not an IPv6 address"))?;
            match after {
                "" => ("", None),
                p => (
                    "",
                    Some(p.strip_prefix(':').ok_or("junk after the IPv6 host")?),
                ),
            }
        }
        None => match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        },
    };
    if hostport.is_empty() || (host.is_empty() && !hostport.starts_with('[')) {
        return Err("it names no host".into());
    }
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    let host_ok = host.len() <= 253 && host.split('.').all(label);
    if !host.is_empty() && !host_ok {
        return Err(format!("{host:?} is not a host name or IP address"));
    }
    if let Some(p) = port {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => {}
            _ => return Err(format!("port {p:?} is not from 1 to 65535")),
        }
    }
    Ok(())
}

impl Client {
    /// A client for the server at `uri` (`http://host:port`, an optional path prefix allowed).
    pub fn new(uri: &str, retry: RetryPolicy) -> Result<Client, MlflowError> {
        let base = uri.trim().trim_end_matches('/').to_string();
        check_uri(&base).map_err(|reason| MlflowError::BadUri {
            uri: uri.to_string(),
            reason,
        })?;
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_recv_response(Some(ANSWER_TIMEOUT))
            .build();
        Ok(Client {
            base,
            agent: config.new_agent(),
            retry: RetryPolicy {
                attempts: retry.attempts.max(1),
                ..retry
            },
        })
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The id of experiment `name`, or None when there is none (deleted ones included).
    pub fn experiment_id(&self, name: &str) -> Result<Option<String>, MlflowError> {
        let endpoint = "/api/2.0/mlflow/experiments/get-by-name";
        let answer = match self.get_json(endpoint, &[("experiment_name", name)]) {
            Ok(v) => v,
            Err(e) if e.api_code() == Some("RESOURCE_DOES_NOT_EXIST") => return Ok(None),
            Err(e) => return Err(e),
        };
        let exp = &answer["experiment"];
        if exp["lifecycle_stage"].as_str() == Some("deleted") {
            return Err(MlflowError::ExperimentDeleted {
                name: name.to_string(),
            });
        }
        str_field(exp, "experiment_id", endpoint).map(Some)
    }

    /// The id of experiment `name`, created when missing; safe against a concurrent creator.
    pub fn get_or_create_experiment(&self, name: &str) -> Result<String, MlflowError> {
        if let Some(id) = self.experiment_id(name)? {
            return Ok(id);
        }
        let endpoint = "/api/2.0/mlflow/experiments/create";
        match self.post_json(endpoint, &json!({ "name": name })) {
            Ok(v) => str_field(&v, "experiment_id", endpoint),
            Err(e) if e.api_code() == Some("RESOURCE_ALREADY_EXISTS") => self
                .experiment_id(name)?
                .ok_or_else(|| MlflowError::Decode {
                    endpoint: endpoint.into(),
                    message: format!("experiment {name:?} exists yet cannot be found"),
                }),
            Err(e) => Err(e),
        }
    }

    /// Creates a run in `experiment_id` with `tags` set from the start.
    pub fn create_run(
        &self,
        experiment_id: &str,
        run_name: &str,
        start_time_ms: i64,
        tags: &[KeyValue],
    ) -> Result<RunInfo, MlflowError> {
        let endpoint = "/api/2.0/mlflow/runs/create";
        let v = self.post_json(
            endpoint,
            &json!({ "experiment_id": experiment_id, "run_name": run_name,
                     "start_time": start_time_ms, "tags": tags }),
        )?;
        decode(endpoint, v["run"]["info"].clone())
    }

    /// Logs metrics, params and tags, split into requests within MLflow's per-request limits.
    pub fn log_batch(
        &self,
        run_id: &str,
        metrics: &[Metric],
        params: &[KeyValue],
        tags: &[KeyValue],
    ) -> Result<(), MlflowError> {
        let endpoint = "/api/2.0/mlflow/runs/log-batch";
        for body in batches(run_id, metrics, params, tags) {
            self.post_json(endpoint, &body)?;
        }
        Ok(())
    }

    /// Sets a run's status (`FINISHED`, `FAILED`, `KILLED`) and end time.
    pub fn update_run(
        &self,
        run_id: &str,
        status: &str,
        end_time_ms: i64,
    ) -> Result<(), MlflowError> {
        self.post_json(
            "/api/2.0/mlflow/runs/update",
            &json!({ "run_id": run_id, "status": status, "end_time": end_time_ms }),
        )
        .map(|_| ())
    }

    /// Deletes a run (MLflow marks it deleted; searches no longer return it).
    pub fn delete_run(&self, run_id: &str) -> Result<(), MlflowError> {
        self.post_json("/api/2.0/mlflow/runs/delete", &json!({ "run_id": run_id }))
            .map(|_| ())
    }

    /// Every active run of `experiment_ids` matching `filter` (MLflow search syntax), all pages.
    pub fn search_runs(
        &self,
        experiment_ids: &[String],
        filter: &str,
    ) -> Result<Vec<Run>, MlflowError> {
        self.search_runs_paged(experiment_ids, filter, 1000)
    }

    /// As [`Client::search_runs`], asking for at most `page_size` runs per request.
    pub fn search_runs_paged(
        &self,
        experiment_ids: &[String],
        filter: &str,
        page_size: u32,
    ) -> Result<Vec<Run>, MlflowError> {
        let endpoint = "/api/2.0/mlflow/runs/search";
        let mut runs = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut body = json!({ "experiment_ids": experiment_ids, "filter": filter,
                                   "max_results": page_size.max(1), "run_view_type": "ACTIVE_ONLY" });
            if let Some(t) = &token {
                body["page_token"] = Value::String(t.clone());
            }
            let v = self.post_json(endpoint, &body)?;
            let page: Vec<Run> = decode(endpoint, v.get("runs").cloned().unwrap_or(json!([])))?;
            runs.extend(page);
            match v["next_page_token"].as_str() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(runs),
            }
        }
        Err(MlflowError::TooManyPages { pages: MAX_PAGES })
    }

    /// Uploads `bytes` as artifact `path` of `run` through the server's artifact proxy.
    pub fn upload_artifact(
        &self,
        run: &RunInfo,
        path: &str,
        bytes: &[u8],
    ) -> Result<(), MlflowError> {
        let url = self.artifact_endpoint(run, path)?;
        self.request(&url, Call::PutBytes(bytes)).map(|_| ())
    }

    /// Downloads artifact `path` of `run` through the server's artifact proxy.
    pub fn download_artifact(&self, run: &RunInfo, path: &str) -> Result<Vec<u8>, MlflowError> {
        let url = self.artifact_endpoint(run, path)?;
        self.request(&url, Call::Get(&[]))
    }

    /// The artifacts of run `run_id` under `path` (its root when None), one level, all pages.
    pub fn list_artifacts(
        &self,
        run_id: &str,
        path: Option<&str>,
    ) -> Result<Vec<FileInfo>, MlflowError> {
        let endpoint = "/api/2.0/mlflow/artifacts/list";
        let mut files = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut query = vec![("run_id", run_id)];
            if let Some(p) = path {
                query.push(("path", p));
            }
            if let Some(t) = &token {
                query.push(("page_token", t.as_str()));
            }
            let v = self.get_json(endpoint, &query)?;
            let page: Vec<FileInfo> =
                decode(endpoint, v.get("files").cloned().unwrap_or(json!([])))?;
            files.extend(page);
            match v["next_page_token"].as_str() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(files),
            }
        }
        Err(MlflowError::TooManyPages { pages: MAX_PAGES })
    }

    /// `/api/2.0/mlflow-artifacts/artifacts/<exp>/<run>/artifacts/<path>` for a proxied run.
    fn artifact_endpoint(&self, run: &RunInfo, path: &str) -> Result<String, MlflowError> {
        let not_proxied = || MlflowError::ArtifactsNotProxied {
            artifact_uri: run.artifact_uri.clone(),
        };
        let rest = run
            .artifact_uri
            .strip_prefix("mlflow-artifacts:")
            .ok_or_else(not_proxied)?;
        // `mlflow-artifacts://host:port/path` names a server; the path is what counts here.
        let rest = match rest.strip_prefix("//") {
            Some(r) => r.find('/').map(|i| &r[i..]).ok_or_else(not_proxied)?,
            None => rest,
        };
        let root = rest.trim_matches('/');
        Ok(format!(
            "/api/2.0/mlflow-artifacts/artifacts/{}/{}",
            encode_path(root),
            encode_path(path.trim_matches('/'))
        ))
    }

    fn get_json(&self, endpoint: &str, query: &[(&str, &str)]) -> Result<Value, MlflowError> {
        let bytes = self.request(endpoint, Call::Get(query))?;
        parse(endpoint, &bytes)
    }

    fn post_json(&self, endpoint: &str, body: &Value) -> Result<Value, MlflowError> {
        let bytes = self.request(endpoint, Call::PostJson(body))?;
        parse(endpoint, &bytes)
    }

    /// One call with retries; returns the body of a 2xx answer.
    fn request(&self, endpoint: &str, call: Call<'_>) -> Result<Vec<u8>, MlflowError> {
        let url = format!("{}{}", self.base, endpoint);
        let mut last: Option<MlflowError> = None;
        let start = std::time::Instant::now();
        for attempt in 1..=self.retry.attempts {
            if attempt > 1 {
                let wait = self.retry.backoff(attempt - 2);
                if start.elapsed() + wait >= self.retry.deadline {
                    break;
                }
                std::thread::sleep(wait);
            }
            // Each try ends by the call's deadline, however the server trickles its answer.
            let left = self.retry.deadline.saturating_sub(start.elapsed());
            if left.is_zero() {
                break;
            }
            let within = Some(left.max(Duration::from_millis(1)));
            let sent = self.send(&url, call, within);
            let mut answer = match sent {
                Ok(a) => a,
                Err(e) => {
                    let transient = is_transient(&e);
                    last = Some(MlflowError::Unreachable {
                        base: self.base.clone(),
                        reason: e.to_string(),
                        attempts: attempt,
                    });
                    if transient {
                        continue;
                    }
                    break;
                }
            };
            let status = answer.status().as_u16();
            let body = match answer
                .body_mut()
                .with_config()
                .limit(MAX_BODY)
                .read_to_vec()
            {
                Ok(b) => b,
                Err(e) => {
                    last = Some(MlflowError::Unreachable {
                        base: self.base.clone(),
                        reason: format!("reading the answer to {endpoint}: {e}"),
                        attempts: attempt,
                    });
                    continue;
                }
            };
            if (200..300).contains(&status) {
                return Ok(body);
            }
            let err = api_error(endpoint, status, &body);
            if status == 429 || status >= 500 {
                last = Some(err);
                continue;
            }
            return Err(err);
        }
        Err(last.unwrap_or_else(|| MlflowError::Unreachable {
            base: self.base.clone(),
            reason: format!("no answer within {} s", self.retry.deadline.as_secs_f64()),
            attempts: 0,
        }))
    }

    /// One try of `call` at `url`, ending by `within`.
    fn send(
        &self,
        url: &str,
        call: Call<'_>,
        within: Option<Duration>,
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        match call {
            Call::Get(query) => self
                .agent
                .get(url)
                .config()
                .timeout_global(within)
                .build()
                .query_pairs(query.iter().copied())
                .call(),
            Call::PostJson(v) => self
                .agent
                .post(url)
                .config()
                .timeout_global(within)
                .build()
                .send_json(v),
            Call::PutBytes(b) => self
                .agent
                .put(url)
                .config()
                .timeout_global(within)
                .build()
                .content_type("application/octet-stream")
                .send(b),
        }
    }
}

/// Connection-level failures worth another try.
fn is_transient(e: &ureq::Error) -> bool {
    matches!(
        e,
        ureq::Error::Io(_) | ureq::Error::Timeout(_) | ureq::Error::ConnectionFailed
    )
}

fn api_error(endpoint: &str, status: u16, body: &[u8]) -> MlflowError {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let code = v["error_code"].as_str().unwrap_or_default().to_string();
    let message = match v["message"].as_str() {
        Some(m) => m.to_string(),
        None => String::from_utf8_lossy(&body[..body.len().min(300)])
            .trim()
            .to_string(),
    };
    // Keep one line: MLflow messages can carry SQL and tracebacks.
    let message = message.lines().next().unwrap_or_default().to_string();
    MlflowError::Api {
        endpoint: endpoint.to_string(),
        status,
        code,
        message,
    }
}

fn parse(endpoint: &str, bytes: &[u8]) -> Result<Value, MlflowError> {
    if bytes.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(bytes).map_err(|e| MlflowError::Decode {
        endpoint: endpoint.to_string(),
        message: e.to_string(),
    })
}

fn decode<T: serde::de::DeserializeOwned>(endpoint: &str, v: Value) -> Result<T, MlflowError> {
    serde_json::from_value(v).map_err(|e| MlflowError::Decode {
        endpoint: endpoint.to_string(),
        message: e.to_string(),
    })
}

fn str_field(v: &Value, key: &str, endpoint: &str) -> Result<String, MlflowError> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| MlflowError::Decode {
            endpoint: endpoint.to_string(),
            message: format!("no {key:?} in the answer"),
        })
}

/// Percent-encodes a path, keeping `/` and RFC 3986 unreserved characters.
fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The log-batch request bodies for one run: each within the per-kind limits and within
/// MLflow's limit of 1000 items (metrics, params and tags together) per request.
fn batches(run_id: &str, metrics: &[Metric], params: &[KeyValue], tags: &[KeyValue]) -> Vec<Value> {
    let mut out = Vec::new();
    let (mut m, mut p, mut t) = (metrics, params, tags);
    while !(m.is_empty() && p.is_empty() && t.is_empty()) {
        let (th, tr) = t.split_at(t.len().min(BATCH_TAGS));
        let (ph, pr) = p.split_at(p.len().min(BATCH_PARAMS));
        let room = BATCH_ITEMS - th.len() - ph.len();
        let (mh, mr) = m.split_at(m.len().min(BATCH_METRICS).min(room));
        out.push(json!({ "run_id": run_id, "metrics": mh, "params": ph, "tags": th }));
        (m, p, t) = (mr, pr, tr);
    }
    out
}

#[cfg(test)]
mod tests;
