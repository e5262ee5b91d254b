//! The chaos suite's checkers can fail: histories with two holders at
//! once, a token granted twice, tokens going back, a stale read and a lost
//! acknowledged write are refused; correct ones (with indeterminate
//! operations) pass. The linearizability checker is porcupine, built with
//! Go (scripts/setup.sh installs what it needs).

#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]

use std::path::PathBuf;
use std::sync::OnceLock;

use dlm_tests::chaos::history::{Grant, KvInput, KvOp, KvOutput, Write};
use dlm_tests::chaos::{kv, locks, shim};

const MS: u64 = 1_000_000;

fn grant(owner: &str, name: &str, token: u64, call: u64, ret: u64, end: u64) -> Grant {
    Grant {
        client: 0,
        owner: owner.into(),
        name: name.into(),
        token,
        call: call * MS,
        ret: ret * MS,
        lease_end: end * MS,
        wrong_extend_tokens: vec![],
        answer_owner: owner.into(),
        via: 0,
    }
}

fn write(name: &str, token: u64, at: u64, accepted: bool) -> Write {
    Write {
        client: 0,
        name: name.into(),
        token,
        at: at * MS,
        accepted,
    }
}

#[test]
fn one_holder_at_a_time_with_growing_tokens_passes() {
    let grants = [
        grant("a", "x", 10, 0, 5, 100),
        grant("b", "x", 11, 50, 120, 200),
        grant("c", "y", 12, 60, 70, 90),
    ];
    let writes = [
        write("x", 10, 20, true),
        write("x", 10, 90, true),
        write("x", 11, 150, true),
        write("y", 12, 80, true),
    ];
    let v = locks::check(&grants, &writes);
    assert!(v.ok(), "{:?}", v.violations);
    assert_eq!((v.grants, v.writes), (3, 4));
}

#[test]
fn two_overlapping_holders_are_refused() {
    // b is told it holds x while a may still count on its lease.
    let grants = [
        grant("a", "x", 10, 0, 5, 100),
        grant("b", "x", 11, 40, 50, 150),
    ];
    let writes = [write("x", 10, 30, true), write("x", 11, 60, true)];
    let v = locks::check(&grants, &writes);
    assert!(
        v.violations
            .iter()
            .any(|s| s.contains("two holders of \"x\"")),
        "{:?}",
        v.violations
    );
}

#[test]
fn a_write_from_a_holder_that_was_no_longer_current_is_refused() {
    // a writes after b's grant reached b (a's lease, as a counted it, ran
    // on: the overlap is also reported).
    let grants = [
        grant("a", "x", 10, 0, 5, 100),
        grant("b", "x", 11, 40, 50, 150),
    ];
    let writes = [write("x", 10, 70, true)];
    let v = locks::check(&grants, &writes);
    assert!(
        v.violations.iter().any(|s| s.contains("not current")),
        "{:?}",
        v.violations
    );
    // A write the resource had to refuse inside its holder's lease.
    let writes = [write("x", 11, 60, true), write("x", 10, 70, false)];
    let v = locks::check(&grants, &writes);
    assert!(
        v.violations.iter().any(|s| s.contains("refused")),
        "{:?}",
        v.violations
    );
}

#[test]
fn a_token_granted_twice_or_going_back_is_refused() {
    let grants = [
        grant("a", "x", 10, 0, 5, 10),
        grant("b", "y", 10, 20, 25, 30),
    ];
    let v = locks::check(&grants, &[]);
    assert!(
        v.violations.iter().any(|s| s.contains("granted twice")),
        "{:?}",
        v.violations
    );
    let grants = [
        grant("a", "x", 10, 0, 5, 10),
        grant("b", "x", 9, 20, 25, 30),
    ];
    let v = locks::check(&grants, &[]);
    assert!(
        v.violations.iter().any(|s| s.contains("tokens went back")),
        "{:?}",
        v.violations
    );
    // Concurrent requests may get their tokens in either order.
    let grants = [
        grant("a", "x", 11, 0, 10, 10),
        grant("b", "y", 10, 5, 12, 30),
    ];
    assert!(locks::check(&grants, &[]).ok());
    // A Locked answer that names another owner.
    let mut g = grant("a", "x", 10, 0, 5, 10);
    g.answer_owner = "b".into();
    assert!(!locks::check(&[g], &[]).ok());
}

fn porcupine() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let p = dlm_tests::target_dir().join("porcupine-check");
        kv::build(&p).unwrap();
        p
    })
    .clone()
}

fn op(
    client: u64,
    input: KvInput,
    call: u64,
    ret: u64,
    out: Option<(&str, Option<&str>, Option<u64>)>,
) -> KvOp {
    KvOp {
        client,
        key: "k".into(),
        input,
        call: call * MS,
        ret: ret * MS,
        output: match out {
            None => KvOutput::Unknown,
            Some((status, value, revision)) => KvOutput::Answer {
                status: status.into(),
                value: value.map(str::to_owned),
                revision,
            },
        },
    }
}

fn check(ops: &[KvOp]) -> kv::Verdict {
    let dir = dlm_tests::scratch_dir("porcupine");
    let hist = dir.join("h.json");
    std::fs::write(&hist, kv::history_json(ops, &[], &[]).to_string()).unwrap();
    let v = kv::check(&porcupine(), &hist, &dir.join("h.html"));
    assert!(dir.join("h.html").exists(), "no visualization");
    let _ = std::fs::remove_dir_all(&dir);
    v
}

fn put(v: &str) -> KvInput {
    KvInput::Put(v.into())
}

#[test]
fn a_linearizable_history_passes_with_indeterminate_operations() {
    let ops = [
        op(0, put("v1"), 0, 10, Some(("Done", None, Some(1)))),
        op(1, KvInput::Get, 20, 30, Some(("Done", Some("v1"), Some(1)))),
        // Timed out: it may have happened any time after it was sent.
        op(0, put("v2"), 40, 50, None),
        op(1, KvInput::Get, 60, 70, Some(("Done", Some("v2"), Some(2)))),
        op(
            1,
            KvInput::Cas("v3".into(), 2),
            80,
            90,
            Some(("Done", None, Some(3))),
        ),
        op(
            0,
            KvInput::Cas("v4".into(), 2),
            100,
            110,
            Some(("Conflict", None, Some(3))),
        ),
        op(0, KvInput::Erase, 120, 130, Some(("Done", None, None))),
        op(1, KvInput::Get, 140, 150, Some(("NotFound", None, None))),
        // Concurrent: either order.
        op(0, put("v5"), 160, 200, Some(("Done", None, Some(1)))),
        op(1, KvInput::Get, 170, 180, Some(("NotFound", None, None))),
    ];
    assert!(
        matches!(check(&ops), kv::Verdict::Ok { ops: 10 }),
        "{:?}",
        check(&ops)
    );
}

#[test]
fn a_stale_read_is_refused() {
    let ops = [
        op(0, put("v1"), 0, 10, Some(("Done", None, Some(1)))),
        op(0, put("v2"), 20, 30, Some(("Done", None, Some(2)))),
        op(1, KvInput::Get, 40, 50, Some(("Done", Some("v1"), Some(1)))),
    ];
    match check(&ops) {
        kv::Verdict::Illegal {
            key,
            counterexample,
        } => {
            assert_eq!(key, "k");
            assert!(
                counterexample
                    .iter()
                    .any(|l| l.contains("get(k) -> Done v1")),
                "{counterexample:?}"
            );
        }
        other => panic!("a stale read passed: {other:?}"),
    }
}

#[test]
fn a_lost_acknowledged_write_is_refused() {
    let ops = [
        op(0, put("v1"), 0, 10, Some(("Done", None, Some(1)))),
        op(1, KvInput::Get, 40, 50, Some(("NotFound", None, None))),
    ];
    assert!(matches!(check(&ops), kv::Verdict::Illegal { .. }));
}

#[test]
fn sync_records_name_the_last_synced_length_per_file() {
    let m = shim::synced_lengths("/d/a.raftlog\t10\n/d/b\t5\n/d/a.raftlog\t42\ngarbage\n");
    assert_eq!(m.get(&PathBuf::from("/d/a.raftlog")), Some(&42));
    assert_eq!(m.get(&PathBuf::from("/d/b")), Some(&5));
    assert_eq!(m.len(), 2);
}

#[test]
fn the_shim_records_synced_lengths_and_shifts_the_wall_clock() {
    let dir = dlm_tests::scratch_dir("shim");
    let so = shim::build(&dir.join("shim.so")).unwrap();
    let data = dir.join("member");
    std::fs::create_dir_all(&data).unwrap();
    // dd writes 3000 bytes and fsyncs them (conv=fsync), then 1000 more
    // with oflag=append and no sync.
    let file = data.join("f");
    let run = |args: &[&str]| {
        let st = std::process::Command::new("dd")
            .args(args)
            .env("LD_PRELOAD", &so)
            .env("DLM_CHAOS_SYNC_LOG", shim::sync_log(&data))
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
    };
    let of = format!("of={}", file.display());
    run(&["if=/dev/zero", &of, "bs=1000", "count=3", "conv=fsync"]);
    run(&[
        "if=/dev/zero",
        &of,
        "bs=1000",
        "count=1",
        "oflag=append",
        "conv=notrunc",
    ]);
    let record = std::fs::read_to_string(shim::sync_log(&data)).unwrap();
    let synced = shim::synced_lengths(&record);
    assert_eq!(synced.get(&file), Some(&3000), "{record}");
    let mut rng = dlm_tests::chaos::rng::Rng::new(7);
    let cut = shim::cut_unsynced_tail(&data, &mut rng).unwrap();
    let len = std::fs::metadata(&file).unwrap().len();
    assert!(
        (3000..4000).contains(&len) && cut == 4000 - len,
        "{len} {cut}"
    );
    // The wall clock, a day ahead; the monotonic one untouched.
    shim::init_clock(&data).unwrap();
    shim::jump_clock(&data, 86_400).unwrap();
    let out = std::process::Command::new("date")
        .arg("+%s")
        .env("LD_PRELOAD", &so)
        .env("DLM_CHAOS_CLOCK", shim::clock_file(&data))
        .output()
        .unwrap();
    let shifted: i64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    assert!((shifted - now - 86_400).abs() < 60, "{shifted} vs {now}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The nemesis's membership changes: a retry refused as already done
/// counts as done only after a try whose answer was lost (a leader that
/// removed itself stopped before answering, say); otherwise the refusal is
/// the nemesis being wrong about the membership, reported as a failure.
#[test]
fn a_membership_change_refused_as_done_counts_only_after_a_lost_answer() {
    use dlm_tests::chaos::members::{Change, Settled, answer_lost, settled};
    let lost = "dlm: server unavailable: the connection failed after the request was sent: \
                it may have been applied, and without a request ID it is not sent again"
        .to_owned();
    let timeout = "dlm: server unavailable: no answer within the timeout".to_owned();
    let refused = "dlm: bad request: another membership change is in progress".to_owned();
    assert!(answer_lost(&lost) && answer_lost(&timeout) && !answer_lost(&refused));
    let not_member = "dlm: bad request: not a member";
    let already = "dlm: bad request: already a member";
    assert_eq!(settled(Change::Remove, true, "", &[]), Settled::Done);
    // The first try's answer lost: a retry refused as done says it applied.
    assert_eq!(
        settled(
            Change::Remove,
            false,
            not_member,
            std::slice::from_ref(&lost)
        ),
        Settled::AppliedEarlier
    );
    assert_eq!(
        settled(Change::Add, false, already, &[refused.clone(), timeout]),
        Settled::AppliedEarlier
    );
    // Without a lost answer before it, the refusal is a failure.
    assert_eq!(
        settled(Change::Remove, false, not_member, &[]),
        Settled::Failed
    );
    assert_eq!(
        settled(Change::Remove, false, not_member, &[refused]),
        Settled::Failed
    );
    // The wrong refusal for the change, or a leader's "not applied yet"
    // variant, is no proof either.
    assert_eq!(
        settled(Change::Add, false, not_member, std::slice::from_ref(&lost)),
        Settled::Failed
    );
    let pending = "dlm: bad request: not a member as far as this leader has applied its log \
                   (a membership change may still be pending): try again";
    assert_eq!(
        settled(Change::Remove, false, pending, &[lost]),
        Settled::Failed
    );
}
