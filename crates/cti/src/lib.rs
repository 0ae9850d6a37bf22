//! Hotline CTI (in progress).
