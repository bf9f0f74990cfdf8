//! The soak on the sim backend (CPU threads on shared memory): host calls, no graphs.
//! The same plan, patterns and checks as on GPUs, so `cargo test` runs the whole soak.

use bytemuck::Pod;
use inc_comm::{Comm, DType, Element, ReduceOp};

use super::check::pattern;
use super::plan::{Batch, Call, Geometry};
use super::Exec;

/// Bytes in u64 storage, so that every element type's slices are aligned.
struct Aligned {
    words: Vec<u64>,
    len: usize,
}

impl Aligned {
    fn new(len: usize) -> Self {
        Self {
            words: vec![0; len.div_ceil(8)],
            len,
        }
    }
    fn from(bytes: &[u8]) -> Self {
        let mut a = Self::new(bytes.len());
        a.bytes_mut().copy_from_slice(bytes);
        a
    }
    fn bytes(&self) -> &[u8] {
        let b: &[u8] = bytemuck::cast_slice(&self.words);
        b.get(..self.len).unwrap_or(&[])
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        let b: &mut [u8] = bytemuck::cast_slice_mut(&mut self.words);
        b.get_mut(..self.len).unwrap_or(&mut [])
    }
}

/// One rank's soak state on the sim backend.
pub struct SimExec<'a> {
    comm: &'a Comm,
    /// This rank's pattern per dtype (in `DType::ALL` order).
    patterns: Vec<Aligned>,
    arenas: [Aligned; 2],
}

impl<'a> SimExec<'a> {
    /// Makes this rank's patterns and the two arenas.
    pub fn new(comm: &'a Comm, seed: u64, geo: &Geometry) -> Self {
        let patterns = DType::ALL
            .iter()
            .map(|d| Aligned::from(&pattern(seed, comm.rank(), *d, geo)))
            .collect();
        Self {
            comm,
            patterns,
            arenas: [Aligned::new(geo.arena_bytes), Aligned::new(geo.arena_bytes)],
        }
    }
}

fn typed<T: Pod>(b: &[u8]) -> Result<&[T], String> {
    bytemuck::try_cast_slice(b).map_err(|e| format!("input view: {e}"))
}

fn typed_mut<T: Pod>(b: &mut [u8]) -> Result<&mut [T], String> {
    bytemuck::try_cast_slice_mut(b).map_err(|e| format!("output view: {e}"))
}

fn one<T: Element>(comm: &Comm, c: &Call, pattern: &[u8], arena: &mut [u8]) -> Result<(), String> {
    let es = c.dtype.size();
    let input = pattern
        .get(c.in_off * es..(c.in_off + c.n) * es)
        .ok_or("input outside the pattern")?;
    let output = arena
        .get_mut(c.out_off..c.out_off + c.bytes())
        .ok_or("output outside the arena")?;
    let input: &[T] = typed(input)?;
    let output: &mut [T] = typed_mut(output)?;
    let op: ReduceOp = c.op;
    let work = match (c.path, c.in_place) {
        (None, true) => {
            output.copy_from_slice(input);
            comm.allreduce_host(output, op)
        }
        (None, false) => comm.allreduce_host_out(input, output, op),
        // host calls on a forced path are out of place (not counted as in place)
        (Some(p), _) => comm.allreduce_host_using(p, input, output, op),
    };
    work.and_then(|w| w.wait())
        .map_err(|e| format!("{}: {e}", c.describe()))
}

impl Exec for SimExec<'_> {
    fn launch(&mut self, slot: usize, batch: &Batch) -> Result<(), String> {
        let arena = self.arenas.get_mut(slot).ok_or("no such slot")?.bytes_mut();
        // poison the outputs: an element the call does not write reads as NaN
        arena.get_mut(..batch.bytes).unwrap_or(&mut []).fill(0xff);
        for c in &batch.calls {
            let d = DType::ALL.iter().position(|d| *d == c.dtype).unwrap_or(0);
            let pattern = self.patterns.get(d).ok_or("no pattern")?.bytes();
            match c.dtype {
                DType::Bf16 => one::<half::bf16>(self.comm, c, pattern, arena)?,
                DType::F16 => one::<half::f16>(self.comm, c, pattern, arena)?,
                DType::F32 => one::<f32>(self.comm, c, pattern, arena)?,
            }
        }
        Ok(())
    }

    fn finish(&mut self, slot: usize, batch: &Batch) -> Result<&[u8], String> {
        self.comm.check().map_err(|e| e.to_string())?;
        let arena = self.arenas.get(slot).ok_or("no such slot")?.bytes();
        arena
            .get(..batch.bytes)
            .ok_or_else(|| "batch larger than the arena".to_string())
    }
}
