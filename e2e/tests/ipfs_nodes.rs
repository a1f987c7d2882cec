//! The local network's IPFS nodes are real kubo nodes: a file a member's node adds is pinned by
//! the hub's node over loopback, under the CID the member computed, and the hub still serves it
//! once the member's node is gone. The ground `ipfs://` scenes and outputs will stand on.

use pictor_e2e::ipfs::KuboNode;

#[test]
fn the_hub_pins_what_a_member_added_and_keeps_it_when_the_member_goes() {
    let dir = tempfile::tempdir().unwrap();
    let mut member = KuboNode::start("member-a", dir.path()).unwrap();
    let hub = KuboNode::start("hub", dir.path()).unwrap();
    assert_ne!(member.rpc_url().unwrap(), hub.rpc_url().unwrap());

    // A frame and a folder of frames, as a render worker would add them.
    let frames = dir.path().join("out");
    std::fs::create_dir_all(&frames).unwrap();
    for frame in 1..=3 {
        std::fs::write(frames.join(format!("frame_{frame:06}.png")), format!("pixels of frame {frame}"))
            .unwrap();
    }
    let folder = member.add(&frames).unwrap();
    assert!(folder.starts_with("bafy"), "a CIDv1 directory: {folder}");
    let frame = member.add(&frames.join("frame_000002.png")).unwrap();
    assert!(frame.starts_with("bafkrei"), "a raw-leaf CIDv1: {frame}");
    assert!(hub.cat_local(&frame).is_err(), "the hub holds nothing before it pins");

    hub.connect(&member).unwrap();
    hub.pin(&folder).unwrap();
    member.stop();
    assert!(member.cat_local(&frame).is_ok(), "the member's repository keeps its blocks");
    let (hub_frame, hub_by_path) =
        (hub.cat_local(&frame).unwrap(), hub.cat_local(&format!("{folder}/frame_000002.png")).unwrap());
    assert_eq!(hub_frame, b"pixels of frame 2");
    assert_eq!(hub_by_path, hub_frame, "the folder's entry is the frame's CID");
    // The content is its address: the same bytes added anywhere give the same CID.
    let copy = dir.path().join("copy.png");
    std::fs::write(&copy, b"pixels of frame 2").unwrap();
    assert_eq!(hub.add(&copy).unwrap(), frame);
}
