//! Our `.proto` against the kubelet's wire format (k8s.io/kubelet v0.37.2): messages encoded
//! with our generated types must have the bytes the kubelet's field numbers and types give.
//! A renumbered or retyped field fails here.

use pictor_device_plugins::v1beta1::{
    AllocateResponse, CdiDevice, ContainerAllocateResponse, ContainerPreferredAllocationRequest, Device,
    DevicePluginOptions, DeviceSpec, ListAndWatchResponse, Mount, NumaNode, PreferredAllocationRequest,
    RegisterRequest, TopologyInfo,
};
use prost::Message;

/// A length-delimited field: tag byte (field << 3 | 2), length, bytes.
fn field(number: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![(number << 3) | 2, u8::try_from(bytes.len()).unwrap()];
    out.extend_from_slice(bytes);
    out
}

#[test]
fn register_request_matches_the_kubelet() {
    let request = RegisterRequest {
        version: "v1beta1".into(),
        endpoint: "p.sock".into(),
        resource_name: "amd.com/gpu".into(),
        options: Some(DevicePluginOptions {
            pre_start_required: true,
            get_preferred_allocation_available: true,
        }),
    };
    let expected = [
        field(1, b"v1beta1"),
        field(2, b"p.sock"),
        field(3, b"amd.com/gpu"),
        // options: bool 1 = true (varint, tag 0x08), bool 2 = true (tag 0x10)
        field(4, &[0x08, 1, 0x10, 1]),
    ]
    .concat();
    assert_eq!(request.encode_to_vec(), expected);
}

#[test]
fn device_list_matches_the_kubelet() {
    let list = ListAndWatchResponse {
        devices: vec![Device {
            id: "GPU-1".into(),
            health: "Healthy".into(),
            topology: Some(TopologyInfo { nodes: vec![NumaNode { id: 1 }] }),
        }],
    };
    // NUMANode.ID is int64 field 1: varint tag 0x08.
    let device = [field(1, b"GPU-1"), field(2, b"Healthy"), field(3, &field(1, &[0x08, 1]))].concat();
    assert_eq!(list.encode_to_vec(), field(1, &device));
}

#[test]
fn allocate_response_matches_the_kubelet() {
    let response = AllocateResponse {
        container_responses: vec![ContainerAllocateResponse {
            envs: [("K".to_string(), "V".to_string())].into(),
            mounts: vec![Mount { container_path: "/c".into(), host_path: "/h".into(), read_only: true }],
            devices: vec![DeviceSpec {
                container_path: "/d".into(),
                host_path: "/d".into(),
                permissions: "rw".into(),
            }],
            annotations: [("A".to_string(), "B".to_string())].into(),
            cdi_devices: vec![CdiDevice { name: "v.com/gpu=0".into() }],
        }],
    };
    let map_entry = |k: &[u8], v: &[u8]| [field(1, k), field(2, v)].concat();
    let container = [
        field(1, &map_entry(b"K", b"V")),
        field(2, &[field(1, b"/c"), field(2, b"/h"), vec![0x18, 1]].concat()),
        field(3, &[field(1, b"/d"), field(2, b"/d"), field(3, b"rw")].concat()),
        field(4, &map_entry(b"A", b"B")),
        field(5, &field(1, b"v.com/gpu=0")),
    ]
    .concat();
    assert_eq!(response.encode_to_vec(), field(1, &container));
}

#[test]
fn preferred_allocation_request_matches_the_kubelet() {
    let request = PreferredAllocationRequest {
        container_requests: vec![ContainerPreferredAllocationRequest {
            available_device_i_ds: vec!["a".into()],
            must_include_device_i_ds: vec!["b".into()],
            allocation_size: 2,
        }],
    };
    let container = [field(1, b"a"), field(2, b"b"), vec![0x18, 2]].concat();
    assert_eq!(request.encode_to_vec(), field(1, &container));
}
