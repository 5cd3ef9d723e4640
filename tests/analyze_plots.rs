//! The five plots drawn from one series (one backend), two (both backends) and many (a sweep
//! of sizes, tools and concurrencies): every file written, its legend and ticks named from the
//! data in the team's units. KVXFER_PLOTS_DIR keeps the images for a look.

use std::path::{Path, PathBuf};

use kvxfer::analyze::e2e::{Dist, Mode};
use kvxfer::analyze::lowlevel::KvProfile;
use kvxfer::analyze::{plots, E2eRecord, Inputs, LowPoint, Settings, Transport};

const MIB: u64 = 1 << 20;
const KV: [u64; 3] = [57_344_000, 234_881_024, 704_643_072];

fn e2e(backend: &str, tokens: u64, c: u64, ttft: f64) -> E2eRecord {
    let unified = backend == "none";
    E2eRecord {
        source: format!("p15-{backend}-{tokens}-c{c}.json"),
        mode: Some(if unified {
            Mode::Unified
        } else {
            Mode::Disaggregated
        }),
        backend: Some(backend.into()),
        prompt_tokens: Some(tokens),
        concurrency: Some(c),
        ttft: Dist {
            mean: Some(ttft),
            ..Dist::default()
        },
        tpot: Dist {
            mean: Some(12.0 + if backend == "efa" { 0.1 } else { 0.0 }),
            ..Dist::default()
        },
        ..E2eRecord::default()
    }
}

fn point(tool: &str, t: Transport, layer: &str, size: u64, c: u64, ms: f64) -> LowPoint {
    LowPoint {
        source: format!("{tool}-{}-{size}-c{c}.json", t.name()),
        tool: tool.into(),
        bench: if layer == "L0" { "pingpong" } else { "xfer" }.into(),
        layer: layer.into(),
        backend: Some(
            if t == Transport::Efa {
                "libfabric"
            } else {
                "ucx"
            }
            .into(),
        ),
        transport: t,
        scheme: Some(if c == 1 { "pairwise" } else { "manytoone" }.into()),
        concurrency: Some(c),
        size,
        latency_p50_us: Some(ms * 1e3),
        bandwidth_gbps: Some(size as f64 / (ms / 1e3) / 1e9 * c as f64),
        transfer_time_ms: Some(ms),
        samples: 10,
        ..LowPoint::default()
    }
}

/// E2E and low-level data over `backends`; `sweep` adds sizes, tools and concurrencies.
fn inputs(backends: &[&str], sweep: bool) -> Inputs {
    let mut i = Inputs::default();
    // The sweep at the plan's 12288 tokens, so its 672M transfers and L2 profiles split the
    // TTFT; one and two backends at the team's 12000, which no 672M transfer matches.
    let tokens: &[u64] = if sweep {
        &[1000, 4096, 12288]
    } else {
        &[12000]
    };
    for &t in tokens {
        i.e2e.push(e2e("none", t, 1, 0.55 * t as f64));
        for b in backends {
            for c in [1, 4, 8, 16] {
                let slow = if *b == "tcp" {
                    1.0 + 0.11 * c as f64
                } else {
                    1.0 + 0.03 * c as f64
                };
                i.e2e.push(e2e(b, t, c, (0.55 * t as f64 + 1840.0) * slow));
            }
        }
    }
    for b in backends {
        let tr = if *b == "efa" {
            Transport::Efa
        } else {
            Transport::Tcp
        };
        let rate = if *b == "efa" { 4.1e6 } else { 2.4e6 };
        let tools: &[&str] = if sweep {
            &["kvxfer", "nixlbench"]
        } else {
            &["kvxfer"]
        };
        for tool in tools {
            let sizes: &[u64] = if sweep { &KV } else { &KV[2..] };
            // The stock tool a little slower than kvxfer, as twins measure.
            let rate = if *tool == "kvxfer" { rate } else { rate * 0.93 };
            for &s in sizes {
                i.low.push(point(tool, tr, "L1", s, 1, s as f64 / rate));
            }
            let lat: &[u64] = if sweep {
                &[64, 1024, 65536, MIB, 10 * MIB]
            } else {
                &[64]
            };
            for &s in lat {
                let base = if *b == "efa" { 0.012 } else { 0.031 };
                let l0 = if *tool == "kvxfer" {
                    "kvxfer"
                } else {
                    "fi_pingpong"
                };
                i.low
                    .push(point(l0, tr, "L0", s, 1, base + s as f64 / rate));
            }
            if sweep && *tool == "kvxfer" {
                let mut p = point(tool, tr, "L2", KV[2], 1, KV[2] as f64 / rate);
                p.bench = "kv_profile".into();
                p.profile = Some(KvProfile {
                    slow_start_ms: Some(if *b == "tcp" { 60.0 } else { 4.0 }),
                    registration_ms: Some(35.0),
                    descriptors_ms: Some(12.0),
                    protocol_ms: Some(20.0),
                    cold_excess_ms: Some(90.0),
                });
                i.low.push(p);
            }
            let cs: &[u64] = if sweep { &[4, 8, 16] } else { &[16] };
            for &c in cs {
                let per_c = if *b == "efa" { 0.04 } else { 0.1 };
                let mut p = point(
                    tool,
                    tr,
                    "L1",
                    KV[2],
                    c,
                    KV[2] as f64 / rate * (1.0 + per_c * c as f64),
                );
                p.tier_centres_ms = (1..=4).map(|k| k as f64 * 150.0).collect();
                i.low.push(p);
            }
        }
    }
    i
}

fn out_dir(name: &str) -> (PathBuf, Option<tempfile::TempDir>) {
    match std::env::var_os("KVXFER_PLOTS_DIR") {
        Some(d) => (Path::new(&d).join(name), None),
        None => {
            let t = tempfile::tempdir().unwrap();
            (t.path().to_path_buf(), Some(t))
        }
    }
}

/// The five plots of `i`, with the temporary folder that holds them (none under
/// KVXFER_PLOTS_DIR).
fn draw(name: &str, i: &Inputs) -> (Vec<plots::PlotFile>, Option<tempfile::TempDir>) {
    let (dir, keep) = out_dir(name);
    let files = plots::write_all(i, &Settings::default(), &dir).unwrap();
    assert_eq!(files.len(), 5);
    for f in &files {
        let png = std::fs::read(&f.png).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let svg = std::fs::read_to_string(&f.svg).unwrap();
        for s in &f.series {
            assert!(svg.contains(s.as_str()), "{} lacks {s}", f.name);
        }
    }
    (files, keep)
}

fn plot<'a>(files: &'a [plots::PlotFile], name: &str) -> &'a plots::PlotFile {
    files.iter().find(|f| f.name == name).unwrap()
}

fn svg(f: &plots::PlotFile) -> String {
    std::fs::read_to_string(&f.svg).unwrap()
}

/// Whether the SVG holds a text element reading exactly `s` (a tick label, a legend entry).
fn has_text(svg: &str, s: &str) -> bool {
    svg.contains(&format!(">{s}</text>")) || svg.contains(&format!(">\n{s}\n</text>"))
}

#[test]
fn one_backend_names_its_data_in_the_teams_units() {
    let (f, _dir) = draw("one", &inputs(&["efa"], false));
    let gap = plot(&f, "token-gap-12k");
    // The title says the data's 12000 tokens, not the claim's 12288.
    assert_eq!(gap.title, "TTFT at 12000 tokens, c=1, decomposed");
    let text = svg(gap);
    // The y ticks carry the thousands whole (the old axis read 8000 as a clipped "800").
    assert!(has_text(&text, "8000"), "no 8000 tick");
    assert!(!has_text(&text, "800"));
    let bw = svg(plot(&f, "l1-bandwidth-vs-size"));
    assert!(has_text(&bw, "672M"), "the one size measured is its tick");
    let deg = plot(&f, "degradation-vs-concurrency");
    assert!(
        deg.series
            .contains(&"network many-to-one efa (672M)".to_string()),
        "{:?}",
        deg.series
    );
}

#[test]
fn both_backends_and_a_sweep_draw_every_series() {
    let (f, _two) = draw("two", &inputs(&["efa", "tcp"], false));
    assert_eq!(plot(&f, "l1-bandwidth-vs-size").series.len(), 2);
    let (f, _many) = draw("many", &inputs(&["efa", "tcp"], true));
    let bw = plot(&f, "l1-bandwidth-vs-size");
    assert_eq!(bw.series.len(), 4, "{:?}", bw.series);
    let text = svg(bw);
    for s in ["55M", "224M", "672M"] {
        assert!(has_text(&text, s), "{s} tick missing");
    }
    let gap = plot(&f, "token-gap-12k");
    assert_eq!(gap.title, "TTFT at 12288 tokens, c=1, decomposed");
    for part in [
        "prefill",
        "per-descriptor cost",
        "TCP slow start",
        "MR registration",
        "runtime overhead",
    ] {
        assert!(
            gap.series.contains(&part.to_string()),
            "{part}: {:?}",
            gap.series
        );
    }
    let lat = svg(plot(&f, "l0-latency-vs-size"));
    for s in ["64", "1K", "64K", "1M", "10M"] {
        assert!(has_text(&lat, s), "{s} tick missing");
    }
}
