//! The Rust side of the Node package's interoperability tests: stores and
//! reads values with the Rust client (crate `dlm`), so the Node tests can
//! check that both write the very same bytes.
//!
//! ```text
//! interop put ADDR ID NAME HEX [KEYHEX]   store the bytes HEX; prints the revision
//! interop get ADDR ID NAME [KEYHEX]       prints the value as hex, or "none"
//! ```
//!
//! With `KEYHEX` (64 hex digits) values are sealed with that key;
//! otherwise the table codec is used. `ID` is the owner: data entries
//! belong to the owner ID that created them, so both sides use the same.

#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use dlm::{Client, Options, SealedEncoder};

fn hex_decode(s: &str) -> Result<Vec<u8>, String> {
    if s.len() % 2 != 0 {
        return Err(format!("odd-length hex {s:?}"));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or_else(|| format!("bad hex {s:?}"))
        })
        .collect()
}

fn hex_encode(b: &[u8]) -> String {
    use std::fmt::Write as _;
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

fn client(addr: &str, id: &str, key: Option<&String>) -> Result<Client, String> {
    let mut options = Options {
        client_id: Some(id.to_owned()),
        ..Options::default()
    };
    if let Some(key) = key {
        let key = hex_decode(key)?;
        options.encoder = Arc::new(SealedEncoder::from_slice(&key).map_err(|e| e.to_string())?);
    }
    Client::connect_with(addr, options).map_err(|e| e.to_string())
}

fn run(args: &[String]) -> Result<String, String> {
    match args {
        [cmd, addr, id, name, value, rest @ ..] if cmd == "put" && rest.len() <= 1 => {
            let c = client(addr, id, rest.first())?;
            let rev = c
                .put(name, &hex_decode(value)?, Duration::from_secs(60))
                .map_err(|e| e.to_string())?;
            Ok(rev.0.to_string())
        }
        [cmd, addr, id, name, rest @ ..] if cmd == "get" && rest.len() <= 1 => {
            let c = client(addr, id, rest.first())?;
            Ok(match c.get(name).map_err(|e| e.to_string())? {
                Some(v) => hex_encode(&v.data),
                None => "none".to_owned(),
            })
        }
        _ => Err("usage: interop put ADDR ID NAME HEX [KEYHEX] | get ADDR ID NAME [KEYHEX]".into()),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("interop: {e}");
            ExitCode::FAILURE
        }
    }
}
