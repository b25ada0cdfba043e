//! Handler instance slots: the server-wide budget of handler instances.
//!
//! wasmtime's pooling allocator reserves room for a fixed number of component instances
//! when the engine is made (`max_handler_instances`). Every worker lane holds one
//! [`Slot`] for its whole life, so that replacing a crashed instance (drop the old one,
//! then make a new one) always finds room, and registering or scaling a model reserves
//! its lanes' slots *before* anything changes: what does not fit is refused with the
//! numbers, not discovered half-way as an instantiation failure.

use std::sync::{Arc, Mutex};

/// Why slots could not be reserved.
#[derive(Debug, thiserror::Error)]
#[error(
    "{wanted} more handler instance(s) do not fit: the server runs at most {capacity} \
     (max_handler_instances) and {used} are in use by the models' workers; raise \
     max_handler_instances in config.properties or use fewer workers"
)]
pub struct SlotsFull {
    pub wanted: usize,
    pub capacity: usize,
    pub used: usize,
}

/// The budget: how many instances may exist, how many are held.
#[derive(Debug)]
pub struct Slots {
    capacity: usize,
    used: Mutex<usize>,
}

impl Slots {
    pub fn new(capacity: usize) -> Arc<Slots> {
        Arc::new(Slots {
            capacity,
            used: Mutex::new(0),
        })
    }

    /// The most instances that may exist at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many are held now.
    pub fn used(&self) -> usize {
        *self.used.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves `n` slots at once, or none.
    pub fn reserve(self: &Arc<Self>, n: usize) -> Result<Reservation, SlotsFull> {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        if *used + n > self.capacity {
            return Err(SlotsFull {
                wanted: n,
                capacity: self.capacity,
                used: *used,
            });
        }
        *used += n;
        Ok(Reservation {
            slots: self.clone(),
            n,
        })
    }
}

/// Slots held; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    slots: Arc<Slots>,
    n: usize,
}

/// One lane's slot.
pub type Slot = Reservation;

impl Reservation {
    /// How many slots this holds.
    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Adds `other`'s slots to this reservation.
    pub fn absorb(&mut self, mut other: Reservation) {
        debug_assert!(Arc::ptr_eq(&self.slots, &other.slots));
        self.n += other.n;
        other.n = 0;
    }

    /// Takes one slot out of this reservation, if it has one.
    pub fn take_one(&mut self) -> Option<Slot> {
        (self.n > 0).then(|| {
            self.n -= 1;
            Reservation {
                slots: self.slots.clone(),
                n: 1,
            }
        })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut used = self.slots.used.lock().unwrap_or_else(|p| p.into_inner());
        *used -= self.n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservation_is_all_or_nothing_and_given_back_on_drop() {
        let slots = Slots::new(3);
        let mut two = slots.reserve(2).unwrap();
        let err = slots.reserve(2).unwrap_err();
        assert_eq!((err.wanted, err.capacity, err.used), (2, 3, 2));
        assert!(err.to_string().contains("max_handler_instances"), "{err}");
        let one = two.take_one().unwrap();
        assert_eq!((two.len(), one.len(), slots.used()), (1, 1, 2));
        drop(two);
        assert_eq!(slots.used(), 1);
        let _again = slots.reserve(2).unwrap();
        drop(one);
        assert_eq!(slots.used(), 2);
    }
}
