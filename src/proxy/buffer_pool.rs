//! Relay buffers, reused per thread instead of allocated per read burst.
//!
//! A session takes a buffer only while one side has data to read and gives it
//! back as soon as it has none, so idle sessions hold nothing. Returned buffers
//! are kept on a small per-thread free list (bounded, so the pool never holds
//! more than `SPARE_PER_THREAD` buffers per worker thread).

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

/// Size of one relay buffer.
pub const BUFFER_BYTES: usize = 64 * 1024;

/// Most idle buffers kept per thread.
const SPARE_PER_THREAD: usize = 64;

thread_local! {
    static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer with `BUFFER_BYTES` of capacity; back to the pool on drop.
#[derive(Debug)]
pub struct PooledBuffer(Vec<u8>);

impl PooledBuffer {
    pub fn take() -> PooledBuffer {
        let spare = SPARE.with(|spare| spare.borrow_mut().pop());
        PooledBuffer(spare.unwrap_or_else(|| Vec::with_capacity(BUFFER_BYTES)))
    }
}

impl Deref for PooledBuffer {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl DerefMut for PooledBuffer {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        let mut buffer = std::mem::take(&mut self.0);
        if buffer.capacity() != BUFFER_BYTES {
            return;
        }
        buffer.clear();
        SPARE.with(|spare| {
            let mut spare = spare.borrow_mut();
            if spare.len() < SPARE_PER_THREAD {
                spare.push(buffer);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_returned_buffer_is_reused_empty() {
        let mut first = PooledBuffer::take();
        first.extend_from_slice(b"data");
        let address = first.as_ptr();
        drop(first);
        let second = PooledBuffer::take();
        assert_eq!(second.as_ptr(), address);
        assert!(second.is_empty());
        assert_eq!(second.capacity(), BUFFER_BYTES);
    }

    #[test]
    fn the_pool_is_bounded() {
        let many: Vec<PooledBuffer> = (0..SPARE_PER_THREAD + 10)
            .map(|_| PooledBuffer::take())
            .collect();
        drop(many);
        let kept = SPARE.with(|spare| spare.borrow().len());
        assert_eq!(kept, SPARE_PER_THREAD);
    }
}
