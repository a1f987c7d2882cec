//! Device plugins for every GPU node of a member (DESIGN.md, "Device plugins"): the kubelet
//! device-plugin API v1beta1 served over a unix socket, NVML and ROCm-SMI backends behind one
//! trait, and the node labeller that publishes `pictor.network/gpu.*` labels.
//!
//! Empty until the device-plugin work lands; the crate holds its place in the workspace.
#![forbid(unsafe_code)]
