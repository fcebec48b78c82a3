//! Identifier and counter newtypes.
//!
//! Ids are assigned by the store (sequences), so they are plain integers that a person can type
//! (`baton jobs get 42`) and that the simulator reproduces exactly.

use std::fmt;

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident($inner:ty)) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// A job: one unit of work submitted by a user, run by one or more attempts.
    JobId(i64)
);
id_type!(
    /// A workflow run: the jobs of one workflow file submitted together.
    RunId(i64)
);
id_type!(
    /// A registered runner agent.
    RunnerId(i64)
);
id_type!(
    /// One connection lifetime of a runner: opened, kept alive by polls, closed or expired.
    SessionId(i64)
);
id_type!(
    /// The position of an attempt within its job, starting at 1.
    AttemptNo(u32)
);
id_type!(
    /// The fencing epoch of a job. Every offer of any attempt of the job takes a larger epoch,
    /// and every job call must carry the current one.
    LeaseEpoch(u64)
);
id_type!(
    /// The position of an event in the events table; strictly increasing.
    EventSeq(i64)
);
id_type!(
    /// The id of a message queued for a runner; strictly increasing per store.
    MessageId(i64)
);

impl LeaseEpoch {
    /// The epoch that the next offer of this job takes.
    pub fn next(self) -> LeaseEpoch {
        LeaseEpoch(self.0.checked_add(1).expect("lease epoch overflow: 2^64 offers of one job"))
    }
}

impl AttemptNo {
    pub const FIRST: AttemptNo = AttemptNo(1);

    pub fn next(self) -> AttemptNo {
        AttemptNo(self.0.checked_add(1).expect("attempt number overflow"))
    }
}
