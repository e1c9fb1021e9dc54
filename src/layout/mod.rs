//! layout (being built).
