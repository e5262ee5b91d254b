//! The volatile key/value store: `Put` (with compare-and-set by
//! revision), `Get`, `Erase`, and expiry.
//!
//! Values are opaque strings: the engine never looks inside one.

use super::store::sealed::{self, Pair as _, Value as _};
use super::wheel::{Kind, Link, TimerRef};
use super::{Engine, Storage, held_by, overhead, widen};
use crate::protocol::{Response, Revision, Status};
use crate::stats::Stat;
use crate::time::Ttl;

pub(super) struct DataSlot<S: sealed::Storage> {
    pub(super) key: S::Pair,
    pub(super) value: S::Value,
    pub(super) revision: u64,
    pub(super) link: Link,
    pub(super) hash: u32,
    pub(super) ident: u16,
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

    pub(super) fn data_charge(name_and_owner: usize, value: usize) -> usize {
        name_and_owner + value + overhead::<DataSlot<S>>() + 16
    }

    pub(super) fn remove_data_unlinked(&mut self, slot: u32) {
        let d = self.timed.data.get(slot);
        let (a, b) = d.key.parts();
        self.bytes -= Self::data_charge(a.len() + b.len(), d.value.as_str().len());
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
            let charge = Self::data_charge(name.len() + owner.len(), data.len());
            if !self.fits(charge) {
                return self.no_memory();
            }
            let (Some(key), Some(value)) = (
                S::Pair::new(name.as_bytes(), owner.as_bytes()),
                S::Value::new(data),
            ) else {
                return self.no_memory();
            };
            let entry = DataSlot {
                key,
                value,
                revision: 1,
                link: Link::new(when),
                hash: h,
                ident,
            };
            let Ok(slot) = self.timed.data.insert(entry, widen(h), |d| widen(d.hash)) else {
                return self.no_memory();
            };
            self.wheel
                .insert(&mut self.timed, TimerRef::new(Kind::Data, slot));
            self.bytes += charge;
            self.stats.incr(Stat::PutNew);
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
        let old_len = d.value.as_str().len();
        if data.len() > old_len && !self.fits(data.len() - old_len) {
            return self.no_memory();
        }
        let Some(value) = S::Value::new(data) else {
            return self.no_memory();
        };
        let d = self.timed.data.get_mut(slot);
        d.value = value;
        d.revision += 1;
        let rev = d.revision;
        self.bytes = self.bytes + data.len() - old_len;
        self.wheel
            .rearm(&mut self.timed, TimerRef::new(Kind::Data, slot), when);
        self.stats.incr(Stat::PutUpdate);
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
        if !held_by(d.key.parts().1, d.ident, owner.as_bytes(), ident) {
            return self.not_owner(None);
        }
        let len = d.value.as_str().len() as u64;
        self.stats.incr(Stat::Get);
        self.stats.add(Stat::DataOut, len);
        let d = self.timed.data.get(slot);
        let mut r = Response::new(Status::Done);
        r.id = Some(owner);
        r.data = Some(d.value.as_str());
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
        self.wheel
            .remove(&mut self.timed, TimerRef::new(Kind::Data, slot));
        self.remove_data_unlinked(slot);
        self.stats.incr(Stat::Erased);
        let mut r = Response::new(Status::Done);
        r.id = Some(owner);
        r
    }
}
