//! `GcCell<T>`: interior mutability for traced data, safe against the collector.
//!
//! The collector reads every object while the world is stopped, without taking any lock,
//! so a write must never be under way then. A write guard therefore holds a mutator
//! section for as long as it lives (the collector waits for it); it takes the cell's lock
//! first and enters the section second, so a thread waiting for the lock never holds the
//! world up. Read guards need no section: reading alongside the collector is fine.
//!
//! Consequences (DESIGN §4): a thread holding a write guard must not wait for another
//! thread's collection (`collect()` on it panics and says why); an allocation under a write
//! guard never collects. Keep write guards short.

use core::cell::UnsafeCell;
use core::fmt;
use core::ops::{Deref, DerefMut};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use gc_types::{Kind, Trace, Tracer, Type, TypeRef, Typed};

use crate::world::{self, Section};

/// A mutable cell inside a heap object (a `RwLock` that cooperates with the collector).
pub struct GcCell<T> {
    lock: RwLock<()>,
    value: UnsafeCell<T>,
}

// SAFETY: access to `value` goes through the lock (readers share, one writer), as in
// `RwLock<T>`, which is Sync when T is Send + Sync; the collector's lock-free reads happen
// only while no writer can be mutating (writers hold a section).
unsafe impl<T: Send + Sync> Sync for GcCell<T> {}

impl<T> GcCell<T> {
    /// A new cell.
    pub const fn new(value: T) -> GcCell<T> {
        GcCell {
            lock: RwLock::new(()),
            value: UnsafeCell::new(value),
        }
    }

    /// Shared access; blocks while a writer holds the cell.
    pub fn borrow(&self) -> GcRef<'_, T> {
        let guard = self.lock.read().unwrap_or_else(|e| e.into_inner());
        // SAFETY: the read lock excludes writers; shared references may coexist.
        let value = unsafe { &*self.value.get() };
        GcRef {
            _guard: guard,
            value,
        }
    }

    /// Exclusive access; blocks while anyone holds the cell, then enters a mutator section
    /// (waiting for a running collection to finish).
    pub fn borrow_mut(&self) -> GcRefMut<'_, T> {
        let guard = self.lock.write().unwrap_or_else(|e| e.into_inner());
        let section = world::enter();
        // SAFETY: the write lock excludes every other borrow, and the section excludes the
        // collector's reads for as long as this reference lives.
        let value = unsafe { &mut *self.value.get() };
        GcRefMut {
            value,
            _section: section,
            _guard: guard,
        }
    }

    /// Replaces the value, returning the old one.
    pub fn replace(&self, value: T) -> T {
        core::mem::replace(&mut *self.borrow_mut(), value)
    }

    /// Sets the value, dropping the old one.
    pub fn set(&self, value: T) {
        drop(self.replace(value));
    }

    /// Takes the value, leaving the default.
    pub fn take(&self) -> T
    where
        T: Default,
    {
        self.replace(T::default())
    }

    /// Consumes the cell.
    pub fn into_inner(self) -> T {
        self.value.into_inner()
    }
}

impl<T: Default> Default for GcCell<T> {
    fn default() -> GcCell<T> {
        GcCell::new(T::default())
    }
}

impl<T: fmt::Debug> fmt::Debug for GcCell<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("GcCell").field(&*self.borrow()).finish()
    }
}

/// A shared borrow of a [`GcCell`].
pub struct GcRef<'a, T> {
    _guard: RwLockReadGuard<'a, ()>,
    value: &'a T,
}

impl<T> Deref for GcRef<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.value
    }
}

/// An exclusive borrow of a [`GcCell`]; holds a mutator section while it lives.
pub struct GcRefMut<'a, T> {
    value: &'a mut T,
    _section: Section,
    _guard: RwLockWriteGuard<'a, ()>,
}

impl<T> Deref for GcRefMut<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.value
    }
}

impl<T> DerefMut for GcRefMut<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.value
    }
}

// SAFETY: an opaque named generic type with its content as type argument; Send/Sync
// structural (GcCell<T> is Send if T is, Sync if T is Send + Sync: `T`'s answer covers both).
unsafe impl<T: Trace> Typed for GcCell<T> {
    const TYPE: &'static Type = &Type::rust::<GcCell<T>>(Kind::Opaque)
        .named("GcCell")
        .with_args(&[TypeRef::of::<T>()]);
}

// SAFETY: a cell owns its value and reports its handles once. The collector calls `trace`
// only with the world stopped, when no write guard can be mutating (writers hold a
// section), so the lock-free read is not a data race.
unsafe impl<T: Trace> Trace for GcCell<T> {
    const NO_SCAN: bool = T::NO_SCAN;
    const HANDLES_ONLY_DROP: bool = T::HANDLES_ONLY_DROP && !core::mem::needs_drop::<RwLock<()>>();
    fn trace(&self, tracer: &mut Tracer) {
        // SAFETY: see above.
        unsafe { &*self.value.get() }.trace(tracer);
    }
}
