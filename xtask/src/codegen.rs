//! `cargo xtask codegen`: writes kernels/proto.cuh (the kernels' protocol constants and
//! argument block) from inc-proto.

use crate::util::repo_root;

/// Writes [`inc_proto::codegen::header`] to [`inc_proto::codegen::HEADER_PATH`] when it
/// differs from the file there.
pub fn codegen() -> Result<(), String> {
    let path = repo_root()?.join(inc_proto::codegen::HEADER_PATH);
    let text = inc_proto::codegen::header();
    if std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
        println!("{} is up to date", path.display());
        return Ok(());
    }
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}
