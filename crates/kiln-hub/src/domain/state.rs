//! The build state machine:
//!
//! ```text
//! queued ──► building ──► complete | failed | canceled
//!   │  ▲         │
//!   │  └─────────┘  retry after a lost lease (the task counts the attempt)
//!   └──► canceled
//! ```
//!
//! Everything else is refused; terminal states never change.

use crate::model::BuildState;

#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
#[error("a {from} build cannot become {to}")]
pub struct StateError {
    pub from: BuildState,
    pub to: BuildState,
}

pub fn is_terminal(state: BuildState) -> bool {
    matches!(
        state,
        BuildState::Complete | BuildState::Failed | BuildState::Canceled
    )
}

/// The states a build may move to `to` from; the database uses it for its
/// compare-and-set (`UPDATE … WHERE state IN (…)`).
pub fn sources(to: BuildState) -> &'static [BuildState] {
    use BuildState::*;
    match to {
        Queued => &[Building],
        Building => &[Queued],
        Complete => &[Building],
        // Refusals (missing labels, duplicate NVR) happen once a worker
        // has claimed the build, so failing always starts from building.
        Failed => &[Building],
        Canceled => &[Queued, Building],
    }
}

pub fn check_transition(from: BuildState, to: BuildState) -> Result<(), StateError> {
    if sources(to).contains(&from) {
        Ok(())
    } else {
        Err(StateError { from, to })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BuildState::*;

    #[test]
    fn allowed_transitions_exactly() {
        let allowed = [
            (Queued, Building),
            (Queued, Canceled),
            (Building, Complete),
            (Building, Failed),
            (Building, Canceled),
            (Building, Queued),
        ];
        for from in BuildState::ALL {
            for to in BuildState::ALL {
                let ok = allowed.contains(&(from, to));
                assert_eq!(check_transition(from, to).is_ok(), ok, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn terminal_states_have_no_way_out() {
        for from in BuildState::ALL.into_iter().filter(|s| is_terminal(*s)) {
            for to in BuildState::ALL {
                assert_eq!(check_transition(from, to), Err(StateError { from, to }));
            }
        }
        assert_eq!(
            StateError {
                from: Complete,
                to: Queued
            }
            .to_string(),
            "a complete build cannot become queued"
        );
    }
}
