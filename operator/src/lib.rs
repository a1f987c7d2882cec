//! The hub operator of Pictor: the RenderJob and TrainingJob controllers, placement of
//! WorkUnits on member clusters, the member controller and billing (DESIGN.md, "Two-level
//! scheduling" and "Billing and settlement on Aptos"), plus the member agent that runs in each
//! member.
//!
//! What exists so far is the status machinery every controller shares; the controllers arrive
//! with the federation, jobs and billing work.
#![forbid(unsafe_code)]

pub mod conditions;
