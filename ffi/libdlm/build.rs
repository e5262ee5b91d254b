//! Gives `libdlm.so` its SONAME, and makes the name resolvable in cargo's
//! own output directory.
//!
//! The SONAME is `libdlm.so.MAJOR`, or `libdlm.so.0.MINOR` before 1.0 (when
//! a new minor version may change the ABI, as Cargo's semver reads it), so a
//! program linked against one ABI never loads another. A program linked
//! with `-ldlm` records that name, and the loader looks for a file of that
//! name: the install script installs `libdlm.so.X.Y.Z` with the two links,
//! and this script puts the SONAME link beside cargo's `libdlm.so` in
//! `target/<profile>/`, so programs linked straight against a cargo build
//! (with an rpath to it) run too.

#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os != "linux" {
        return;
    }
    let major = env("CARGO_PKG_VERSION_MAJOR");
    let soname = if major == "0" {
        format!("libdlm.so.0.{}", env("CARGO_PKG_VERSION_MINOR"))
    } else {
        format!("libdlm.so.{major}")
    };
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
    // OUT_DIR is <target>/<profile>/build/libdlm-<hash>/out.
    let Some(profile_dir) = PathBuf::from(env("OUT_DIR"))
        .ancestors()
        .nth(3)
        .map(PathBuf::from)
    else {
        return;
    };
    let link = profile_dir.join(&soname);
    #[cfg(unix)]
    if std::fs::symlink_metadata(&link).is_err() {
        // Dangling until the library is linked; a failure only means
        // in-tree programs need a link of their own.
        let _ = std::os::unix::fs::symlink("libdlm.so", &link);
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}
