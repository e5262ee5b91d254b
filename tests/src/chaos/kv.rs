//! The key/value history's linearizability, checked by porcupine
//! (github.com/anishathalye/porcupine, the Go checker used by MIT 6.5840
//! and others), through the small program in tests/chaos/porcupine-check,
//! which also draws porcupine's HTML timeline with the run's faults.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use super::history::{Fault, Grant, KvOp};

/// porcupine's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Linearizable.
    Ok {
        /// Operations checked.
        ops: u64,
    },
    /// Not linearizable: the key and a counterexample.
    Illegal {
        /// The key whose history failed.
        key: String,
        /// porcupine's longest linearizable prefix and what could not follow.
        counterexample: Vec<String>,
    },
    /// The checker could not decide in time, or did not run.
    Unknown(String),
}

/// The source directory of the checker program.
pub fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("chaos/porcupine-check")
}

/// Builds the checker into `out` (a binary path) with `go build`.
pub fn build(out: &Path) -> Result<(), String> {
    let go = which_go();
    let status = Command::new(&go)
        .arg("build")
        .arg("-o")
        .arg(out)
        .arg(".")
        .current_dir(source_dir())
        .status()
        .map_err(|e| format!("cannot run {go}: {e} (is Go installed? scripts/setup.sh)"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("go build of {} failed", source_dir().display()))
    }
}

fn which_go() -> String {
    if Command::new("go").arg("version").output().is_ok() {
        "go".into()
    } else {
        "/usr/local/go/bin/go".into()
    }
}

/// The history file porcupine-check reads: the operations, and the
/// faults and lock grants as annotations of the picture.
pub fn history_json(ops: &[KvOp], faults: &[Fault], grants: &[Grant]) -> Value {
    let mut notes: Vec<Value> = faults
        .iter()
        .map(|f| {
            json!({"tag":"nemesis","start":f.start,"end":f.end,"desc":f.kind,
                   "detail":f.detail,"color":fault_color(&f.kind)})
        })
        .collect();
    for g in grants {
        notes.push(json!({"tag":format!("lock {}", g.name),"start":g.ret,
                          "end":g.lease_end.max(g.ret),"desc":format!("{}", g.token),
                          "detail":format!("{} token {}", g.owner, g.token),
                          "color":"#cfe8cf"}));
    }
    json!({"ops": ops.iter().map(KvOp::to_json).collect::<Vec<_>>(), "annotations": notes})
}

/// A colour per kind of fault (the SVG timeline uses the same).
pub fn fault_color(kind: &str) -> &'static str {
    match kind {
        "kill" => "#f4a6a6",
        "pause" => "#f7d08a",
        "partition" => "#a6c8f4",
        "clock" => "#d7b5f0",
        _ => "#dddddd",
    }
}

/// Runs the checker binary `bin` on `history` (a file), writing the
/// picture to `html`.
pub fn check(bin: &Path, history: &Path, html: &Path) -> Verdict {
    let out = match Command::new(bin).arg(history).arg(html).output() {
        Ok(o) => o,
        Err(e) => return Verdict::Unknown(format!("cannot run {}: {e}", bin.display())),
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(v) = text
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
    else {
        return Verdict::Unknown(format!(
            "no verdict: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    };
    match v["result"].as_str() {
        Some("ok") => Verdict::Ok {
            ops: v["ops"].as_u64().unwrap_or(0),
        },
        Some("illegal") => Verdict::Illegal {
            key: v["bad_key"].as_str().unwrap_or("?").to_owned(),
            counterexample: v["counterexample"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        },
        _ => Verdict::Unknown(format!("{v}")),
    }
}
