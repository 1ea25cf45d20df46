//! Distinct offset types, so a log end offset is never passed where a high watermark is meant.
//! Invariant per partition: log_start <= high_watermark <= log_end.

macro_rules! offset_type {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub i64);
        impl $name {
            pub fn get(self) -> i64 {
                self.0
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

offset_type!(
    /// First offset still in the log.
    LogStartOffset
);
offset_type!(
    /// Offset the next appended record will get.
    LogEndOffset
);
offset_type!(
    /// Offsets below this are durable and visible to consumers.
    HighWatermark
);

/// Asserts the ordering invariant; call wherever one of the three changes.
pub fn assert_ordered(start: LogStartOffset, hw: HighWatermark, end: LogEndOffset) {
    assert!(
        start.0 <= hw.0 && hw.0 <= end.0,
        "offset invariant broken: log_start {start} <= high_watermark {hw} <= log_end {end}"
    );
}
