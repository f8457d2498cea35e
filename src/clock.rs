//! Wall-clock time, for what is measured against the calendar rather than an `Instant`.

/// Milliseconds since the Unix epoch (token `exp` and stream lifetimes are wall-clock); 0 if
/// the system clock is before the epoch.
pub fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
