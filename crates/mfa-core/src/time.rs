//! Time as the core sees it: a number handed in by the caller, never read from a clock.

/// A point in time, in whole seconds since the Unix epoch (1970-01-01T00:00:00Z, leap seconds ignored).
///
/// `mfa-core` never reads a clock: every operation that depends on time takes a `UnixTime` as an
/// argument, so tests run on a virtual clock and fuzzers can drive any instant. The full `u64` range is
/// valid, far past 2038 (RFC 6238 section 4.2) and the year 2603 of its last test vector.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct UnixTime(u64);

impl UnixTime {
    /// The Unix epoch itself.
    pub const EPOCH: Self = Self(0);

    /// The instant `secs` seconds after the Unix epoch.
    #[must_use]
    pub const fn from_secs(secs: u64) -> Self {
        Self(secs)
    }

    /// `secs` seconds later, or the end of time (`u64::MAX`) when that overflows.
    #[must_use]
    pub const fn saturating_add(self, secs: u64) -> Self {
        Self(self.0.saturating_add(secs))
    }

    /// Seconds since the Unix epoch.
    #[must_use]
    pub const fn as_secs(self) -> u64 {
        self.0
    }
}

impl From<u64> for UnixTime {
    fn from(secs: u64) -> Self {
        Self(secs)
    }
}
