//! The volatile key/value store: `Put` (with compare-and-set by
//! revision), `Get`, `Erase`, and expiry.
//!
//! Values are opaque strings: the engine never looks inside one. A value
//! is read by its owner, and by whoever its [`Readers`] admit (PROTOCOL.md
//! section 8, "Shared values"); it is written (replaced, erased) by its
//! owner alone. The name is the key, whoever owns it: a reader names the
//! value it wants by its `FileName`, exactly as its owner does.

use super::store::sealed::{self, Pair as _, Value as _};
use super::watch::{Subject, What};
use super::wheel::{Kind, Link, TimerRef};
use super::{Engine, Storage, as_str, held_by, overhead, widen};
use crate::protocol::{ReaderNames, Readers, Response, Revision, Status};
use crate::stats::Stat;
use crate::time::Ttl;

pub(super) struct DataSlot<S: sealed::Storage> {
    pub(super) key: S::Pair,
    /// The value, followed by its readers' names if they are named (one
    /// string, so a shared value costs no second allocation).
    pub(super) stored: S::Value,
    pub(super) revision: u64,
    pub(super) link: Link,
    pub(super) hash: u32,
    pub(super) ident: u16,
    /// Who besides the owner may read it: [`OWNER_ONLY`], [`ANY_READER`],
    /// or the length of the names that end `stored` (at most 32 names of
    /// at most 255 bytes and their commas: 8,191). A `u16` in what was the
    /// slot's padding, so sharing costs an owner-only value nothing.
    pub(super) readers: u16,
}

/// [`DataSlot::readers`] of a value its owner alone reads.
pub(super) const OWNER_ONLY: u16 = 0;
/// [`DataSlot::readers`] of a value any client reads.
pub(super) const ANY_READER: u16 = u16::MAX;

impl<S: sealed::Storage> DataSlot<S> {
    /// The value and its readers as stored, or `None` if they do not fit.
    pub(super) fn store(data: &str, readers: Readers<'_>) -> Option<(S::Value, u16)> {
        Some(match readers {
            Readers::Owner => (S::Value::new(data)?, OWNER_ONLY),
            Readers::Any => (S::Value::new(data)?, ANY_READER),
            Readers::Named(names) => {
                let len = u16::try_from(names.as_str().len())
                    .ok()
                    .filter(|&l| l != OWNER_ONLY && l != ANY_READER)?;
                (S::Value::join(data, names.as_str())?, len)
            }
        })
    }

    /// Where the value ends in `stored`.
    fn split(&self) -> usize {
        let len = self.stored.as_str().len();
        match self.readers {
            OWNER_ONLY | ANY_READER => len,
            names => len.saturating_sub(usize::from(names)),
        }
    }

    /// The value.
    pub(super) fn value(&self) -> &str {
        self.stored.as_str().get(..self.split()).unwrap_or_default()
    }

    /// Who besides its owner may read it.
    pub(super) fn readers(&self) -> Readers<'_> {
        match self.readers {
            OWNER_ONLY => Readers::Owner,
            ANY_READER => Readers::Any,
            _ => Readers::Named(ReaderNames::trusted(
                self.stored.as_str().get(self.split()..).unwrap_or_default(),
            )),
        }
    }
}

impl<S: Storage> Engine<S> {
    pub(super) fn find_data(&self, name: &str) -> (u32, Option<u32>) {
        let h = self.hasher.bytes(name.as_bytes());
        let found = self
            .timed
            .data
            .find(widen(h), |d| d.key.parts().0 == name.as_bytes());
        (h, found)
    }

    /// Bytes charged for a value: its name and owner, its value and its
    /// readers' names (`value`), and the slot.
    pub(super) fn data_charge(name_and_owner: usize, value: usize) -> usize {
        name_and_owner + value + overhead::<DataSlot<S>>() + 16
    }

    /// The bytes of value `d` that [`data_charge`](Self::data_charge)
    /// counts as its value: the value and its readers' names.
    pub(super) fn value_bytes(d: &DataSlot<S>) -> usize {
        d.stored.as_str().len()
    }

    pub(super) fn remove_data_unlinked(&mut self, slot: u32) {
        let d = self.timed.data.get(slot);
        let (a, b) = d.key.parts();
        self.bytes -= Self::data_charge(a.len() + b.len(), Self::value_bytes(d));
        let h = d.hash;
        self.timed.data.remove(slot, widen(h));
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn put<'s>(
        &mut self,
        now: u64,
        name: &str,
        owner: &'s str,
        ident: u16,
        ttl: Ttl,
        data: &str,
        revision: Option<Revision>,
        readers: Readers<'_>,
    ) -> Response<'s> {
        let (h, found) = self.find_data(name);
        let when = now + ttl.as_millis() + self.slack;
        let done = |rev: u64| {
            let mut r = Response::new(Status::Done);
            r.id = Some(owner);
            r.revision = Some(Revision(rev));
            r.expire = Some(ttl);
            r
        };
        let conflict = |this: &mut Self, rev: u64| {
            this.stats.incr(Stat::Conflict);
            let mut r = Response::new(Status::Conflict);
            r.revision = Some(Revision(rev));
            r
        };
        let Some(slot) = found else {
            if revision.is_some_and(|r| r.0 != 0) {
                return conflict(self, 0);
            }
            let charge =
                Self::data_charge(name.len() + owner.len(), data.len() + readers.stored_len());
            if !self.fits(charge) {
                return self.no_memory();
            }
            let (Some(key), Some((stored, tag))) = (
                S::Pair::new(name.as_bytes(), owner.as_bytes()),
                DataSlot::<S>::store(data, readers),
            ) else {
                return self.no_memory();
            };
            let entry = DataSlot {
                key,
                stored,
                revision: 1,
                link: Link::new(when),
                hash: h,
                ident,
                readers: tag,
            };
            let Ok(slot) = self.timed.data.insert(entry, widen(h), |d| widen(d.hash)) else {
                return self.no_memory();
            };
            self.wheel
                .insert(&mut self.timed, TimerRef::new(Kind::Data, slot));
            self.bytes += charge;
            self.stats.incr(Stat::PutNew);
            self.feed.note_readable(
                What::Put,
                Subject::Data,
                name.as_bytes(),
                owner.as_bytes(),
                ident,
                None,
                Some((data, 1)),
                readers,
            );
            self.stats.add(Stat::DataIn, data.len() as u64);
            return done(1);
        };
        let d = self.timed.data.get(slot);
        if !held_by(d.key.parts().1, d.ident, owner.as_bytes(), ident) {
            return self.not_owner(None);
        }
        if revision.is_some_and(|r| r.0 != d.revision) {
            let current = d.revision;
            return conflict(self, current);
        }
        let old_len = Self::value_bytes(d);
        let new_len = data.len() + readers.stored_len();
        if new_len > old_len && !self.fits(new_len - old_len) {
            return self.no_memory();
        }
        let Some((stored, tag)) = DataSlot::<S>::store(data, readers) else {
            return self.no_memory();
        };
        let d = self.timed.data.get_mut(slot);
        d.stored = stored;
        d.readers = tag;
        d.revision += 1;
        let rev = d.revision;
        self.bytes = self.bytes + new_len - old_len;
        self.wheel
            .rearm(&mut self.timed, TimerRef::new(Kind::Data, slot), when);
        self.stats.incr(Stat::PutUpdate);
        self.feed.note_readable(
            What::Put,
            Subject::Data,
            name.as_bytes(),
            owner.as_bytes(),
            ident,
            None,
            Some((data, rev)),
            readers,
        );
        self.stats.add(Stat::DataIn, data.len() as u64);
        done(rev)
    }

    pub(super) fn get<'s>(
        &'s mut self,
        _now: u64,
        name: &str,
        owner: &'s str,
        ident: u16,
    ) -> Response<'s> {
        let (_, found) = self.find_data(name);
        let Some(slot) = found else {
            self.stats.incr(Stat::GetNF);
            return Response::new(Status::NotFound);
        };
        let d = self.timed.data.get(slot);
        let own = held_by(d.key.parts().1, d.ident, owner.as_bytes(), ident);
        // A caller that is not the owner reads only what the value's
        // readers admit; anyone else is refused exactly as before shared
        // values (`NotOwner`): it cannot tell a shared value from another.
        if !own && !d.readers().admits(self.ident_name(ident)) {
            return self.not_owner(None);
        }
        let len = d.value().len() as u64;
        self.stats.incr(Stat::Get);
        if !own {
            self.stats.incr(Stat::GetShared);
        }
        self.stats.add(Stat::DataOut, len);
        let d = self.timed.data.get(slot);
        let mut r = Response::new(Status::Done);
        // The value's owner: the caller itself (its own `ID`, the same
        // bytes), or whose value it read.
        r.id = Some(if own { owner } else { as_str(d.key.parts().1) });
        r.data = Some(d.value());
        r.revision = Some(Revision(d.revision));
        r.expire = Some(self.remaining(&d.link));
        r
    }

    pub(super) fn erase<'s>(&mut self, name: &str, owner: &'s str, ident: u16) -> Response<'s> {
        let (_, found) = self.find_data(name);
        let Some(slot) = found else {
            self.stats.incr(Stat::EraseNF);
            return Response::new(Status::NotFound);
        };
        let d = self.timed.data.get(slot);
        if !held_by(d.key.parts().1, d.ident, owner.as_bytes(), ident) {
            return self.not_owner(None);
        }
        self.feed.note_readable(
            What::Erased,
            Subject::Data,
            name.as_bytes(),
            owner.as_bytes(),
            ident,
            None,
            None,
            d.readers(),
        );
        self.wheel
            .remove(&mut self.timed, TimerRef::new(Kind::Data, slot));
        self.remove_data_unlinked(slot);
        self.stats.incr(Stat::Erased);
        let mut r = Response::new(Status::Done);
        r.id = Some(owner);
        r
    }
}

#[cfg(all(test, feature = "alloc", target_pointer_width = "64"))]
mod tests {
    use super::DataSlot;
    use crate::engine::Heap;

    /// Readers live in what was the slot's padding: a value costs the
    /// same bytes per entry, shared or not, as before shared values.
    #[test]
    fn a_slot_did_not_grow() {
        assert_eq!(core::mem::size_of::<DataSlot<Heap>>(), 56);
    }
}
