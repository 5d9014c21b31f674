//! Compiles `flowlog/v1/*.proto` with protox (pure Rust: no `protoc` needed) and generates prost messages and tonic
//! clients and servers.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "flowlog/v1/record.proto",
        "flowlog/v1/collector.proto",
        "flowlog/v1/control.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["."])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
