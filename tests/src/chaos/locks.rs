//! The mutual-exclusion checker: from the grants the clients received and
//! the writes the guarded resource saw, proves (or refutes) that
//!
//! 1. no token was granted to two owners;
//! 2. tokens grew strictly with grant order: a grant answered before
//!    another was asked for has the smaller token (tokens are one counter
//!    for every name);
//! 3. no two holders of one name could count on their leases at once: the
//!    windows from receiving `Locked` to the lease's end (measured from
//!    the *send* time of the last `Lock`, on the machine's one monotonic
//!    clock, so they are what a careful holder may rely on) never overlap;
//! 4. every write the resource accepted came from a holder whose grant was
//!    current: inside that holder's window, and no grant with a higher
//!    token of that name had been received before it;
//! 5. the resource never had to refuse a holder writing inside its own
//!    window (a refusal means a newer grant's holder had already written:
//!    two holders at once).

#![allow(clippy::cast_precision_loss)] // seconds for people to read

use std::collections::BTreeMap;

use super::history::{Grant, Write};

/// The checker's verdict.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Grants checked.
    pub grants: usize,
    /// Writes checked (accepted ones).
    pub writes: usize,
    /// What is wrong, one sentence each, at most a few dozen.
    pub violations: Vec<String>,
}

impl Verdict {
    /// Whether every property held.
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }

    fn fail(&mut self, v: String) {
        if self.violations.len() < 50 {
            self.violations.push(v);
        }
    }
}

fn ms(ns: u64) -> String {
    format!("{:.3}s", ns as f64 / 1e9)
}

/// Checks `grants` and `writes` (any order).
pub fn check(grants: &[Grant], writes: &[Write]) -> Verdict {
    let mut v = Verdict {
        grants: grants.len(),
        writes: writes.iter().filter(|w| w.accepted).count(),
        violations: Vec::new(),
    };

    // 1. One owner per token (and one name).
    let mut by_token: BTreeMap<u64, &Grant> = BTreeMap::new();
    for g in grants {
        if let Some(prev) = by_token.get(&g.token) {
            if prev.owner != g.owner || prev.name != g.name {
                v.fail(format!(
                    "token {} granted twice: to {} on {:?} (at {}) and to {} on {:?} (at {})",
                    g.token,
                    prev.owner,
                    prev.name,
                    ms(prev.ret),
                    g.owner,
                    g.name,
                    ms(g.ret)
                ));
            }
        } else {
            by_token.insert(g.token, g);
        }
        if g.answer_owner != g.owner {
            v.fail(format!(
                "{} was answered Locked (token {}) for owner {:?}",
                g.owner, g.token, g.answer_owner
            ));
        }
        for t in &g.wrong_extend_tokens {
            v.fail(format!(
                "an extension of token {} by {} was answered Locked with token {t}",
                g.token, g.owner
            ));
        }
    }

    // 2. Real-time order implies token order: sweep the grants by call
    // time, keeping the highest token among those answered before it.
    let mut by_ret: Vec<&Grant> = grants.iter().collect();
    by_ret.sort_by_key(|g| g.ret);
    let mut by_call: Vec<&Grant> = grants.iter().collect();
    by_call.sort_by_key(|g| g.call);
    let mut i = 0;
    let mut highest: Option<&Grant> = None;
    for g in by_call {
        while i < by_ret.len() && by_ret[i].ret < g.call {
            if highest.is_none_or(|h| by_ret[i].token > h.token) {
                highest = Some(by_ret[i]);
            }
            i += 1;
        }
        if let Some(h) = highest
            && h.token >= g.token
            && h.owner != g.owner
        {
            v.fail(format!(
                "tokens went back: {} got {} at {}, then {} asked at {} and got {}",
                h.owner,
                h.token,
                ms(h.ret),
                g.owner,
                ms(g.call),
                g.token
            ));
        }
    }

    // 3. Disjoint windows per name.
    let mut names: BTreeMap<&str, Vec<&Grant>> = BTreeMap::new();
    for g in grants {
        if g.lease_end > g.ret {
            names.entry(&g.name).or_default().push(g);
        }
    }
    for list in names.values_mut() {
        list.sort_by_key(|g| g.ret);
        let mut open: Option<&Grant> = None;
        for g in list.iter() {
            if let Some(o) = open
                && o.lease_end > g.ret
                && o.token != g.token
            {
                v.fail(format!(
                    "two holders of {:?}: {} (token {}) could count on it from {} to {}, \
                     and {} (token {}) from {} to {}",
                    g.name,
                    o.owner,
                    o.token,
                    ms(o.ret),
                    ms(o.lease_end),
                    g.owner,
                    g.token,
                    ms(g.ret),
                    ms(g.lease_end)
                ));
            }
            if open.is_none_or(|o| g.lease_end > o.lease_end) {
                open = Some(g);
            }
        }
    }

    // 4 and 5. Writes.
    let mut received: BTreeMap<&str, Vec<(u64, u64)>> = BTreeMap::new();
    for g in grants {
        received.entry(&g.name).or_default().push((g.ret, g.token));
    }
    for w in writes {
        let Some(g) = by_token.get(&w.token) else {
            v.fail(format!(
                "a write with token {} on {:?} at {} from a grant nobody received",
                w.token,
                w.name,
                ms(w.at)
            ));
            continue;
        };
        let inside = g.ret <= w.at && w.at < g.lease_end && g.name == w.name;
        if !w.accepted {
            if inside {
                v.fail(format!(
                    "the resource refused {} (token {}) at {} inside its lease: a newer holder \
                     of {:?} had written already",
                    g.owner,
                    w.token,
                    ms(w.at),
                    w.name
                ));
            }
            continue;
        }
        if !inside {
            v.fail(format!(
                "the resource accepted token {} on {:?} at {}, outside its holder's lease ({} to {})",
                w.token,
                w.name,
                ms(w.at),
                ms(g.ret),
                ms(g.lease_end)
            ));
        }
        if let Some((ret, newer)) = received
            .get(w.name.as_str())
            .and_then(|l| l.iter().find(|(ret, t)| *t > w.token && *ret < w.at))
        {
            v.fail(format!(
                "the resource accepted token {} on {:?} at {}, but token {newer} had been \
                 granted (received at {}): not current",
                w.token,
                w.name,
                ms(w.at),
                ms(*ret)
            ));
        }
    }
    v
}
