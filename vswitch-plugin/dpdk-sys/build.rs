//! Builds the DPDK binding: finds the system DPDK through pkg-config (linked shared, so EAL loads every PMD from its
//! driver directory by itself), compiles the `fl_` C shim and generates bindings over `src/shim.h`.
//!
//! Debian's `pkg-config --cflags libdpdk` carries `-include rte_config.h` and `-march=corei7`, which the headers
//! need; the pkg-config crate keeps only `-I`/`-D`, so the full word list is read here and given to both bindgen and
//! cc.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=src/shim.h");
    println!("cargo:rerun-if-changed=src/shim.c");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG");

    let library = match pkg_config::Config::new()
        .atleast_version("22.11")
        .probe("libdpdk")
    {
        Ok(library) => library,
        Err(error) => fail(&format!(
            "DPDK >= 22.11 not found through pkg-config ({error}); install libdpdk-dev (scripts/setup does)"
        )),
    };
    // `rte_eth_from_ring` (a port over an `rte_ring` of any size) lives in the ring PMD's own library, which
    // pkg-config's list leaves to EAL's driver loading. Linking it by name maps the same file EAL later loads.
    println!("cargo:rustc-link-lib=rte_net_ring");
    let cflags = full_cflags();

    let mut shim = cc::Build::new();
    shim.file("src/shim.c").include("src");
    for word in &cflags {
        shim.flag(word);
    }
    for path in &library.include_paths {
        shim.include(path);
    }
    // DPDK's headers trip a few of the compiler's optional warnings; they are not ours to fix.
    shim.warnings(false).compile("flowlog_dpdk_shim");

    let bindings = bindgen::Builder::default()
        .header("src/shim.h")
        .clang_args(&cflags)
        .clang_arg("-Isrc")
        .allowlist_function("rte_.*|fl_.*")
        .allowlist_type("rte_.*|fl_.*")
        .allowlist_var("RTE_.*|FL_.*|rte_.*")
        // bindgen cannot derive for these two packed-and-aligned 22.11 protocol headers: keep them as bytes.
        .opaque_type("rte_l2tpv2_combined_msg_hdr")
        .opaque_type("rte_gtp_psc_generic_hdr")
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .prepend_enum_name(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate();
    let bindings = match bindings {
        Ok(bindings) => bindings,
        Err(error) => fail(&format!("bindgen over src/shim.h failed: {error}")),
    };
    let out =
        PathBuf::from(env::var("OUT_DIR").unwrap_or_else(|_| fail("OUT_DIR not set by cargo")));
    if let Err(error) = bindings.write_to_file(out.join("bindings.rs")) {
        fail(&format!("cannot write bindings.rs: {error}"));
    }
}

/// Every word of `pkg-config --cflags libdpdk`, in order.
fn full_cflags() -> Vec<String> {
    let pkg_config = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".to_owned());
    let output = Command::new(&pkg_config)
        .args(["--cflags", "libdpdk"])
        .output()
        .unwrap_or_else(|error| fail(&format!("cannot run {pkg_config}: {error}")));
    if !output.status.success() {
        fail(&format!(
            "{pkg_config} --cflags libdpdk failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn fail(message: &str) -> ! {
    eprintln!("dpdk-sys: {message}");
    std::process::exit(1);
}
