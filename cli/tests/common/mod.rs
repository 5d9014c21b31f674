//! Helpers for end-to-end tests: locating the workspace's binaries and running real server processes.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The directory holding the workspace's binaries (`target/debug`), next to this test's executable.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .to_path_buf()
}

/// A workspace binary, which must have been built (`cargo build --workspace --bins`, as scripts/test does).
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test does)",
        path.display()
    );
    path
}

/// A server process that is killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: String,
}

impl Server {
    /// Starts `program args...` and waits for its `listening on ADDR` line.
    pub fn start(program: &Path, args: &[&str]) -> Server {
        let mut child = Command::new(program)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("{} printed {line:?}", program.display()))
            .to_string();
        Server {
            child,
            addr: format!("http://{addr}"),
        }
    }

    /// Stops the server with SIGTERM and waits for it.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a command to completion, failing the test with its stderr when it fails; returns stdout.
pub fn run(command: &mut Command) -> String {
    let output = command.output().expect("run command");
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Compares record lines one by one so a failure names the first difference.
pub fn assert_same_records(actual: &str, expected: &str) {
    let (a, e): (Vec<&str>, Vec<&str>) = (actual.lines().collect(), expected.lines().collect());
    for (index, (x, y)) in a.iter().zip(&e).enumerate() {
        assert_eq!(x, y, "record {} differs", index + 1);
    }
    assert_eq!(a.len(), e.len(), "record count differs");
}

/// EAL arguments for a test process on this 2-core machine: two lcores floating over both CPUs, no hugepages,
/// no shared runtime files (so parallel DPDK processes do not collide).
pub fn eal_args(vdev: &str) -> String {
    format!(
        r#"["--lcores=0@(0-1),1@(0-1)", "--no-huge", "-m", "256", "--no-pci", "--no-shconf", "--no-telemetry", "--log-level=lib.eal:warning", "--vdev={vdev}"]"#
    )
}

/// A child process killed (SIGKILL) and reaped when the test ends, even by a panic.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `path` (a log file) has, after byte `from`, a line containing every one of `needles`; returns when
/// it appeared and the offset just past that line.
pub fn wait_for_log(
    path: &std::path::Path,
    needles: &[&str],
    from: usize,
    timeout: std::time::Duration,
) -> (std::time::Instant, usize) {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut offset = from.min(text.len());
        for line in text.get(offset..).unwrap_or_default().split_inclusive('\n') {
            offset += line.len();
            if line.ends_with('\n') && needles.iter().all(|n| line.contains(n)) {
                return (std::time::Instant::now(), offset);
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no log line with {needles:?} in {}:\n{text}",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
