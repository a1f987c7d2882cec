//! The hub–member contract: every word the hub operator, the member agents, pictor-billing,
//! pictor-scheduler, the device plugins, the node labeller and the CLI must spell the same way
//! (DESIGN.md, "The member agent speaks to the hub through the hub's Kubernetes API", "Gang",
//! "Device plugins", "Billing and settlement on Aptos"). Each is declared once, here:
//!
//! - [`keys`]: every `pictor.network/` label, annotation and finalizer key, with a doc line each.
//! - [`members`]: a member's namespace, agent, ClusterRole and log ConfigMap names.
//! - [`money`]: integer octas and the one rounding rule for GPU time.
//! - [`vendor`]: the GPU vendors, with everything that differs between them.
//! - [`billing_marks`]: how accrued, held and forfeited units are read.
//! - [`render_output`]: the names and extensions of the frames a render worker stores.
//! - [`verification`]: the verdict a verification render reports.
//! - [`runtime_env`]: the variables that steer the GPU runtime or the loader, which no unit sets.
//! - [`work_policy`]: what a provider runs (images, caps per pod), judged the same by agent and
//!   placement.
//! - [`quantity`]: Kubernetes resource quantities as numbers.

pub mod billing_marks;
pub mod keys;
pub mod members;
pub mod money;
pub mod quantity;
pub mod render_output;
pub mod runtime_env;
pub mod vendor;
pub mod verification;
pub mod work_policy;

pub use billing_marks::BillingState;
pub use keys::{MISMATCH, annotations, finalizers, labels, node_conditions, node_labels};
pub use members::{member_namespace, member_of_namespace};
pub use money::{APT, OCTAS_PER_APT, cost_octas, format_apt};
pub use vendor::Vendor;
pub use verification::{Finding, Judgement, VerificationReport};
