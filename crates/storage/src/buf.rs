//! Heap buffers aligned for `O_DIRECT`.
//!
//! This module owns [`AlignedBuf`], the one buffer type that crosses the
//! [`Storage`](crate::Storage) boundary. Its memory is aligned to 4096 bytes,
//! which satisfies `O_DIRECT` on both 512-byte and 4096-byte sector devices,
//! so backends can hand it to the kernel without copying.

use std::alloc::{self, Layout};
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// Alignment of every [`AlignedBuf`], in bytes.
pub const BUF_ALIGN: usize = 4096;

/// How many leading bytes `Debug` prints.
const DEBUG_PREFIX: usize = 16;

/// A fixed-length, zero-initialised heap buffer aligned to [`BUF_ALIGN`].
pub struct AlignedBuf {
    /// Start of the allocation; a dangling (but aligned) pointer when
    /// `len == 0`, in which case nothing was allocated.
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: `AlignedBuf` uniquely owns its allocation (like `Vec<u8>`); moving
// it to another thread moves that ownership.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared references only allow reads of plain bytes; mutation needs
// `&mut self`, so the usual aliasing rules hold across threads.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    fn layout(len: usize) -> Layout {
        // `len` comes from an existing slice or a caller's request; a size
        // that overflows `isize` once rounded up cannot be allocated anyway.
        Layout::from_size_align(len, BUF_ALIGN)
            .expect("buffer length too large for an aligned allocation")
    }

    /// A buffer of `len` zero bytes.
    pub fn zeroed(len: usize) -> AlignedBuf {
        if len == 0 {
            return AlignedBuf {
                ptr: Self::dangling(),
                len: 0,
            };
        }
        let layout = Self::layout(len);
        // SAFETY: `layout` has a non-zero size (len > 0) and a valid
        // power-of-two alignment.
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            alloc::handle_alloc_error(layout)
        };
        AlignedBuf { ptr, len }
    }

    /// A buffer holding a copy of `data`.
    pub fn from_slice(data: &[u8]) -> AlignedBuf {
        let mut b = AlignedBuf::zeroed(data.len());
        b.as_mut_slice().copy_from_slice(data);
        b
    }

    fn dangling() -> NonNull<u8> {
        /// A type with the buffer alignment, for its dangling pointer.
        #[repr(align(4096))]
        struct Page;
        const _: () = assert!(std::mem::align_of::<Page>() == BUF_ALIGN);
        // An aligned, non-null address that is never dereferenced for more
        // than zero bytes.
        NonNull::<Page>::dangling().cast()
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` is valid for reads of `len` initialised bytes (zeroed
        // at allocation) for the lifetime of `self`; for `len == 0` a
        // dangling aligned non-null pointer is valid for an empty slice.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The bytes, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` guarantees exclusive
        // access to the allocation.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A raw pointer to the first byte (aligned to [`BUF_ALIGN`]).
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    /// Copies the bytes into a `Vec`.
    pub fn to_vec(&self) -> Vec<u8> {
        self.as_slice().to_vec()
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if self.len == 0 {
            return;
        }
        // SAFETY: a non-empty buffer was allocated in `zeroed` with exactly
        // this layout and is freed only here, once.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.len)) }
    }
}

impl Clone for AlignedBuf {
    fn clone(&self) -> Self {
        AlignedBuf::from_slice(self.as_slice())
    }
}

impl PartialEq for AlignedBuf {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for AlignedBuf {}

impl Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
}

impl AsRef<[u8]> for AlignedBuf {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsMut<[u8]> for AlignedBuf {
    fn as_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
}

impl From<&[u8]> for AlignedBuf {
    fn from(data: &[u8]) -> Self {
        AlignedBuf::from_slice(data)
    }
}

impl fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AlignedBuf {{ len: {}, head: ", self.len)?;
        for b in self.as_slice().iter().take(DEBUG_PREFIX) {
            write!(f, "{b:02x}")?;
        }
        if self.len > DEBUG_PREFIX {
            write!(f, "..")?;
        }
        write!(f, " }}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_is_aligned_and_zero() {
        for len in [1usize, 511, 512, 4096, 8192 + 512] {
            let b = AlignedBuf::zeroed(len);
            assert_eq!(b.len(), len);
            assert_eq!(b.as_ptr() as usize % BUF_ALIGN, 0);
            assert!(b.iter().all(|&x| x == 0));
        }
    }

    #[test]
    fn empty_buffers_are_fine() {
        let mut b = AlignedBuf::zeroed(0);
        assert!(b.is_empty());
        assert_eq!(b.as_slice(), &[] as &[u8]);
        assert_eq!(b.as_mut_slice().len(), 0);
        assert_eq!(b.as_ptr() as usize % BUF_ALIGN, 0);
        let c = b.clone();
        assert_eq!(b, c);
        assert_eq!(AlignedBuf::from_slice(&[]), b);
    }

    #[test]
    fn copy_clone_eq_and_mutation() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1024).collect();
        let mut a = AlignedBuf::from_slice(&data);
        let b = a.clone();
        assert_eq!(a, b);
        assert_eq!(&a[..], &data[..]);
        a[3] ^= 0xff;
        assert_ne!(a, b);
        assert_eq!(b.to_vec(), data);
    }

    #[test]
    fn debug_is_short() {
        let b = AlignedBuf::from_slice(&[0xab; 4096]);
        let s = format!("{b:?}");
        assert!(s.contains("len: 4096"), "{s}");
        assert!(s.len() < 80, "{s}");
        let e = format!("{:?}", AlignedBuf::zeroed(0));
        assert!(e.contains("len: 0"), "{e}");
    }

    #[test]
    fn send_sync() {
        fn check<T: Send + Sync>() {}
        check::<AlignedBuf>();
    }
}
