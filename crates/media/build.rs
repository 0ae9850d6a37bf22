//! Builds the in-kernel relay's BPF object (`bpf/relay.bpf.c`) with clang.
//!
//! Without clang (or when it fails: no kernel headers) the object is left empty and
//! the crate still builds: the kernel relay then refuses to start with an error that
//! says so (`kernel::KernelRelay::attach`), and everything else works. `CLANG` names
//! another clang.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = "bpf/relay.bpf.c";
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-env-changed=CLANG");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("relay.bpf.o");
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    // The kernel's UAPI headers include <asm/types.h>, which Debian keeps per architecture.
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let multiarch = format!("/usr/include/{arch}-linux-gnu");
    let run = Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpfel", "-Wall", "-Werror"])
        .arg(format!("-I{multiarch}"))
        .args(["-c", src, "-o"])
        .arg(&out)
        .status();
    // Either way the rest of Hotline builds: the kernel relay's own tests fail, saying
    // so, when its object is missing (`KernelRelay::built`).
    match run {
        Ok(s) if s.success() => {}
        Ok(s) => {
            println!(
                "cargo:warning=no kernel relay in this build: {clang} could not build {src} ({s}; missing kernel headers? install linux-libc-dev)"
            );
            std::fs::write(&out, []).expect("write empty BPF object");
        }
        Err(e) => {
            println!(
                "cargo:warning=no kernel relay in this build: {clang} not found ({e}); install clang to have it"
            );
            // Look again once clang may be there.
            println!("cargo:rerun-if-changed=/usr/bin/clang");
            std::fs::write(&out, []).expect("write empty BPF object");
        }
    }
}
