//! Identities: named secrets in a directory of `<Name>.cfg` files
//! (PROTOCOL.md section 6).
//!
//! Each file is `{"Identity": "<secret of at least 1023 characters>",
//! "MaxSize": <bytes, optional>, "Admin": <true, optional>}`. `Admin` (a
//! dlm extension, ignored by JackrabbitDLM, which reads only the other two)
//! makes the identity an administrator: it may list the lock table, look
//! at a lock's queue and revoke locks (the `Admin` action, the dashboard). The directory is read at start (and again
//! on `SIGHUP`). A request's secret is compared in constant time, and a
//! failure never says whether the name exists: an unknown name is compared
//! against a dummy secret so it costs the same.
//!
//! Secrets never reach a log line: [`Identities`] has no `Debug` output of
//! them and errors name files, not contents.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use dlm_core::engine::Engine;
use dlm_core::limits::DEFAULT_MAX_DATA;
use serde::{Deserialize, Serialize};

/// The shortest secret JackrabbitDLM accepts.
pub const MIN_SECRET: usize = 1023;
/// Length of the secrets `identity new` creates.
pub const NEW_SECRET: usize = 1024;

#[derive(Deserialize, Serialize)]
struct IdentityFile {
    #[serde(rename = "Identity")]
    identity: String,
    #[serde(rename = "MaxSize", default, skip_serializing_if = "Option::is_none")]
    max_size: Option<u64>,
    #[serde(rename = "Admin", default, skip_serializing_if = "std::ops::Not::not")]
    admin: bool,
}

struct Entry {
    secret: Box<[u8]>,
    max_data: usize,
    admin: bool,
}

/// The loaded identities.
#[derive(Default)]
pub struct Identities {
    by_name: HashMap<String, Entry>,
    dummy: Box<[u8]>,
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identities")
            .field("count", &self.by_name.len())
            .finish_non_exhaustive()
    }
}

/// Whether `name` may be an identity name (it becomes a file name).
/// (The protocol's rule, which a value's `Readers` are held to as well.)
pub fn valid_name(name: &str) -> bool {
    dlm_core::protocol::valid_identity_name(name)
}

/// Compares in time that depends only on the lengths.
fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    let mut diff = u8::from(left.len() != right.len());
    for i in 0..left.len().max(right.len()) {
        let l = left.get(i).copied().unwrap_or(0);
        let r = right.get(i).copied().unwrap_or(0xFF);
        diff |= l ^ r;
    }
    // Keep the optimiser from short-circuiting the loop above.
    std::hint::black_box(diff) == 0
}

impl Identities {
    /// No identities: every request with `Name` fails authentication.
    pub fn none() -> Self {
        Self {
            by_name: HashMap::new(),
            dummy: vec![0u8; NEW_SECRET].into_boxed_slice(),
        }
    }

    /// Reads every `<Name>.cfg` in `dir` and registers it with the engine.
    /// Invalid files are skipped and returned as warnings (file names only,
    /// never secrets). A file readable by every user is refused (its
    /// secret is no secret); one readable by its group is loaded with a
    /// warning.
    ///
    /// On a reload, pass the identities loaded before as `previous`: an
    /// identity whose file is now broken (unreadable, malformed, too
    /// short, too open) keeps its previous entry, with a warning, so a
    /// botched edit never locks its owner out. A file that is gone drops
    /// its identity.
    pub fn load<S: dlm_core::engine::Storage>(
        dir: &Path,
        engine: &mut Engine<S>,
        max_data_default: usize,
        previous: Option<&Self>,
    ) -> io::Result<(Self, Vec<String>)> {
        let mut ids = Self::none();
        let mut warnings = Vec::new();
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".cfg"))
            else {
                continue;
            };
            if !valid_name(name) {
                warnings.push(format!("{}: not a valid identity name", path.display()));
                continue;
            }
            let mut keep_previous = |why: String, warnings: &mut Vec<String>| match previous
                .and_then(|p| p.by_name.get(name))
            {
                Some(old) => {
                    warnings.push(format!(
                        "{}: {why}; keeping the identity loaded before",
                        path.display()
                    ));
                    ids.by_name.insert(
                        name.to_owned(),
                        Entry {
                            secret: old.secret.clone(),
                            max_data: old.max_data,
                            admin: old.admin,
                        },
                    );
                }
                None => warnings.push(format!("{}: {why}", path.display())),
            };
            match permission_problem(&path) {
                Some(Openness::World) => {
                    keep_previous(
                        "readable by every user (chmod 600 it); refused".to_owned(),
                        &mut warnings,
                    );
                    continue;
                }
                Some(Openness::Group) => warnings.push(format!(
                    "{}: readable by its group; chmod 600 is safer",
                    path.display()
                )),
                None => {}
            }
            let file: IdentityFile = match fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
            {
                Ok(f) => f,
                Err(e) => {
                    keep_previous(e, &mut warnings);
                    continue;
                }
            };
            if file.identity.chars().count() < MIN_SECRET {
                keep_previous(
                    format!("secret shorter than {MIN_SECRET} characters"),
                    &mut warnings,
                );
                continue;
            }
            let max = file
                .max_size
                .and_then(|m| usize::try_from(m).ok())
                .unwrap_or(max_data_default);
            let Ok(_) = engine.register_identity(name, max) else {
                warnings.push(format!("{}: too many identities", path.display()));
                continue;
            };
            ids.by_name.insert(
                name.to_owned(),
                Entry {
                    secret: file.identity.into_bytes().into_boxed_slice(),
                    max_data: max,
                    admin: file.admin,
                },
            );
        }
        Ok((ids, warnings))
    }

    /// Number of identities.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Whether `secret` is identity `name`'s secret (compared in constant
    /// time; an unknown name costs the same as a wrong secret).
    pub fn verify(&self, name: &str, secret: &str) -> bool {
        match self.by_name.get(name) {
            Some(e) => constant_time_eq(&e.secret, secret.as_bytes()),
            None => {
                let _ = constant_time_eq(&self.dummy, secret.as_bytes());
                false
            }
        }
    }

    /// Whether `secret` is administrator `name`'s secret: [`verify`](Self::verify)
    /// for an identity whose file says `"Admin": true`. Costs the same
    /// whether the name exists, is no administrator, or the secret is wrong.
    pub fn verify_admin(&self, name: &str, secret: &str) -> bool {
        let ok = self.verify(name, secret);
        ok && self.is_admin(name)
    }

    /// Whether identity `name` is an administrator (says nothing of a
    /// request's secret: verify that first).
    pub fn is_admin(&self, name: &str) -> bool {
        self.by_name.get(name).is_some_and(|e| e.admin)
    }

    /// Every identity's name and `MaxSize` (for a cluster's leader to
    /// register them through the log).
    pub fn limits(&self) -> impl Iterator<Item = (&str, usize)> {
        self.by_name.iter().map(|(n, e)| (n.as_str(), e.max_data))
    }
}

/// Who besides the owner may read a file.
enum Openness {
    Group,
    World,
}

fn permission_problem(path: &Path) -> Option<Openness> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(path).ok()?.permissions().mode();
        if mode & 0o004 != 0 {
            return Some(Openness::World);
        }
        if mode & 0o040 != 0 {
            return Some(Openness::Group);
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    None
}

/// Creates `<dir>/<name>.cfg` with a fresh secret of [`NEW_SECRET`]
/// URL-safe characters from the OS RNG, readable by the owner only,
/// in a directory created private (0700) if it does not exist.
/// Refuses to overwrite an existing file.
/// With `admin`, the identity is an administrator (`"Admin": true`).
pub fn create(dir: &Path, name: &str, max_size: Option<u64>, admin: bool) -> io::Result<PathBuf> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    if !valid_name(name) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "identity names are letters, digits, '-', '_' and '.', not starting with '.'",
        ));
    }
    let mut raw = [0u8; NEW_SECRET];
    getrandom::fill(&mut raw).map_err(io::Error::other)?;
    let secret: String = raw
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(b & 63)]))
        .collect();
    let body = serde_json::to_string(&IdentityFile {
        identity: secret,
        max_size: max_size.or(Some(DEFAULT_MAX_DATA as u64)),
        admin,
    })
    .map_err(io::Error::other)?;
    // The directory holds secrets: only its owner may list or change it,
    // whatever the umask (created 0700; an existing one is left as it is).
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir)?;
    let path = dir.join(format!("{name}.cfg"));
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut f = options.open(&path)?;
    f.write_all(body.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dlm_core::engine::Config;

    #[cfg(unix)]
    fn chmod(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Regression (issue 10): a broken file on reload keeps the identity
    /// loaded before; a world-readable file is refused; `identity new`
    /// makes a private directory whatever the umask.
    #[cfg(unix)]
    #[test]
    fn reload_keeps_identities_whose_file_broke() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("dlm-ident-reload-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        // SAFETY: umask only changes this process's file creation mask.
        #[allow(unsafe_code)]
        let old = unsafe { libc::umask(0) };
        let made = create(&dir.join("sub"), "alice", None, false);
        // SAFETY: as above, restoring it.
        #[allow(unsafe_code)]
        unsafe {
            libc::umask(old);
        }
        let alice = made.unwrap();
        let mode = fs::metadata(dir.join("sub")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "identity directory mode {mode:o}");
        let secret = serde_json::from_str::<IdentityFile>(&fs::read_to_string(&alice).unwrap())
            .unwrap()
            .identity;
        let mut engine = Engine::new(Config::default());
        let sub = dir.join("sub");
        let (first, warnings) =
            Identities::load(&sub, &mut engine, DEFAULT_MAX_DATA, None).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(first.verify("alice", &secret));

        fs::write(&alice, "{ broken").unwrap();
        chmod(&alice, 0o600);
        let (second, warnings) =
            Identities::load(&sub, &mut engine, DEFAULT_MAX_DATA, Some(&first)).unwrap();
        assert_eq!(
            second.verify("alice", &secret),
            first.verify("alice", &secret)
        );
        assert!(
            warnings[0].contains("keeping the identity loaded before"),
            "{warnings:?}"
        );
        assert!(!warnings[0].contains(&secret));

        fs::write(&alice, format!(r#"{{"Identity":"{secret}"}}"#)).unwrap();
        chmod(&alice, 0o644);
        let (third, warnings) =
            Identities::load(&sub, &mut engine, DEFAULT_MAX_DATA, None).unwrap();
        assert!(!third.verify("alice", &secret));
        assert!(
            warnings[0].contains("readable by every user"),
            "{warnings:?}"
        );
        chmod(&alice, 0o640);
        let (fourth, warnings) =
            Identities::load(&sub, &mut engine, DEFAULT_MAX_DATA, None).unwrap();
        assert!(fourth.verify("alice", &secret));
        assert!(warnings[0].contains("group"), "{warnings:?}");

        fs::remove_file(&alice).unwrap();
        let (fifth, _) =
            Identities::load(&sub, &mut engine, DEFAULT_MAX_DATA, Some(&fourth)).unwrap();
        assert!(fifth.is_empty(), "a deleted file drops its identity");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn names_cannot_escape_the_directory() {
        assert!(valid_name("alice"));
        assert!(valid_name("svc-1.prod_2"));
        for bad in ["", "../x", "a/b", ".hidden", "a b", "é"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"\xff"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn create_then_load_then_verify() {
        let dir = std::env::temp_dir().join(format!("dlm-ident-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let path = create(&dir, "alice", Some(1 << 20), false).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(
            create(&dir, "alice", None, false).is_err(),
            "must not overwrite"
        );
        fs::write(dir.join("short.cfg"), r#"{"Identity":"tooshort"}"#).unwrap();
        fs::write(dir.join("broken.cfg"), "{").unwrap();
        let text = fs::read_to_string(&path).unwrap();
        let file: IdentityFile = serde_json::from_str(&text).unwrap();
        assert_eq!(file.identity.len(), NEW_SECRET);
        assert_eq!(file.max_size, Some(1 << 20));

        let mut engine = Engine::new(Config::default());
        let (ids, warnings) = Identities::load(&dir, &mut engine, DEFAULT_MAX_DATA, None).unwrap();
        assert_eq!(ids.len(), 1);
        assert_eq!(warnings.len(), 2);
        assert!(warnings.iter().all(|w| !w.contains("tooshort")));
        assert!(ids.verify("alice", &file.identity));
        let id = engine.identity("alice").unwrap();
        assert_eq!(engine.identity("alice"), Some(id));
        assert!(!ids.verify("alice", "wrong"));
        assert!(!ids.verify("bob", &file.identity));
        assert!(!ids.verify_admin("alice", &file.identity), "not an admin");
        assert!(!text.contains("Admin"), "no Admin field unless asked");

        let root = create(&dir, "root", None, true).unwrap();
        let file: IdentityFile = serde_json::from_str(&fs::read_to_string(&root).unwrap()).unwrap();
        assert!(file.admin);
        let (ids, _) = Identities::load(&dir, &mut engine, DEFAULT_MAX_DATA, None).unwrap();
        assert!(ids.verify_admin("root", &file.identity));
        assert!(!ids.verify_admin("root", "wrong"));
        assert!(ids.is_admin("root") && !ids.is_admin("alice") && !ids.is_admin("nobody"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
