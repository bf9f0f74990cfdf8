//! The committed kernels/proto.cuh is what `cargo xtask codegen` writes (run by CI through
//! `cargo test`, like rust-analyzer's codegen checks).

#[test]
fn committed_proto_cuh_is_fresh() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../kernels/proto.cuh");
    let on_disk = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        on_disk == inc_proto::codegen::header(),
        "{path} is stale or missing: run `cargo xtask codegen` and commit kernels/proto.cuh"
    );
}
