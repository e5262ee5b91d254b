//! A table of values under number handles, for things JavaScript names but
//! WebAssembly keeps (held locks' leases, calls in a failover): a number
//! crosses the boundary, no object of its own is made per value, and
//! nothing waits for the garbage collector to be freed.
//!
//! A handle is a slot's index and its generation, packed into one number
//! below 2^53 that JavaScript holds exactly. A removed slot's next value
//! gets the next generation, so an old handle never reaches it.

use dlm_core::client::ErrorKind;

use crate::error::Error;

/// Generations wrap below this, so a handle stays below 2^53.
pub(crate) const GENERATIONS: u32 = 1 << 21;
/// 2^32: where the generation starts in a handle.
pub(crate) const INDEX_SPAN: f64 = 4_294_967_296.0;

#[derive(Debug)]
struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

/// Values under handles.
#[derive(Debug)]
pub struct Table<T> {
    slots: Vec<Slot<T>>,
    /// Empty slots, reused first.
    free: Vec<u32>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<T> Table<T> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many values it holds.
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps `value`; returns its handle. Fails with `NoMemory` past 2^32
    /// values at once.
    pub fn insert(&mut self, value: T) -> Result<f64, Error> {
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                let index = u32::try_from(self.slots.len())
                    .map_err(|_| Error::new(ErrorKind::NoMemory, "too many handles at once"))?;
                self.slots.push(Slot {
                    generation: 0,
                    value: None,
                });
                index
            }
        };
        let Some(slot) = self.slots.get_mut(index as usize) else {
            return Err(Error::new(ErrorKind::NoMemory, "no slot for a handle"));
        };
        slot.value = Some(value);
        Ok(f64::from(slot.generation) * INDEX_SPAN + f64::from(index))
    }

    /// The slot `handle` names, if it names one (of any generation).
    fn locate(handle: f64) -> Option<(usize, u32)> {
        if !(0.0..9_007_199_254_740_992.0).contains(&handle) || handle.fract() != 0.0 {
            return None;
        }
        // A whole number in [0, 2^53): exact as a u64.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let h = handle as u64;
        let index = usize::try_from(h & 0xffff_ffff).ok()?;
        let generation = u32::try_from(h >> 32).ok()?;
        Some((index, generation))
    }

    /// The value `handle` names, if it is held.
    pub fn get(&self, handle: f64) -> Option<&T> {
        let (index, generation) = Self::locate(handle)?;
        let slot = self.slots.get(index)?;
        if slot.generation == generation {
            slot.value.as_ref()
        } else {
            None
        }
    }

    /// The value `handle` names, if it is held, to change.
    pub fn get_mut(&mut self, handle: f64) -> Option<&mut T> {
        let (index, generation) = Self::locate(handle)?;
        let slot = self.slots.get_mut(index)?;
        if slot.generation == generation {
            slot.value.as_mut()
        } else {
            None
        }
    }

    /// Takes the value `handle` names out of the table, if it is held.
    /// The handle names nothing from now on.
    pub fn take(&mut self, handle: f64) -> Option<T> {
        let (index, generation) = Self::locate(handle)?;
        let slot = self.slots.get_mut(index)?;
        if slot.generation != generation {
            return None;
        }
        let value = slot.value.take()?;
        slot.generation = (slot.generation + 1) % GENERATIONS;
        // `index` came from a u32 in `insert`.
        #[allow(clippy::cast_possible_truncation)]
        self.free.push(index as u32);
        Some(value)
    }

    /// Forgets the value `handle` names; whether there was one.
    pub fn remove(&mut self, handle: f64) -> bool {
        self.take(handle).is_some()
    }

    /// Sets a slot's generation (tests of the wrap-around).
    #[cfg(test)]
    pub(crate) fn set_generation(&mut self, index: usize, generation: u32) {
        self.slots[index].generation = generation;
    }
}
