//! Replays every fuzz corpus file (`fuzz/corpus/<target>/*`) and every saved finding that has been
//! fixed (`fuzz/regressions/<target>/*`) through the same target functions the fuzzer runs
//! (`fuzz/targets.rs`). No fuzzing here: a corpus file that panics is a regression.
//! Findings (reproducers of bugs the fuzzers found) live in `fuzz/findings/` and are replayed by
//! `fuzz_findings_*` below, each in a child process because an allocation failure aborts; a
//! finding whose bug is still open is `#[ignore]`d (see fuzz/README.md).

#[path = "../fuzz/targets.rs"]
mod targets;

use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn replay(target: &str, f: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for sub in ["corpus", "regressions"] {
        for path in files(&root.join(sub).join(target)) {
            let data = std::fs::read(&path).expect("read corpus file");
            let result = std::panic::catch_unwind(|| f(&data));
            assert!(result.is_ok(), "{target}: {} panicked", path.display());
            n += 1;
        }
    }
    n
}

#[test]
fn replay_frame_corpus() {
    assert!(replay("frame", targets::frame) > 0, "empty frame corpus");
}

#[test]
fn replay_request_corpus() {
    assert!(
        replay("request", targets::request) > 0,
        "empty request corpus"
    );
}

#[test]
fn replay_batch_corpus() {
    assert!(replay("batch", targets::batch) > 0, "empty batch corpus");
}

#[test]
fn replay_recovery_corpus() {
    assert!(
        replay("recovery", targets::recovery) > 0,
        "empty recovery corpus"
    );
}

/// Runs one open finding in a child process (an allocation failure aborts, it does not unwind).
fn finding_survives(target: &str, name: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/findings")
        .join(target)
        .join(name);
    if std::env::var_os("TIDEWATER_FINDING_CHILD").is_some() {
        let data = std::fs::read(&path).expect("read finding");
        match target {
            "request" => targets::request(&data),
            "batch" => targets::batch(&data),
            "frame" => targets::frame(&data),
            "recovery" => targets::recovery(&data),
            _ => unreachable!(),
        }
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    let test_name = format!("fuzz_findings_{}", name.replace(['-', '.'], "_"));
    let out = std::process::Command::new(exe)
        .args([
            test_name.as_str(),
            "--exact",
            "--include-ignored",
            "--nocapture",
        ])
        .env("TIDEWATER_FINDING_CHILD", "1")
        .output()
        .expect("run child");
    assert!(
        out.status.success(),
        "{target} finding {name} kills the decoder: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .take(12)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

// Fixed: kafka-protocol 0.18 `Array::decode` did `Vec::with_capacity(n)` with the array length
// from the wire; a 20-byte Metadata request declaring 2^31-1 topics made the broker allocate
// ~154 GB and abort. The vendored crate caps preallocation by the bytes left (vendor/README.md).
#[test]
fn fuzz_findings_metadata_array_len() {
    finding_survives("request", "metadata-array-len");
}

#[test]
fn fuzz_findings_produce_array_len() {
    finding_survives("request", "produce-array-len");
}

#[test]
fn fuzz_findings_fetch_array_len() {
    finding_survives("request", "fetch-array-len");
}
