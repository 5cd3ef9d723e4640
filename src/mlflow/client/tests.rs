//! Unit tests of the MLflow client's pure parts.

use super::*;

fn kv(n: usize, prefix: &str) -> Vec<KeyValue> {
    (0..n)
        .map(|i| KeyValue {
            key: format!("{prefix}{i}"),
            value: i.to_string(),
        })
        .collect()
}

#[test]
fn batches_respect_limits_and_keep_everything() {
    let metrics: Vec<Metric> = (0..2500)
        .map(|i| Metric {
            key: format!("m{i}"),
            value: i as f64,
            timestamp: 1,
            step: 0,
        })
        .collect();
    let b = batches("r", &metrics, &kv(250, "p"), &kv(30, "t"));
    assert_eq!(b.len(), 3);
    let count = |k: &str| {
        b.iter()
            .map(|x| x[k].as_array().unwrap().len())
            .collect::<Vec<_>>()
    };
    assert_eq!(count("metrics"), [870, 900, 730]);
    assert_eq!(count("params"), [100, 100, 50]);
    assert_eq!(count("tags"), [30, 0, 0]);
    assert_eq!(b[2]["metrics"][729]["key"], "m2499");
    assert_eq!(b[1]["metrics"][0]["key"], "m870");
    assert!(b.iter().all(|x| x["run_id"] == "r"));
    assert_eq!(b[1]["params"][0]["key"], "p100");
    assert!(batches("r", &[], &[], &[]).is_empty());
}

#[test]
fn backoff_doubles_and_is_capped() {
    let r = RetryPolicy {
        attempts: 10,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(700),
        ..RetryPolicy::default()
    };
    let waits: Vec<u128> = (0..5).map(|i| r.backoff(i).as_millis()).collect();
    assert_eq!(waits, [100, 200, 400, 700, 700]);
    assert_eq!(r.backoff(u32::MAX), Duration::from_millis(700));
}

#[test]
fn uris_are_checked() {
    assert!(Client::new("http://127.0.0.1:5000/", RetryPolicy::default()).is_ok());
    assert_eq!(
        Client::new("https://mlflow.example/prefix/", RetryPolicy::default())
            .unwrap()
            .base(),
        "https://mlflow.example/prefix"
    );
    for good in [
        "http://[::1]:5000",
        "https://user:pw@mlflow.example:443/prefix?x=1",
        "http://mlflow_server",
    ] {
        assert!(Client::new(good, RetryPolicy::default()).is_ok(), "{good}");
    }
    for bad in [
        "",
        "127.0.0.1:5000",
        "ftp://x",
        "http://",
        "http:///x",
        "http://127.0.0.1:99999",
        "http://127.0.0.1:0",
        "http://127.0.0.1:",
        "http://exa mple.com",
        "http://exa\tmple.com",
        "http://-bad.example",
        "http://a..b",
        "http://[::1",
        "http://[zz]:80",
        "http://host:port",
    ] {
        assert!(
            matches!(
                Client::new(bad, RetryPolicy::default()),
                Err(MlflowError::BadUri { .. })
            ),
            "{bad:?} accepted"
        );
    }
}

#[test]
fn artifact_endpoints_follow_the_run_root() {
    let c = Client::new("http://h:1", RetryPolicy::default()).unwrap();
    let mut run = RunInfo {
        run_id: "abc".into(),
        experiment_id: "3".into(),
        run_name: String::new(),
        status: "RUNNING".into(),
        artifact_uri: "mlflow-artifacts:/3/abc/artifacts".into(),
        start_time: None,
        end_time: None,
    };
    assert_eq!(
        c.artifact_endpoint(&run, "histogram 64.hdr").unwrap(),
        "/api/2.0/mlflow-artifacts/artifacts/3/abc/artifacts/histogram%2064.hdr"
    );
    run.artifact_uri = "mlflow-artifacts://other:5000/3/abc/artifacts".into();
    assert_eq!(
        c.artifact_endpoint(&run, "r.json").unwrap(),
        "/api/2.0/mlflow-artifacts/artifacts/3/abc/artifacts/r.json"
    );
    run.artifact_uri = "s3://bucket/3/abc/artifacts".into();
    assert!(matches!(
        c.artifact_endpoint(&run, "r.json"),
        Err(MlflowError::ArtifactsNotProxied { .. })
    ));
}

#[test]
fn metric_values_may_be_strings() {
    let m: Metric =
        serde_json::from_str(r#"{"key":"x","value":"NaN","timestamp":1,"step":0}"#).unwrap();
    assert!(m.value.is_nan());
    let m: Metric = serde_json::from_str(r#"{"key":"x","value":2.5}"#).unwrap();
    assert_eq!(m.value, 2.5);
    assert!(serde_json::from_str::<Metric>(r#"{"key":"x","value":true}"#).is_err());
}

#[test]
fn api_errors_keep_code_and_first_line() {
    let e = api_error(
        "/x",
        400,
        br#"{"error_code":"RESOURCE_ALREADY_EXISTS","message":"exists\n[SQL: INSERT]"}"#,
    );
    assert_eq!(e.api_code(), Some("RESOURCE_ALREADY_EXISTS"));
    assert_eq!(
        e.to_string(),
        "MLflow /x failed: HTTP 400 RESOURCE_ALREADY_EXISTS: exists"
    );
    let e = api_error("/x", 502, b"<html>bad gateway</html>");
    assert!(e.to_string().contains("HTTP 502"), "{e}");
    assert!(e.to_string().contains("bad gateway"), "{e}");
}

/// An HTTP server on 127.0.0.1 answering one request per connection with the given
/// (status, body) pairs in turn, then closing; joining it gives the requests served.
fn scripted_server(answers: Vec<(u16, &'static str)>) -> (String, std::thread::JoinHandle<usize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let uri = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let mut served = 0;
        for (status, body) in answers {
            let (mut s, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            // The request's body too: closing a socket with unread bytes sends a reset, which
            // the client may see before the answer.
            let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
            let end = text.find("\r\n\r\n").map_or(head.len(), |i| i + 4);
            let want = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            let mut got = head.len() - end;
            while got < want {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n,
                }
            }
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.shutdown(std::net::Shutdown::Write);
            served += 1;
        }
        served
    });
    (uri, handle)
}

fn retry(attempts: u32, ms: u64) -> RetryPolicy {
    RetryPolicy {
        attempts,
        initial_backoff: Duration::from_millis(ms),
        max_backoff: Duration::from_millis(ms * 4),
        ..RetryPolicy::default()
    }
}

#[test]
fn transient_statuses_are_retried() {
    let (uri, server) = scripted_server(vec![
        (503, "{}"),
        (429, "{}"),
        (
            200,
            r#"{"experiment":{"experiment_id":"7","lifecycle_stage":"active"}}"#,
        ),
    ]);
    let c = Client::new(&uri, retry(3, 1)).unwrap();
    assert_eq!(c.experiment_id("e").unwrap(), Some("7".to_string()));
    assert_eq!(server.join().unwrap(), 3);
}

#[test]
fn client_errors_are_not_retried_and_retries_are_bounded() {
    let (uri, server) = scripted_server(vec![(
        400,
        r#"{"error_code":"INVALID_PARAMETER_VALUE","message":"bad key"}"#,
    )]);
    let c = Client::new(&uri, retry(3, 1)).unwrap();
    let e = c.delete_run("r").unwrap_err();
    assert_eq!(e.api_code(), Some("INVALID_PARAMETER_VALUE"));
    assert_eq!(server.join().unwrap(), 1);

    let (uri, server) = scripted_server(vec![(500, "oops"), (502, "gateway")]);
    let c = Client::new(&uri, retry(2, 1)).unwrap();
    match c.experiment_id("e").unwrap_err() {
        MlflowError::Api {
            status, message, ..
        } => {
            assert_eq!((status, message.as_str()), (502, "gateway"))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.join().unwrap(), 2);
}

#[test]
fn refused_connections_back_off_then_fail() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = Client::new(&format!("http://127.0.0.1:{port}"), retry(3, 20)).unwrap();
    let t = std::time::Instant::now();
    match c.get_or_create_experiment("e").unwrap_err() {
        MlflowError::Unreachable { attempts, base, .. } => {
            assert_eq!(attempts, 3);
            assert_eq!(base, format!("http://127.0.0.1:{port}"));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        t.elapsed() >= Duration::from_millis(60),
        "waited 20 + 40 ms"
    );
}

#[test]
fn a_deleted_experiment_is_refused_and_a_missing_one_is_none() {
    let (uri, server) = scripted_server(vec![
        (
            200,
            r#"{"experiment":{"experiment_id":"4","lifecycle_stage":"deleted"}}"#,
        ),
        (
            404,
            r#"{"error_code":"RESOURCE_DOES_NOT_EXIST","message":"Could not find experiment"}"#,
        ),
    ]);
    let c = Client::new(&uri, retry(1, 1)).unwrap();
    let e = c.get_or_create_experiment("old").unwrap_err();
    assert!(
        matches!(e, MlflowError::ExperimentDeleted { ref name } if name == "old"),
        "{e}"
    );
    assert_eq!(c.experiment_id("new").unwrap(), None);
    assert_eq!(server.join().unwrap(), 2);
}

#[test]
fn a_silent_server_is_given_up_at_the_call_deadline() {
    // Accepts every connection and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let uri = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept() {
            held.push(s);
        }
    });
    let policy = RetryPolicy {
        attempts: 5,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(100),
        deadline: Duration::from_millis(1500),
    };
    let c = Client::new(&uri, policy).unwrap();
    let t = std::time::Instant::now();
    let e = c.experiment_id("e").unwrap_err();
    let took = t.elapsed();
    assert!(matches!(e, MlflowError::Unreachable { .. }), "{e}");
    assert!(took >= Duration::from_millis(1400), "{took:?}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert_eq!(e.to_string().lines().count(), 1, "{e}");
}
