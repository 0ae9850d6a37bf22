//! Reports over CDRs and the queue log (filled in below).
