//! Identities the host verified: their names and `MaxSize`, numbered so
//! entries carry a small tag instead of a name.
//!
//! Never sees a secret: the host checks those.

use core::num::NonZeroU16;

use super::store::sealed::{self, Pair as _};
use super::{Engine, Full, IdentityId, Storage, widen};

pub(super) struct IdentitySlot<S: sealed::Storage> {
    pub(super) name: S::Pair,
    pub(super) max_data: usize,
    pub(super) hash: u32,
}

impl<S: Storage> Engine<S> {
    /// Registers an identity by name (or updates its `MaxSize`), returning
    /// the handle the host passes as [`Principal::Identity`](super::Principal::Identity) once it has
    /// verified a request's secret. The engine never sees secrets.
    pub fn register_identity(&mut self, name: &str, max_data: usize) -> Result<IdentityId, Full> {
        let h = self.hasher.bytes(name.as_bytes());
        if let Some(slot) = self
            .identities
            .find(widen(h), |i| i.name.parts().0 == name.as_bytes())
        {
            self.identities.get_mut(slot).max_data = max_data;
            return Self::identity_id(slot);
        }
        if self.identities.slots.len() >= usize::from(u16::MAX) - 1 {
            return Err(Full);
        }
        let name = S::Pair::new(name.as_bytes(), b"").ok_or(Full)?;
        let slot = self
            .identities
            .insert(
                IdentitySlot {
                    name,
                    max_data,
                    hash: h,
                },
                widen(h),
                |i| widen(i.hash),
            )
            .map_err(|_| Full)?;
        Self::identity_id(slot)
    }

    pub(super) fn identity_id(slot: u32) -> Result<IdentityId, Full> {
        u16::try_from(slot + 1)
            .ok()
            .and_then(NonZeroU16::new)
            .map(IdentityId)
            .ok_or(Full)
    }

    /// The registered identity with this [number](IdentityId::number).
    pub fn identity_by_number(&self, number: u16) -> Option<IdentityId> {
        let slot = u32::from(number).checked_sub(1)?;
        match self.identities.slots.get(slot as usize) {
            Some(Some(_)) => Self::identity_id(slot).ok(),
            _ => None,
        }
    }

    /// The name of a registered identity.
    pub fn identity_name(&self, id: IdentityId) -> Option<&str> {
        self.ident_name(id.tag())
    }

    /// The name of the identity with tag `ident` (0: anonymous, `None`).
    pub(super) fn ident_name(&self, ident: u16) -> Option<&str> {
        let slot = u32::from(ident).checked_sub(1)?;
        match self.identities.slots.get(slot as usize) {
            Some(Some(i)) => core::str::from_utf8(i.name.parts().0).ok(),
            _ => None,
        }
    }

    /// The handle of a registered identity.
    pub fn identity(&self, name: &str) -> Option<IdentityId> {
        let h = self.hasher.bytes(name.as_bytes());
        self.identities
            .find(widen(h), |i| i.name.parts().0 == name.as_bytes())
            .and_then(|s| Self::identity_id(s).ok())
    }
}
