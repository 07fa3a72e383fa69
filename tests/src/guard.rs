//! Removing a lab when its owner goes away, including by panic.

use std::ops::{Deref, DerefMut};
use std::panic::{catch_unwind, AssertUnwindSafe};

use anyhow::Result;

use crate::artifacts::Artifacts;
use crate::lab::Lab;
use crate::spec::LabSpec;

/// Owns a [`Lab`] and tears it down (`Lab::down`) when dropped. Tests hold one so that a
/// failing assertion still removes namespaces, agents and pins. Teardown errors are printed,
/// never raised: dropping never panics.
#[derive(Debug)]
pub struct LabGuard {
    lab: Option<Lab>,
}

impl LabGuard {
    /// Guards an existing lab.
    pub fn new(lab: Lab) -> Self {
        Self { lab: Some(lab) }
    }

    /// `Lab::up`, guarded.
    pub fn up(spec: &LabSpec, artifacts: &Artifacts) -> Result<Self> {
        Lab::up(spec, artifacts).map(Self::new)
    }

    /// Gives the lab back without tearing it down.
    pub fn into_inner(mut self) -> Lab {
        match self.lab.take() {
            Some(lab) => lab,
            // `lab` is only taken here and in drop, both of which consume the guard.
            None => unreachable!("LabGuard without a lab"),
        }
    }
}

impl Deref for LabGuard {
    type Target = Lab;

    fn deref(&self) -> &Lab {
        match &self.lab {
            Some(lab) => lab,
            None => unreachable!("LabGuard without a lab"),
        }
    }
}

impl DerefMut for LabGuard {
    fn deref_mut(&mut self) -> &mut Lab {
        match &mut self.lab {
            Some(lab) => lab,
            None => unreachable!("LabGuard without a lab"),
        }
    }
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        let Some(lab) = self.lab.take() else {
            return;
        };
        let name = lab.name().to_owned();
        match catch_unwind(AssertUnwindSafe(|| Lab::down(&name))) {
            Ok(Ok(())) => {}
            Ok(Err(err)) => eprintln!("tearing down lab {name} failed: {err:#}"),
            Err(_) => eprintln!(
                "tearing down lab {name} panicked; run `cargo xtask lab down --name {name}`"
            ),
        }
    }
}
