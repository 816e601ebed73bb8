//! The given-when-then kit (filled in by the domain work).
