//! The program's report of finalizers and cleanups that panic (`set_finalizer_panic_hook`).
//!
//! A finalizer's panic is contained: the thread running it (the finalizer thread, or a
//! program's thread in `Heap::run_finalizers`) catches it, counts it in
//! `MemStats::finalizers_panicked`, and goes on with the next. What it tells is the hook's
//! choice: by default one stderr line naming the object's type; with a hook installed, the
//! hook is called with the payload, the object's type and the object itself (as a
//! [`Value`]), so that an interpreter can tell its user which script finalizer failed.
//!
//! Invariants: the hook runs on the thread that ran the finalizer, outside every section,
//! after the finalizer's frame is gone; the object it is shown is kept by a handle of the
//! report's own (one count, taken before the call, since the call consumes the entry's)
//! and is dropped when the hook returns, unless the hook clones it. `INSTALLED` is read
//! per finalizer with a relaxed load: a hook installed while a batch runs applies from
//! some entry on, which is all a program can observe anyway. A hook that panics is itself
//! contained: reported on stderr, and the thread goes on.

use core::any::Any;
use core::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use gc_types::{Type, Value};

type Hook = Arc<dyn Fn(&FinalizerPanic<'_>) + Send + Sync + 'static>;

static HOOK: RwLock<Option<Hook>> = RwLock::new(None);
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// A finalizer or cleanup that panicked, as the hook installed with
/// [`set_finalizer_panic_hook`] is shown it.
#[non_exhaustive]
pub struct FinalizerPanic<'a> {
    payload: &'a (dyn Any + Send),
    object_type: Option<&'static Type>,
    object: Option<Value>,
}

impl FinalizerPanic<'_> {
    /// The panic's payload, as `catch_unwind` gives it.
    pub fn payload(&self) -> &(dyn Any + Send) {
        self.payload
    }

    /// The panic's message, when its payload is a string (`panic!("...")` with or without
    /// arguments).
    pub fn message(&self) -> Option<&str> {
        self.payload
            .downcast_ref::<&'static str>()
            .copied()
            .or_else(|| self.payload.downcast_ref::<String>().map(String::as_str))
    }

    /// The object's pointer type (`Gc<demo::File>`); `None` for a cleanup, which is not
    /// given its object.
    pub fn object_type(&self) -> Option<&'static Type> {
        self.object_type
    }

    /// The object the finalizer was given, resurrected for this report: its finalizer was
    /// cleared when it was queued, so if the hook keeps it (clones the handle out of the
    /// value), it lives on as an ordinary object. `None` for a cleanup.
    pub fn object(&self) -> Option<&Value> {
        self.object.as_ref()
    }

    /// Is this a cleanup's panic (`Gc::add_cleanup`) rather than a finalizer's?
    pub fn is_cleanup(&self) -> bool {
        self.object_type.is_none()
    }
}

impl core::fmt::Debug for FinalizerPanic<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FinalizerPanic")
            .field("message", &self.message())
            .field("object_type", &self.object_type.map(|t| t.to_string()))
            .finish_non_exhaustive()
    }
}

/// Installs `hook` to be told of every finalizer or cleanup that panics, in place of the
/// default stderr line (std's `panic::set_hook` for finalizers). The panic is still
/// contained and counted in `MemStats::finalizers_panicked` either way. The hook runs on the
/// thread that ran the finalizer: the finalizer thread, or the caller of
/// `Heap::run_finalizers`.
///
/// ```
/// # use gc_core as fing;
/// # use std::sync::{Arc, Mutex};
/// let failed = Arc::new(Mutex::new(Vec::new()));
/// let log = failed.clone();
/// fing::set_finalizer_panic_hook(move |p| {
///     let what = p.object_type().map_or("a cleanup".to_string(), |t| t.to_string());
///     log.lock().unwrap().push(format!("{what}: {}", p.message().unwrap_or("?")));
/// });
/// # let _ = fing::take_finalizer_panic_hook();
/// ```
pub fn set_finalizer_panic_hook(hook: impl Fn(&FinalizerPanic<'_>) + Send + Sync + 'static) {
    let mut h = HOOK.write().unwrap_or_else(|e| e.into_inner());
    *h = Some(Arc::new(hook));
    INSTALLED.store(true, Ordering::Release);
}

/// Removes the hook [`set_finalizer_panic_hook`] installed, if any, and returns it; the
/// default stderr line applies again.
#[allow(clippy::type_complexity)] // std's `take_hook` returns the same shape
pub fn take_finalizer_panic_hook() -> Option<Box<dyn Fn(&FinalizerPanic<'_>) + Send + Sync>> {
    let mut h = HOOK.write().unwrap_or_else(|e| e.into_inner());
    INSTALLED.store(false, Ordering::Release);
    h.take()
        .map(|f| Box::new(move |p: &FinalizerPanic<'_>| f(p)) as Box<_>)
}

/// Is a hook installed? (Whether a finalizer's object is kept for a report.)
#[inline]
pub(crate) fn installed() -> bool {
    INSTALLED.load(Ordering::Relaxed)
}

/// Tells the hook, or stderr, of a panic: `object_type` is `None` for a cleanup.
pub(crate) fn report(
    payload: &(dyn Any + Send),
    object_type: Option<&'static Type>,
    object: Option<Value>,
) {
    let hook = HOOK.read().unwrap_or_else(|e| e.into_inner()).clone();
    let Some(hook) = hook else {
        drop(object);
        match object_type {
            None => eprintln!("fing: a cleanup panicked; the finalizer thread goes on"),
            Some(ty) => {
                eprintln!("fing: a finalizer of a {ty} panicked; the finalizer thread goes on")
            }
        }
        return;
    };
    let p = FinalizerPanic {
        payload,
        object_type,
        object,
    };
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(&p)));
    // The object's handle goes here, after the hook and outside it.
    drop(p);
    if let Err(e) = r {
        eprintln!("fing: the finalizer panic hook panicked; the finalizer thread goes on");
        crate::mdrop::drop_payload(e);
    }
}
