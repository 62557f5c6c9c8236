//! What a handler built for `wasm32-unknown-unknown` (a component without WASI) needs from the SDK: an allocator that
//! serves an event from memory the instance already has, the panic message and [`crate::eprintln!`] written to the
//! host's log through `wasi:cli/stderr`, which that target's standard library cannot reach.
//!
//! Why the target: a Rust guest for `wasm32-wasip2` imports 28 WASI functions through the standard library (stdio,
//! environment, exit, terminals), and each is lowered into every instance; for `wasm32-unknown-unknown` the component
//! imports what the handler calls and nothing else. The standard library's allocator there takes its memory with
//! `memory.grow`, which the host pays for (a page made accessible, then taken back) in every `per-event` instance;
//! the arena below is part of the module's initial memory, so an event that fits in it grows nothing. Measured in
//! BENCHMARKS.md ("Round seven").

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;

/// The bytes of the arena the first allocations of an instance come from (one wasm page). A `per-event` instance
/// lives for one event, which seldom allocates more; beyond it, allocations go to the standard library's allocator.
pub const DEFAULT_ARENA_BYTES: usize = 64 * 1024;

/// The arena's memory: zeroed at instantiation (it is in the module's `.bss`), so it costs no data segment.
#[repr(C, align(16))]
struct Bytes(UnsafeCell<[u8; DEFAULT_ARENA_BYTES]>);

/// The allocator: bump allocation in the arena while it has room, the standard library's (`dlmalloc`) after.
/// Freeing the latest arena allocation gives its bytes back; others stay taken until the instance ends (a kept
/// instance loses at most the arena to them, once). Installed as the global allocator with the `arena` feature.
pub struct Arena {
    bytes: Bytes,
    /// The offset of the first free byte.
    next: UnsafeCell<usize>,
}

impl Arena {
    /// An empty arena.
    pub const fn new() -> Self {
        Self { bytes: Bytes(UnsafeCell::new([0; DEFAULT_ARENA_BYTES])), next: UnsafeCell::new(0) }
    }

    fn base(&self) -> usize {
        self.bytes.0.get() as usize
    }

    fn owns(&self, ptr: *mut u8) -> bool {
        let at = ptr as usize;
        at >= self.base() && at < self.base() + DEFAULT_ARENA_BYTES
    }
}

impl Default for Arena {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: wasm32-unknown-unknown runs one thread, so the arena's cells are never touched concurrently. (Elsewhere the
// arena is not `Sync`, so only one thread can hold it; the tests use it that way.)
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
#[allow(unsafe_code)]
unsafe impl Sync for Arena {}

#[allow(unsafe_code)]
// SAFETY: every block handed out is aligned as asked, lies inside the arena or comes from `System`, and does not
// overlap another live block: the bump offset only moves back over the block that ends at it.
unsafe impl GlobalAlloc for Arena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: one thread (see `Sync` above), and no reference to `next` outlives this call.
        let next = unsafe { &mut *self.next.get() };
        let base = self.base();
        let start = (base + *next).next_multiple_of(layout.align());
        if let Some(end) = start.checked_add(layout.size())
            && end <= base + DEFAULT_ARENA_BYTES
        {
            *next = end - base;
            return start as *mut u8;
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if self.owns(ptr) {
            // SAFETY: one thread (see `Sync` above).
            let next = unsafe { &mut *self.next.get() };
            if ptr as usize + layout.size() == self.base() + *next {
                *next = ptr as usize - self.base();
            }
            return;
        }
        // SAFETY: a block not in the arena came from `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // The latest arena block grows or shrinks in place while the arena has room: a growing `String` or `Vec`
        // is copied only when it leaves the arena.
        if self.owns(ptr) {
            // SAFETY: one thread (see `Sync` above).
            let next = unsafe { &mut *self.next.get() };
            let offset = ptr as usize - self.base();
            if offset + layout.size() == *next && offset + new_size <= DEFAULT_ARENA_BYTES {
                *next = offset + new_size;
                return ptr;
            }
        } else {
            // SAFETY: a block not in the arena came from `System` with this layout.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        // SAFETY: a fresh block of the new layout; the old one is valid for `layout.size()` bytes.
        unsafe {
            let moved = self.alloc(new_layout);
            if !moved.is_null() {
                std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            moved
        }
    }
}

/// Writes `text` to the host's log (`wasi:cli/stderr`), where the host tags each line with the handler and
/// connection. Nothing is reported when it cannot be written: a log line is not worth failing an event for.
pub fn write_stderr(text: &str) {
    let stderr = wasip2::cli::stderr::get_stderr();
    // A blocking write takes at most 4,096 bytes at a time.
    for chunk in text.as_bytes().chunks(4096) {
        if stderr.blocking_write_and_flush(chunk).is_err() {
            return;
        }
    }
}

/// Makes a panic write its message to the host's log before the instance traps, as the standard library does for
/// `wasm32-wasip2` (for `wasm32-unknown-unknown` it writes nothing). [`crate::handler!`] calls it before each event;
/// an instance installs the hook once.
pub fn report_panics() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| std::panic::set_hook(Box::new(|info| write_stderr(&format!("{info}\n")))));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    #[allow(unsafe_code)]
    fn blocks_come_from_the_arena_aligned_until_it_is_full_then_from_the_system() {
        let arena = Box::new(Arena::new());
        // SAFETY: every block is freed with the layout it was made with, and none is used after.
        unsafe {
            let a = arena.alloc(layout(3, 1));
            let b = arena.alloc(layout(8, 8));
            assert!(arena.owns(a) && arena.owns(b));
            assert_eq!(b as usize % 8, 0);
            assert!(b as usize >= a as usize + 3, "blocks overlap");
            // What is left of the arena is too small for this one: it comes from the system allocator.
            let big = arena.alloc(layout(DEFAULT_ARENA_BYTES, 1));
            assert!(!big.is_null() && !arena.owns(big));
            big.write_bytes(7, DEFAULT_ARENA_BYTES);
            arena.dealloc(big, layout(DEFAULT_ARENA_BYTES, 1));
            arena.dealloc(b, layout(8, 8));
            arena.dealloc(a, layout(3, 1));
        }
    }

    #[test]
    #[allow(unsafe_code)]
    fn the_latest_block_is_given_back_and_grows_in_place() {
        let arena = Box::new(Arena::new());
        // SAFETY: as above; `grown` replaces `first` and is freed with its new size.
        unsafe {
            let first = arena.alloc(layout(16, 1));
            first.write_bytes(1, 16);
            let grown = arena.realloc(first, layout(16, 1), 1024);
            assert_eq!(grown, first, "the latest block grows where it is");
            arena.dealloc(grown, layout(1024, 1));
            let again = arena.alloc(layout(16, 1));
            assert_eq!(again, first, "the freed latest block is reused");
            // A block that is not the latest moves when it grows, and keeps its bytes.
            let later = arena.alloc(layout(4, 1));
            again.write_bytes(9, 16);
            let moved = arena.realloc(again, layout(16, 1), 64);
            assert_ne!(moved, again);
            assert!(std::slice::from_raw_parts(moved, 16).iter().all(|b| *b == 9));
            arena.dealloc(moved, layout(64, 1));
            arena.dealloc(later, layout(4, 1));
        }
    }

    #[test]
    #[allow(unsafe_code)]
    fn a_block_that_leaves_the_arena_keeps_its_bytes() {
        let arena = Box::new(Arena::new());
        // SAFETY: as above.
        unsafe {
            let small = arena.alloc(layout(32, 1));
            small.write_bytes(5, 32);
            let outside = arena.realloc(small, layout(32, 1), DEFAULT_ARENA_BYTES * 2);
            assert!(!arena.owns(outside));
            assert!(std::slice::from_raw_parts(outside, 32).iter().all(|b| *b == 5));
            arena.dealloc(outside, layout(DEFAULT_ARENA_BYTES * 2, 1));
        }
    }
}
