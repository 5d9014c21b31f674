//! Drift check of the C header: regenerates `include/flowlog_vswitch.h` from `src/ffi.rs` with cbindgen (the
//! settings of `cbindgen.toml`) in memory and fails on any difference from the checked-in file.
//! `UPDATE_HEADER=1 cargo test -p flowlog-vswitch --test header` rewrites the file instead.

use std::path::Path;

#[test]
fn checked_in_header_matches_the_rust_abi() -> anyhow::Result<()> {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .map_err(|e| anyhow::anyhow!("reading cbindgen.toml: {e}"))?;
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(crate_dir.join("src/ffi.rs"))
        .generate()?;
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let generated = String::from_utf8(generated)?;

    let header_path = crate_dir.join("include/flowlog_vswitch.h");
    if std::env::var_os("UPDATE_HEADER").is_some() {
        std::fs::create_dir_all(crate_dir.join("include"))?;
        std::fs::write(&header_path, &generated)?;
        eprintln!("rewrote {}", header_path.display());
        return Ok(());
    }
    let checked_in = std::fs::read_to_string(&header_path).unwrap_or_default();
    if checked_in != generated {
        let first_difference = checked_in
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| checked_in.lines().count().min(generated.lines().count()));
        anyhow::bail!(
            "{} is out of date with src/ffi.rs (first difference at line {}).\n\
             Regenerate it with: UPDATE_HEADER=1 cargo test -p flowlog-vswitch --test header\n\
             --- generated ---\n{generated}",
            header_path.display(),
            first_difference + 1,
        );
    }
    // The generated text is C a host compiles without DPDK's headers.
    for needle in [
        "#ifndef FLOWLOG_VSWITCH_H",
        "#include <stdint.h>",
        "struct rte_mbuf;",
        "flowlog_status flowlog_worker_process(",
        "FLOWLOG_STATUS_OK = 0",
    ] {
        anyhow::ensure!(generated.contains(needle), "the header lacks `{needle}`");
    }
    Ok(())
}
