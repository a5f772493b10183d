//! The clock: seconds since 1970, as token times are written. The one place the crate reads it.

/// Now, in whole seconds since 1970 (0 if the clock is before 1970).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
