//! Rank and world size (from the API or torchrun's environment) and the validation shard rule.

/// Why the distributed environment could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DistError {
    /// A variable is not a non-negative integer.
    #[error("environment variable `{name}` is `{value}`, expected a non-negative integer")]
    Malformed {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
    },
    /// One of `RANK` / `WORLD_SIZE` is set without the other.
    #[error("environment variable `{missing}` is not set, but `{present}` is (torchrun sets both)")]
    Missing {
        /// The absent variable.
        missing: &'static str,
        /// The variable that is set.
        present: &'static str,
    },
    /// The world is empty.
    #[error("`WORLD_SIZE` is 0, expected at least 1")]
    EmptyWorld,
    /// A rank is not below the world size.
    #[error("`{name}` is {rank}, not below `WORLD_SIZE` {world_size}")]
    RankOutOfRange {
        /// `RANK` or `LOCAL_RANK`.
        name: &'static str,
        /// Its value.
        rank: usize,
        /// The world size.
        world_size: usize,
    },
}

/// This process's place in a distributed run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DistInfo {
    /// Global rank, `0..world_size`.
    pub rank: usize,
    /// Number of processes.
    pub world_size: usize,
    /// Rank on this node (the CUDA device ordinal under torchrun).
    pub local_rank: usize,
}

impl DistInfo {
    /// A single process.
    pub fn single() -> DistInfo {
        DistInfo {
            rank: 0,
            world_size: 1,
            local_rank: 0,
        }
    }

    /// Reads torchrun's `RANK`, `WORLD_SIZE` and `LOCAL_RANK`. Without `RANK` and `WORLD_SIZE`
    /// this is a single process; without `LOCAL_RANK` it equals `RANK` (one node).
    ///
    /// # Errors
    /// [`DistError`] naming the variable when one is malformed, only one of `RANK` /
    /// `WORLD_SIZE` is set, or a rank is not below the world size.
    pub fn from_env() -> Result<DistInfo, DistError> {
        DistInfo::from_vars(|name| std::env::var(name).ok())
    }

    /// As [`DistInfo::from_env`], reading variables through `var` (for tests and embedding).
    ///
    /// # Errors
    /// As [`DistInfo::from_env`].
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<DistInfo, DistError> {
        let parse = |name: &'static str| -> Result<Option<usize>, DistError> {
            var(name)
                .map(|value| {
                    value
                        .trim()
                        .parse::<usize>()
                        .map_err(|_| DistError::Malformed { name, value })
                })
                .transpose()
        };
        let (rank, world_size) = match (parse("RANK")?, parse("WORLD_SIZE")?) {
            (None, None) => return Ok(DistInfo::single()),
            (Some(_), None) => {
                return Err(DistError::Missing {
                    missing: "WORLD_SIZE",
                    present: "RANK",
                });
            }
            (None, Some(_)) => {
                return Err(DistError::Missing {
                    missing: "RANK",
                    present: "WORLD_SIZE",
                });
            }
            (Some(r), Some(w)) => (r, w),
        };
        if world_size == 0 {
            return Err(DistError::EmptyWorld);
        }
        if rank >= world_size {
            return Err(DistError::RankOutOfRange {
                name: "RANK",
                rank,
                world_size,
            });
        }
        let local_rank = parse("LOCAL_RANK")?.unwrap_or(rank);
        if local_rank >= world_size {
            return Err(DistError::RankOutOfRange {
                name: "LOCAL_RANK",
                rank: local_rank,
                world_size,
            });
        }
        Ok(DistInfo {
            rank,
            world_size,
            local_rank,
        })
    }
}

/// The share of `items` of one rank: `items[rank::world_size]` (disjoint across ranks, their
/// union is every item). A `world_size` of 0 is treated as 1.
pub fn shard<T>(items: &[T], rank: usize, world_size: usize) -> impl Iterator<Item = &T> {
    items.iter().skip(rank).step_by(world_size.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn reads_torchrun_environment() {
        assert_eq!(DistInfo::from_vars(vars(&[])), Ok(DistInfo::single()));
        assert_eq!(
            DistInfo::from_vars(vars(&[
                ("RANK", "5"),
                ("WORLD_SIZE", "8"),
                ("LOCAL_RANK", "1")
            ])),
            Ok(DistInfo {
                rank: 5,
                world_size: 8,
                local_rank: 1
            })
        );
        assert_eq!(
            DistInfo::from_vars(vars(&[("RANK", "2"), ("WORLD_SIZE", "3")])),
            Ok(DistInfo {
                rank: 2,
                world_size: 3,
                local_rank: 2
            })
        );
        assert_eq!(
            DistInfo::from_vars(vars(&[("RANK", "x1"), ("WORLD_SIZE", "3")])),
            Err(DistError::Malformed {
                name: "RANK",
                value: "x1".into()
            })
        );
        assert_eq!(
            DistInfo::from_vars(vars(&[("RANK", "3"), ("WORLD_SIZE", "3")])),
            Err(DistError::RankOutOfRange {
                name: "RANK",
                rank: 3,
                world_size: 3
            })
        );
        assert_eq!(
            DistInfo::from_vars(vars(&[("WORLD_SIZE", "3")])),
            Err(DistError::Missing {
                missing: "RANK",
                present: "WORLD_SIZE"
            })
        );
        assert_eq!(
            DistInfo::from_vars(vars(&[("RANK", "0"), ("WORLD_SIZE", "0")])),
            Err(DistError::EmptyWorld)
        );
        let err = DistInfo::from_vars(vars(&[
            ("RANK", "0"),
            ("WORLD_SIZE", "2"),
            ("LOCAL_RANK", "-1"),
        ]))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable `LOCAL_RANK` is `-1`, expected a non-negative integer"
        );
    }

    #[test]
    fn shards_are_disjoint_and_complete() {
        let items: Vec<u32> = (0..23).collect();
        for world in 1..=5 {
            let mut seen = vec![0u32; items.len()];
            for rank in 0..world {
                for &i in shard(&items, rank, world) {
                    assert_eq!(i as usize % world, rank);
                    seen[i as usize] += 1;
                }
            }
            assert!(seen.iter().all(|&n| n == 1), "world {world}");
        }
    }
}
