//! Containers: the index of what runs on the node, kept current from containerd, and the
//! facts about each container that matter for T1053.007.

pub mod attributor;
pub mod containerd;
pub mod index;
pub mod oci;
pub mod pending;
