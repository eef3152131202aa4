//! Runtime for the lease core (work in progress).
