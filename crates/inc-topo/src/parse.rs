//! Parser for the matrix printed by `nvidia-smi topo -m`.
//!
//! Handles tabs or spaces, trailing whitespace, CRLF, ANSI escape codes, NIC rows and
//! columns (`mlx5_*`, `NIC<k>`), the `CPU Affinity` / `NUMA Affinity` / `GPU NUMA ID`
//! columns (cells may be empty), legend or no legend, and `NV<k>` for any `k` in 1..=255.
//! Only the GPU×GPU block is read; everything else is checked just enough to reject
//! garbage. Errors name the 1-based line and the reason.

use crate::mesh::MAX_GPUS;
use crate::{NvlMesh, TopoError, Topology};

/// Largest `NV<k>` link count accepted in text.
pub const MAX_TEXT_LINKS: u32 = 255;

/// Link kinds that mean "no direct NVLink" (PCIe / SMP paths; `SOC` is the pre-2017 name
/// of `SYS`; `NVB` is a path through another GPU's NVLinks, not a direct link).
const NON_NVLINK: [&str; 8] = ["SYS", "SOC", "NODE", "PHB", "PXB", "PIX", "PSB", "NVB"];

/// Parses `nvidia-smi topo -m` output into a [`Topology`] (GPUs named `GPU0..`, PCI id and
/// UUID unknown) and classifies it.
///
/// ```
/// let text = "\tGPU0\tGPU1\tCPU Affinity\n\
///             GPU0\t X \tNV4\t0-5\n\
///             GPU1\tNV4\t X \t0-5\n";
/// let topo = inc_topo::parse_nvidia_smi_topo(text)?;
/// assert_eq!(topo.mesh.links(0, 1), 4);
/// assert_eq!(topo.class.name(), "fully_connected");
/// # Ok::<(), inc_topo::TopoError>(())
/// ```
pub fn parse_nvidia_smi_topo(text: &str) -> Result<Topology, TopoError> {
    let lines: Vec<(usize, Vec<String>)> = text
        .split('\n')
        .enumerate()
        .map(|(i, l)| (i + 1, tokens(&strip_ansi(l))))
        .collect();
    let mut iter = lines.iter();

    // 1. Header: first line starting with `GPU0` that is not the GPU0 row.
    let (header_line, header) = loop {
        let Some((no, toks)) = iter.next() else {
            let last = lines.len().max(1);
            return Err(err(
                last,
                "no header line starting with GPU0 found (is this `nvidia-smi topo -m` output?)",
            ));
        };
        let Some(first) = toks.first() else { continue };
        if first == "GPU0" && toks.get(1).map(String::as_str) != Some("X") {
            break (*no, toks);
        }
        if gpu_index(first).is_some() {
            return Err(err(
                *no,
                format!("GPU row '{first}' before the header line (GPU0 GPU1 ...)"),
            ));
        }
    };
    let n = count_gpu_columns(header_line, header)?;
    let devices = device_columns(header_line, header, n)?;

    // 2. Rows until a blank line / legend once every GPU row is read.
    let mut cells: Vec<Vec<Cell>> = Vec::with_capacity(n);
    let mut row_lines: Vec<usize> = Vec::with_capacity(n);
    let mut end_line = lines.len().max(1);
    for (no, toks) in iter {
        let Some(first) = toks.first() else {
            if cells.is_empty() {
                continue;
            }
            end_line = *no;
            break;
        };
        if first.starts_with("Legend")
            || (first == "NIC" && toks.get(1).is_some_and(|t| t.starts_with("Legend")))
        {
            end_line = *no;
            break;
        }
        if let Some(k) = gpu_index(first) {
            if cells.len() == n {
                return Err(err(
                    *no,
                    format!(
                        "row {first} but the header has only {n} GPU columns (GPU0..GPU{})",
                        n.saturating_sub(1)
                    ),
                ));
            }
            if k != cells.len() {
                return Err(err(*no, format!("found row {first}, expected row GPU{} (rows must be GPU0, GPU1, ... in order, once each)", cells.len())));
            }
            cells.push(parse_row(*no, k, toks, n)?);
            row_lines.push(*no);
            continue;
        }
        if first
            .strip_prefix("GPU")
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(err(
                *no,
                format!("row label '{first}' is not a valid GPU index"),
            ));
        }
        if devices.iter().any(|d| d == first) {
            continue; // NIC / device row: not needed.
        }
        if cells.len() == n {
            end_line = *no;
            break; // Text after a complete matrix (e.g. a legend without a blank line).
        }
        return Err(err(*no, format!("unexpected line starting with '{}' inside the matrix (not a GPU row, not one of the header's device columns)", shorten(first))));
    }
    if cells.len() < n {
        return Err(err(end_line, format!("matrix ends after {} GPU row(s) but the header has {n} GPU columns; row GPU{} is missing", cells.len(), cells.len())));
    }

    // 3. Symmetry and the mesh.
    let mut rows = vec![vec![0u32; n]; n];
    for i in 0..n {
        for j in 0..n {
            let a = cell(&cells, i, j);
            let b = cell(&cells, j, i);
            if i < j && a.links() != b.links() {
                let line = row_lines.get(j).copied().unwrap_or(header_line);
                return Err(err(
                    line,
                    format!(
                        "matrix is not symmetric: GPU{j}->GPU{i} is {} but GPU{i}->GPU{j} is {}",
                        b.show(),
                        a.show()
                    ),
                ));
            }
            if let Some(slot) = rows.get_mut(i).and_then(|r| r.get_mut(j)) {
                *slot = a.links();
            }
        }
    }
    let mesh = NvlMesh::new(rows).map_err(|e| err(header_line, e.to_string()))?;
    Ok(Topology::from_mesh(mesh))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cell {
    Diag,
    Nv(u32),
    Other,
}

impl Cell {
    fn links(self) -> u32 {
        match self {
            Cell::Nv(k) => k,
            _ => 0,
        }
    }
    fn show(self) -> String {
        match self {
            Cell::Diag => "X".into(),
            Cell::Nv(k) => format!("NV{k}"),
            Cell::Other => "a PCIe path (no NVLink)".into(),
        }
    }
}

fn cell(cells: &[Vec<Cell>], i: usize, j: usize) -> Cell {
    cells
        .get(i)
        .and_then(|r| r.get(j))
        .copied()
        .unwrap_or(Cell::Other)
}

fn err(line: usize, reason: impl Into<String>) -> TopoError {
    TopoError::Parse {
        line,
        reason: reason.into(),
    }
}

fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(24).collect();
    if s.chars().nth(24).is_some() {
        out.push('…');
    }
    out
}

/// Removes ANSI escape sequences (CSI `ESC [ ... final`, and lone `ESC x`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        if chars.next() == Some('[') {
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
    }
    out
}

fn tokens(line: &str) -> Vec<String> {
    line.trim_start_matches('\u{feff}')
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// `GPU<k>` with `k` decimal (no sign, at most 3 digits) -> `k`.
fn gpu_index(tok: &str) -> Option<usize> {
    let digits = tok.strip_prefix("GPU")?;
    if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return None;
    }
    digits.parse().ok()
}

fn count_gpu_columns(line: usize, header: &[String]) -> Result<usize, TopoError> {
    let mut n = 0;
    for tok in header {
        match gpu_index(tok) {
            Some(k) if k == n => {
                n += 1;
                if n > MAX_GPUS {
                    return Err(err(line, format!("header has more than {MAX_GPUS} GPU columns; at most {MAX_GPUS} are supported")));
                }
            }
            Some(_) => {
                return Err(err(line, format!("header column {} is '{tok}', expected 'GPU{n}' (GPU columns must be GPU0, GPU1, ... in order, once each)", n + 1)));
            }
            None => break,
        }
    }
    Ok(n)
}

/// Names of the non-GPU device columns (NICs) between the GPU columns and the affinity
/// columns.
fn device_columns(line: usize, header: &[String], n: usize) -> Result<Vec<String>, TopoError> {
    let mut out = Vec::new();
    for tok in header.iter().skip(n) {
        if matches!(tok.as_str(), "CPU" | "NUMA" | "GPU") {
            break;
        }
        if tok.starts_with("GPU") {
            return Err(err(line, format!("header column '{}' after the device columns; GPU columns must come first, as GPU0..GPU{}", shorten(tok), n.saturating_sub(1))));
        }
        out.push(tok.clone());
    }
    Ok(out)
}

fn parse_row(line: usize, row: usize, toks: &[String], n: usize) -> Result<Vec<Cell>, TopoError> {
    let have = toks.len().saturating_sub(1);
    if have < n {
        return Err(err(
            line,
            format!(
                "row GPU{row} has {have} cell(s), the header has {n} GPU columns (truncated row?)"
            ),
        ));
    }
    let mut out = Vec::with_capacity(n);
    for (j, tok) in toks.iter().skip(1).take(n).enumerate() {
        let c = parse_cell(line, tok, j)?;
        if j == row && c != Cell::Diag {
            return Err(err(
                line,
                format!(
                    "diagonal cell of GPU{row} is '{}', expected X",
                    shorten(tok)
                ),
            ));
        }
        if j != row && c == Cell::Diag {
            return Err(err(
                line,
                format!("cell GPU{row}->GPU{j} is X but only the diagonal may be X"),
            ));
        }
        out.push(c);
    }
    Ok(out)
}

fn parse_cell(line: usize, tok: &str, col: usize) -> Result<Cell, TopoError> {
    if tok == "X" {
        return Ok(Cell::Diag);
    }
    if NON_NVLINK.contains(&tok) {
        return Ok(Cell::Other);
    }
    if let Some(digits) = tok.strip_prefix("NV") {
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err(
                line,
                format!(
                    "cell '{}' in column GPU{col}: NV must be followed by a link count",
                    shorten(tok)
                ),
            ));
        }
        let k: u32 = digits.parse().unwrap_or(u32::MAX);
        if k == 0 {
            return Err(err(
                line,
                format!(
                    "cell 'NV0' in column GPU{col}: a bonded set of zero NVLinks is not a link"
                ),
            ));
        }
        if k > MAX_TEXT_LINKS {
            return Err(err(line, format!("cell '{}' in column GPU{col}: more than {MAX_TEXT_LINKS} NVLinks is not plausible", shorten(tok))));
        }
        return Ok(Cell::Nv(k));
    }
    Err(err(
        line,
        format!(
            "cell '{}' in column GPU{col} is not a link type (X, NV<k>, {})",
            shorten(tok),
            NON_NVLINK.join(", ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansi_is_stripped() {
        assert_eq!(strip_ansi("\u{1b}[4m\tGPU0\u{1b}[0m x"), "\tGPU0 x");
        assert_eq!(strip_ansi("a\u{1b}"), "a");
        assert_eq!(strip_ansi("a\u{1b}[12;3"), "a");
    }

    #[test]
    fn gpu_index_rules() {
        assert_eq!(gpu_index("GPU0"), Some(0));
        assert_eq!(gpu_index("GPU15"), Some(15));
        assert_eq!(gpu_index("GPU"), None);
        assert_eq!(gpu_index("GPU01"), None);
        assert_eq!(gpu_index("GPU+1"), None);
        assert_eq!(gpu_index("GPU1234"), None);
    }

    #[test]
    fn cells() {
        assert_eq!(parse_cell(1, "NV18", 0), Ok(Cell::Nv(18)));
        assert_eq!(parse_cell(1, "SYS", 0), Ok(Cell::Other));
        assert_eq!(parse_cell(1, "NVB", 0), Ok(Cell::Other));
        assert!(parse_cell(1, "NV0", 0).is_err());
        assert!(parse_cell(1, "NV", 0).is_err());
        assert!(parse_cell(1, "NV99999999999", 0).is_err());
        assert!(parse_cell(1, "NV-1", 0).is_err());
        assert!(parse_cell(1, "foo", 0).is_err());
    }

    #[test]
    fn single_gpu() {
        let t = parse_nvidia_smi_topo("\tGPU0\tCPU Affinity\tNUMA Affinity\nGPU0\t X \t0-7\t0\n")
            .unwrap();
        assert_eq!(t.num_gpus(), 1);
        assert_eq!(t.class.name(), "fully_connected");
    }
}
