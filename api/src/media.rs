//! The blob store behind media uploads (filled in below).
