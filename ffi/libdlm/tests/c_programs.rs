//! libdlm from C and C++, against a real dlm-server (in the manner of
//! rustls-ffi's `tests/client_server.rs`).
//!
//! The C programs in `tests/c/` and the examples in `examples/` are
//! compiled with gcc/g++ (`-Wall -Wextra -Werror -pedantic`, C11 or C++17)
//! against the committed `include/dlm.h`, and linked three ways against
//! `target/<profile>/libdlm`: shared, static (with the native libraries
//! listed in `native-static-libs.txt`), and static under ASAN
//! (`-fsanitize=address`) with its leak checker on. Each run gets its own
//! server; each test program
//! prints `NAME: N checks, 0 failed` and must write nothing to stderr (a
//! panic caught at the ABI would print there).
//!
//! Also here: that native-library list against rustc's own report (via
//! `scripts/install-libdlm.sh`, which pkg-config users get), building the
//! example with `pkg-config`, and the symbols `libdlm.so` exports.
//!
//! `DLM_LEAK_CHECK=valgrind` checks for leaks under valgrind instead of
//! ASAN. That is also the fallback where ASAN's leak checker does not work
//! (some ptrace-restricted sandboxes): it must first catch the leak of
//! `tests/c/leak_canary.c`.

// Test code: panicking on a broken expectation is the point.
#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use dlm_tests::{Server, binary, scratch_dir, target_dir};

/// The longest any one program may run.
const RUN_LIMIT: Duration = Duration::from_secs(90);

fn lib_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `target/<profile>` with a fresh `libdlm.so` and `libdlm.a`. When cargo
/// builds the library for the tests it leaves them under `deps/` only, so
/// build it once as `cargo build` does (a relink at most, when the library
/// is up to date).
fn lib_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = target_dir();
        let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cargo.args(["build", "-p", "libdlm", "--lib", "--locked"]);
        if dir.file_name().is_some_and(|n| n == "release") {
            cargo.arg("--release");
        }
        let out = cargo.output().expect("run cargo build");
        assert!(
            out.status.success(),
            "cargo build -p libdlm --lib failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for lib in ["libdlm.so", "libdlm.a"] {
            assert!(
                dir.join(lib).is_file(),
                "{lib} missing in {}",
                dir.display()
            );
        }
        dir
    })
}

/// The native libraries a static link needs, from `native-static-libs.txt`.
fn native_static_libs() -> Vec<String> {
    let text = fs::read_to_string(lib_root().join("native-static-libs.txt")).unwrap();
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(str::split_whitespace)
        .map(str::to_owned)
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    /// `-ldlm` against `libdlm.so`, found through an rpath.
    Shared,
    /// `libdlm.a` and its native libraries.
    Static,
    /// As `Static`, with `-fsanitize=address`.
    Asan,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lang {
    C,
    Cpp,
}

/// What a program gets besides the server's address (its first argument).
#[derive(Clone, Copy)]
enum Setup {
    /// Nothing.
    Plain,
    /// Cargo's version of this crate, to compare with the header's macros,
    /// and the address of a peer that answers nonsense.
    CargoVersionAndGarbage,
    /// The address of a second server with a memory budget of 4 KiB.
    TightBudget,
    /// The server's pid, to stop it midway.
    ServerPid,
    /// A server with an identity; the identity's name and secret.
    Identity,
    /// A second server that keeps 16 changes for watchers and lets one
    /// leave 4 KiB unread.
    TightWatch,
    /// A TLS server asking for client certificates; its CA file, another
    /// CA's file, a client certificate and key.
    Tls,
}

/// How a successful run shows.
#[derive(Clone, Copy)]
enum Expect {
    /// A test program: `NAME: N checks, 0 failed`.
    Tally,
    /// An example: lines starting with these, among others.
    Prints(&'static [&'static str]),
}

/// A program to build and run.
struct Program {
    name: &'static str,
    /// Under `ffi/libdlm/`.
    source: &'static str,
    lang: Lang,
    setup: Setup,
    expect: Expect,
}

const PROGRAMS: &[Program] = &[
    Program {
        name: "basics",
        source: "tests/c/basics.c",
        lang: Lang::C,
        setup: Setup::CargoVersionAndGarbage,
        expect: Expect::Tally,
    },
    Program {
        name: "locks",
        source: "tests/c/locks.c",
        lang: Lang::C,
        setup: Setup::Plain,
        expect: Expect::Tally,
    },
    Program {
        name: "semaphores",
        source: "tests/c/semaphores.c",
        lang: Lang::C,
        setup: Setup::Plain,
        expect: Expect::Tally,
    },
    Program {
        name: "multi",
        source: "tests/c/multi.c",
        lang: Lang::C,
        setup: Setup::Plain,
        expect: Expect::Tally,
    },
    Program {
        name: "shared",
        source: "tests/c/shared.c",
        lang: Lang::C,
        setup: Setup::Identity,
        expect: Expect::Tally,
    },
    Program {
        name: "sessions",
        source: "tests/c/sessions.c",
        lang: Lang::C,
        setup: Setup::Plain,
        expect: Expect::Tally,
    },
    Program {
        name: "watches",
        source: "tests/c/watches.c",
        lang: Lang::C,
        setup: Setup::TightWatch,
        expect: Expect::Tally,
    },
    Program {
        name: "values",
        source: "tests/c/values.c",
        lang: Lang::C,
        setup: Setup::TightBudget,
        expect: Expect::Tally,
    },
    Program {
        name: "renew",
        source: "tests/c/renew.c",
        lang: Lang::C,
        setup: Setup::ServerPid,
        expect: Expect::Tally,
    },
    Program {
        name: "credentials",
        source: "tests/c/credentials.c",
        lang: Lang::C,
        setup: Setup::Identity,
        expect: Expect::Tally,
    },
    Program {
        name: "sansio",
        source: "tests/c/sansio.c",
        lang: Lang::C,
        setup: Setup::Plain,
        expect: Expect::Tally,
    },
    Program {
        name: "tls",
        source: "tests/c/tls.c",
        lang: Lang::C,
        setup: Setup::Tls,
        expect: Expect::Tally,
    },
    Program {
        name: "hpp",
        source: "tests/c/hpp.cpp",
        lang: Lang::Cpp,
        setup: Setup::Plain,
        expect: Expect::Tally,
    },
    Program {
        name: "first",
        source: "examples/first.c",
        lang: Lang::C,
        setup: Setup::Plain,
        expect: Expect::Prints(&["holding backup with fencing token "]),
    },
    Program {
        name: "lock_and_share",
        source: "examples/lock_and_share.c",
        lang: Lang::C,
        setup: Setup::Plain,
        expect: Expect::Prints(&["released nightly-report", "report-status = running"]),
    },
    Program {
        name: "raii",
        source: "examples/raii.cpp",
        lang: Lang::Cpp,
        setup: Setup::Plain,
        expect: Expect::Prints(&["bob refused: lock: held by another owner", "ok"]),
    },
];

/// The compiler and the flags every C or C++ source is held to.
fn compiler(lang: Lang) -> Command {
    let mut cmd = match lang {
        Lang::C => {
            let mut c = Command::new("gcc");
            c.arg("-std=c11");
            c
        }
        Lang::Cpp => {
            let mut c = Command::new("g++");
            c.arg("-std=c++17");
            c
        }
    };
    cmd.args(["-Wall", "-Wextra", "-Werror", "-pedantic", "-g"])
        .arg("-I")
        .arg(lib_root().join("include"))
        .arg("-I")
        .arg(lib_root().join("tests/c"));
    cmd
}

/// Runs a command to completion, panicking with its output on failure.
fn must(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {cmd:?}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Compiles and links `program` into `dir`.
fn build(program: &Program, link: Link, dir: &Path) -> PathBuf {
    let out = dir.join(format!("{}-{link:?}", program.name).to_lowercase());
    let lib = lib_dir();
    let mut cmd = compiler(program.lang);
    if link == Link::Asan {
        cmd.args(["-fsanitize=address", "-fno-omit-frame-pointer"]);
    }
    cmd.arg(lib_root().join(program.source)).arg("-o").arg(&out);
    match link {
        Link::Shared => {
            cmd.arg("-L")
                .arg(lib)
                .arg("-ldlm")
                .arg(format!("-Wl,-rpath,{}", lib.display()));
        }
        Link::Static | Link::Asan => {
            cmd.arg(lib.join("libdlm.a")).args(native_static_libs());
        }
    }
    cmd.arg("-pthread");
    must(&mut cmd, &format!("building {} ({link:?})", program.name));
    out
}

/// A finished run.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` with its output in files (no pipe can fill up), killing it
/// after [`RUN_LIMIT`].
fn run(mut cmd: Command, dir: &Path, what: &str) -> Run {
    let out_path = dir.join(format!("{what}.stdout"));
    let err_path = dir.join(format!("{what}.stderr"));
    cmd.stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} ran longer than {RUN_LIMIT:?}; output so far:\n{}{}",
                fs::read_to_string(&out_path).unwrap_or_default(),
                fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        status,
        stdout: fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: fs::read_to_string(&err_path).unwrap_or_default(),
    }
}

/// How to run a built program: `wrap` is a command that takes the program
/// and its arguments (valgrind), `env` is added to its environment.
#[derive(Default)]
struct Runner<'a> {
    wrap: &'a [&'a str],
    env: &'a [(&'a str, &'a str)],
}

/// A server with an identity `c-tests` (`MaxSize` 64 KiB) in `dir`, and the
/// identity's secret.
fn server_with_identity(dir: &Path) -> (Server, String) {
    must(
        Command::new(binary("dlm-server", "dlm-server"))
            .args(["identity", "new", "c-tests", "--max-size", "65536"])
            .arg("--identity-dir")
            .arg(dir),
        "dlm-server identity new",
    );
    let cfg = fs::read_to_string(dir.join("c-tests.cfg")).unwrap();
    let secret = cfg
        .split("\"Identity\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no secret in {cfg:?}"))
        .to_owned();
    let server = Server::with_args(&["--identity-dir", dir.to_str().unwrap()]);
    (server, secret)
}

/// A TCP peer that answers every line with something that is not a dlm
/// answer. Its thread lives as long as the test process.
fn garbage_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                for line in BufReader::new(stream).lines() {
                    if line.is_err() || writer.write_all(b"not a dlm answer\n").is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// Runs one program against a server of its own and checks its output;
/// returns how many checks it made (0 for the examples).
fn run_program(program: &Program, exe: &Path, runner: &Runner<'_>, dir: &Path) -> u32 {
    let identities = dir.join("identities");
    let mut second = None;
    let (server, extra) = match program.setup {
        Setup::Plain => (Server::start(), vec![]),
        Setup::CargoVersionAndGarbage => (
            Server::start(),
            vec![
                env!("CARGO_PKG_VERSION").to_owned(),
                garbage_server().to_string(),
            ],
        ),
        Setup::TightBudget => {
            let tight = Server::with_args(&["--memory-budget", "4KiB"]);
            let addr = tight.addr().to_string();
            second = Some(tight);
            (Server::start(), vec![addr])
        }
        Setup::TightWatch => {
            let tight = Server::with_args(&["--watch-budget", "4KiB", "--watch-history", "16"]);
            let addr = tight.addr().to_string();
            second = Some(tight);
            (Server::start(), vec![addr])
        }
        Setup::ServerPid => {
            let server = Server::start();
            let pid = server.pid().to_string();
            (server, vec![pid])
        }
        Setup::Identity => {
            let (server, secret) = server_with_identity(&identities);
            (server, vec!["c-tests".to_owned(), secret])
        }
        Setup::Tls => {
            let (pki, other) = (identities.join("pki"), identities.join("other"));
            for (dir, client) in [(&pki, "c-tests"), (&other, "c-tests")] {
                must(
                    Command::new(binary("dlm-server", "dlm-server"))
                        .args(["tls", "new", "--client", client])
                        .arg(dir),
                    "dlm-server tls new",
                );
            }
            let file = |d: &Path, f: &str| d.join(f).to_str().unwrap().to_owned();
            let server = Server::with_args(&[
                "--tls-cert",
                &file(&pki, "server.pem"),
                "--tls-key",
                &file(&pki, "server.key"),
                "--tls-client-ca",
                &file(&pki, "ca.pem"),
            ]);
            (
                server,
                vec![
                    file(&pki, "ca.pem"),
                    file(&other, "ca.pem"),
                    file(&pki, "c-tests.pem"),
                    file(&pki, "c-tests.key"),
                ],
            )
        }
    };
    let mut cmd = match runner.wrap {
        [wrapper, args @ ..] => {
            let mut cmd = Command::new(wrapper);
            cmd.args(args).arg(exe);
            cmd
        }
        [] => Command::new(exe),
    };
    cmd.arg(server.addr().to_string())
        .args(&extra)
        .envs(runner.env.iter().copied());
    let what = exe.file_name().unwrap().to_str().unwrap();
    let r = run(cmd, dir, what);
    let report = format!(
        "{what}: {}\n--- stdout\n{}--- stderr\n{}--- server log\n{}",
        r.status,
        r.stdout,
        r.stderr,
        server.log()
    );
    drop((server, second));
    let _ = fs::remove_dir_all(&identities);
    assert!(r.status.success(), "{report}");
    assert!(r.stderr.is_empty(), "{what} wrote to stderr:\n{report}");
    match program.expect {
        Expect::Prints(lines) => {
            for line in lines {
                assert!(
                    r.stdout.lines().any(|l| l.starts_with(line)),
                    "no {line:?}:\n{report}"
                );
            }
            0
        }
        Expect::Tally => {
            let name = program.name;
            let tally = r
                .stdout
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                .unwrap_or_else(|| panic!("no tally in the output of {what}:\n{report}"));
            let n: u32 = tally
                .strip_suffix(" checks, 0 failed")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{what}: {tally}\n{report}"));
            assert!(n > 0, "{report}");
            n
        }
    }
}

/// Whether `binary` needs a shared library whose name starts with `lib`.
fn needs_shared(binary: &Path, lib: &str) -> bool {
    must(Command::new("readelf").arg("-d").arg(binary), "readelf -d")
        .lines()
        .any(|l| l.contains("(NEEDED)") && l.contains(&format!("[{lib}")))
}

/// Builds every program with `link`, checks that the binary is linked as
/// claimed, and runs each against its own server.
fn build_and_run_all(label: &str, link: Link, runner: &Runner<'_>) {
    let dir = scratch_dir(&format!("c-{link:?}").to_lowercase());
    let mut checks = 0;
    for program in PROGRAMS {
        let exe = build(program, link, &dir);
        assert_eq!(
            needs_shared(&exe, "libdlm"),
            link == Link::Shared,
            "{} is not linked {link:?}",
            exe.display()
        );
        if link == Link::Asan {
            let symbols = must(Command::new("nm").arg(&exe), "nm");
            assert!(
                symbols.contains("__asan_init"),
                "{} is not built with ASAN",
                exe.display()
            );
        }
        checks += run_program(program, &exe, runner, &dir);
    }
    eprintln!(
        "{label}: {checks} C checks passed in {} programs",
        PROGRAMS.len()
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn c_programs_linked_shared() {
    build_and_run_all("shared", Link::Shared, &Runner::default());
}

#[test]
fn c_programs_linked_static() {
    build_and_run_all("static", Link::Static, &Runner::default());
}

/// Whether ASAN's leak checker works here: it must report the canary's
/// leak.
fn leak_sanitizer_works() -> bool {
    let dir = scratch_dir("c-leak-canary");
    let canary = dir.join("leak-canary");
    let mut cmd = compiler(Lang::C);
    cmd.args(["-fsanitize=address", "-fno-omit-frame-pointer"])
        .arg(lib_root().join("tests/c/leak_canary.c"))
        .arg("-o")
        .arg(&canary);
    must(&mut cmd, "building the leak canary");
    let mut cmd = Command::new(&canary);
    cmd.env("ASAN_OPTIONS", "detect_leaks=1");
    let r = run(cmd, &dir, "leak-canary");
    let _ = fs::remove_dir_all(&dir);
    let caught = !r.status.success() && r.stderr.contains("LeakSanitizer: detected memory leaks");
    if !caught {
        eprintln!(
            "ASAN's leak checker missed the canary's leak ({}), so valgrind checks:\n{}",
            r.status, r.stderr
        );
    }
    caught
}

#[test]
fn c_programs_leak_free() {
    let forced_valgrind = std::env::var("DLM_LEAK_CHECK").is_ok_and(|v| v == "valgrind");
    if !forced_valgrind && leak_sanitizer_works() {
        let runner = Runner {
            wrap: &[],
            env: &[("ASAN_OPTIONS", "detect_leaks=1:halt_on_error=1")],
        };
        build_and_run_all("ASAN with leak detection", Link::Asan, &runner);
    } else {
        // Rust keeps the main thread's handle in a tagged thread-local
        // pointer, which valgrind counts as "possibly lost"; a definite or
        // indirect leak is an error.
        let runner = Runner {
            wrap: &[
                "valgrind",
                "-q",
                "--leak-check=full",
                "--show-leak-kinds=definite,indirect",
                "--errors-for-leak-kinds=definite,indirect",
                "--error-exitcode=99",
            ],
            env: &[],
        };
        build_and_run_all("valgrind", Link::Static, &runner);
    }
}

#[test]
fn the_readme_shows_examples_first_c() {
    let readme = fs::read_to_string(lib_root().join("README.md")).unwrap();
    let first = fs::read_to_string(lib_root().join("examples/first.c")).unwrap();
    assert!(
        readme.contains(&format!("```c\n{first}```\n")),
        "ffi/libdlm/README.md's first program differs from ffi/libdlm/examples/first.c"
    );
}

#[test]
fn the_header_alone_compiles_as_c11_and_cpp17() {
    let dir = scratch_dir("c-header");
    let source = lib_root().join("tests/c/include_only.c");
    let mut c = compiler(Lang::C);
    c.args(["-Wstrict-prototypes", "-Wmissing-prototypes", "-c"])
        .arg(&source)
        .arg("-o")
        .arg(dir.join("c11.o"));
    must(&mut c, "compiling dlm.h as C11");
    let mut cpp = compiler(Lang::Cpp);
    cpp.args(["-x", "c++", "-c"])
        .arg(&source)
        .arg("-o")
        .arg(dir.join("cpp17.o"));
    must(&mut cpp, "compiling dlm.h as C++17");
    let _ = fs::remove_dir_all(&dir);
}

/// The names of the functions `include/dlm.h` declares.
fn header_functions() -> BTreeSet<String> {
    let header = fs::read_to_string(lib_root().join("include/dlm.h")).unwrap();
    let mut names = BTreeSet::new();
    for line in header.lines() {
        if line.starts_with(|c: char| c.is_whitespace() || c == '/' || c == '#')
            || line.starts_with("typedef")
        {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("dlm_") {
            let ident: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + ident.len()..];
            if rest.starts_with('(') {
                names.insert(ident);
                break;
            }
        }
    }
    names
}

#[test]
fn exported_symbols_are_the_headers_functions_and_not_libdlm3s() {
    let so = lib_dir().join("libdlm.so");
    let exported: BTreeSet<String> = must(
        Command::new("nm").args(["-D", "--defined-only"]).arg(&so),
        "nm -D",
    )
    .lines()
    .filter_map(|l| l.split_whitespace().nth(2))
    .map(str::to_owned)
    .collect();
    assert!(exported.len() > 20, "{exported:?}");
    for symbol in &exported {
        assert!(symbol.starts_with("dlm_"), "{symbol} lacks the dlm_ prefix");
    }

    // Debian's libdlm3 (the cluster lock manager) is also "libdlm": a
    // program must never bind one of its functions to ours.
    let theirs: BTreeSet<String> = fs::read_to_string(lib_root().join("tests/libdlm3.symbols"))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    assert!(theirs.contains("dlm_lock") && theirs.len() > 20);
    let clash: Vec<_> = exported.intersection(&theirs).collect();
    assert!(clash.is_empty(), "libdlm3 exports these too: {clash:?}");

    // Exactly what the header declares: nothing exported by accident.
    assert_eq!(exported, header_functions());

    // And every one is called from the C tests.
    let mut c_sources = String::new();
    for entry in fs::read_dir(lib_root().join("tests/c")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "c") {
            c_sources.push_str(&fs::read_to_string(path).unwrap());
        }
    }
    let untested: Vec<_> = exported
        .iter()
        .filter(|s| !c_sources.contains(&format!("{s}(")))
        .collect();
    assert!(untested.is_empty(), "not called from tests/c: {untested:?}");
}

/// `pkg-config` with `dir` as its search path.
fn pkg_config(dir: &Path, args: &[&str]) -> Vec<String> {
    must(
        Command::new("pkg-config")
            .env("PKG_CONFIG_PATH", dir)
            .env_remove("PKG_CONFIG_LIBDIR")
            .args(args)
            .arg("dlm"),
        "pkg-config (scripts/setup.sh installs it)",
    )
    .split_whitespace()
    .map(str::to_owned)
    .collect()
}

#[test]
fn install_script_pkg_config_and_native_static_libs() {
    let prefix = scratch_dir("libdlm-prefix");
    // Its own target directory: the script passes rustc an extra flag,
    // which would rebuild the library the other tests link against.
    let target = target_dir().parent().unwrap().join("libdlm-install");
    let out = must(
        Command::new(lib_root().join("../../scripts/install-libdlm.sh"))
            .arg(&prefix)
            .env("DLM_PROFILE", "dev")
            .env("CARGO_TARGET_DIR", &target),
        "scripts/install-libdlm.sh",
    );
    let soname = format!(
        "libdlm.so.0.{}",
        env!("CARGO_PKG_VERSION_MINOR") // before 1.0; ffi/libdlm/build.rs
    );
    for file in [
        "lib/libdlm.so",
        &format!("lib/{soname}"),
        &format!("lib/libdlm.so.{}", env!("CARGO_PKG_VERSION")),
        "lib/libdlm.a",
        "include/dlm.h",
        "include/dlm.hpp",
        "lib/pkgconfig/dlm.pc",
    ] {
        assert!(prefix.join(file).is_file(), "{file} not installed:\n{out}");
    }
    let dynamic = must(
        Command::new("readelf")
            .arg("-d")
            .arg(prefix.join("lib/libdlm.so")),
        "readelf -d",
    );
    assert!(
        dynamic.contains(&format!("Library soname: [{soname}]")),
        "{dynamic}"
    );
    // It says what to set: pkg-config's path, and how the loader finds
    // the library.
    let pc_dir = prefix.join("lib/pkgconfig");
    assert!(
        out.contains(&format!("export PKG_CONFIG_PATH={}", pc_dir.display())),
        "{out}"
    );
    assert!(
        out.contains("-Wl,-rpath,") && out.contains("ldconfig"),
        "{out}"
    );

    // rustc's list of native libraries (the script reports it and writes
    // it into Libs.private) is the committed one that static links use.
    let from_rustc: Vec<String> = out
        .split("native static libraries: ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no native libraries in {out:?}"))
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        from_rustc,
        native_static_libs(),
        "rustc --print native-static-libs changed: update ffi/libdlm/native-static-libs.txt \
         (and the Go binding's LDFLAGS)"
    );
    let private: Vec<String> = pkg_config(&pc_dir, &["--static", "--libs-only-l"])
        .into_iter()
        .filter(|l| l != "-ldlm")
        .collect();
    assert_eq!(private, from_rustc);
    assert_eq!(
        pkg_config(&pc_dir, &["--modversion"]),
        [env!("CARGO_PKG_VERSION")]
    );

    // The example, built the way a user builds it.
    let example = lib_root().join("examples/lock_and_share.c");
    let mut shared = Command::new("gcc");
    shared
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic"])
        .arg(&example)
        .args(pkg_config(&pc_dir, &["--cflags", "--libs"]))
        .arg("-o")
        .arg(prefix.join("shared"));
    must(&mut shared, "building the example with pkg-config");
    // libdlm.so sits beside libdlm.a, so a static link names the archive.
    let static_libs: Vec<String> = pkg_config(&pc_dir, &["--static", "--libs"])
        .into_iter()
        .map(|l| {
            if l == "-ldlm" {
                "-l:libdlm.a".into()
            } else {
                l
            }
        })
        .collect();
    let mut fixed = Command::new("gcc");
    fixed
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic"])
        .args(pkg_config(&pc_dir, &["--cflags"]))
        .arg(&example)
        .args(&static_libs)
        .arg("-o")
        .arg(prefix.join("static"));
    must(&mut fixed, "building the example with pkg-config --static");
    // C++ through dlm.hpp, the same way.
    let mut cpp = Command::new("g++");
    cpp.args(["-std=c++17", "-Wall", "-Wextra", "-Werror", "-pedantic"])
        .arg(lib_root().join("examples/raii.cpp"))
        .args(pkg_config(&pc_dir, &["--cflags", "--libs"]))
        .arg("-o")
        .arg(prefix.join("raii"));
    must(&mut cpp, "building the C++ example with pkg-config");
    // The programs need the library by its SONAME, not by libdlm.so.
    assert!(needs_shared(&prefix.join("shared"), &soname));
    assert!(needs_shared(&prefix.join("raii"), &soname));
    assert!(!needs_shared(&prefix.join("static"), "libdlm"));

    // Run with no LD_LIBRARY_PATH: the rpath from dlm.pc finds libdlm.so.
    let server = Server::start();
    for (exe, says) in [
        ("shared", "released nightly-report"),
        ("static", "released nightly-report"),
        ("raii", "ok"),
    ] {
        let mut cmd = Command::new(prefix.join(exe));
        cmd.arg(server.addr().to_string())
            .env_remove("LD_LIBRARY_PATH");
        let r = run(cmd, &prefix, exe);
        assert!(
            r.status.success() && r.stdout.lines().any(|l| l == says),
            "{exe}: {}\n{}{}",
            r.status,
            r.stdout,
            r.stderr
        );
    }
    let _ = fs::remove_dir_all(&prefix);
}

/// A C client given a cluster's members (`tests/c/failover.c`) keeps its
/// auto-renewed lock while the leader is killed: the program holds the
/// lock, the leader dies here, and the program checks the lock was
/// extended through the new leader, same token, never reported lost.
#[test]
fn a_c_client_keeps_its_lock_through_a_leader_failover() {
    let program = Program {
        name: "failover",
        source: "tests/c/failover.c",
        lang: Lang::C,
        setup: Setup::Plain,
        expect: Expect::Tally,
    };
    let dir = scratch_dir("c-failover");
    let exe = build(&program, Link::Shared, &dir);
    let mut cluster = dlm_tests::cluster::Cluster::start(3, &[]);
    let leader = cluster.leader();
    let list = cluster
        .members
        .values()
        .map(|s| s.addr().to_string())
        .collect::<Vec<_>>()
        .join(",");
    let err_path = dir.join("failover.err");
    let mut child = Command::new(&exe)
        .arg(&list)
        .arg(cluster.member(leader).addr().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(
        line.starts_with("held "),
        "{line:?}\n{}",
        fs::read_to_string(&err_path).unwrap_or_default()
    );
    cluster.kill(leader);
    let new_leader = cluster.leader();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "go {}", cluster.member(new_leader).addr()).unwrap();
    drop(stdin);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let status = child.wait().unwrap();
    let stderr = fs::read_to_string(&err_path).unwrap_or_default();
    assert!(status.success(), "{status}\n{rest}\n{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    assert!(rest.contains("failover: "), "{rest}");
    assert!(rest.contains(" checks, 0 failed"), "{rest}");
    let _ = fs::remove_dir_all(&dir);
}
