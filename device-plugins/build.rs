//! Generates the kubelet device-plugin API (client and server) into OUT_DIR from our own copy of
//! its definition; nothing generated is committed. With the `rocm` feature, also builds the
//! stand-ins for the two ROCm-SMI functions Debian's librocm_smi64 5.2.3 lacks (see
//! rocm-compat/rsmi_compat.c).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/deviceplugin/v1beta1/api.proto";
    println!("cargo:rerun-if-changed={proto}");
    tonic_prost_build::configure().compile_protos(&[proto], &["proto"])?;

    if std::env::var_os("CARGO_FEATURE_ROCM").is_some() {
        let compat = "rocm-compat/rsmi_compat.c";
        println!("cargo:rerun-if-changed={compat}");
        cc::Build::new().file(compat).cargo_metadata(false).compile("rsmi_compat");
        // Whole archive: nothing in our own code calls these, only rocm_smi_lib does, so a
        // linker that reads archives once, in order, would otherwise leave them out.
        println!("cargo:rustc-link-search=native={}", std::env::var("OUT_DIR")?);
        println!("cargo:rustc-link-lib=static:+whole-archive=rsmi_compat");
    }
    Ok(())
}
