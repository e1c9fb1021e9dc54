//! format (being built).
