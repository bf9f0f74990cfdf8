//! Topology of this machine through NVML (feature `nvml`; NVML is loaded at run time).

use nvml_wrapper::{Device, Nvml};

use crate::mesh::MAX_GPUS;
use crate::{GpuInfo, NvlMesh, TopoError, Topology};

/// Upper bound of NVLink indices probed per GPU (`NVML_NVLINK_MAX_LINKS` of recent drivers).
pub const MAX_NVLINKS: u32 = 18;

/// `nvmlIntNvLinkDeviceType_t` values (nvml.h).
const REMOTE_GPU: u32 = 0;
const REMOTE_SWITCH: u32 = 2;
const NVML_SUCCESS: u32 = 0;

fn nvml_err(what: &str, e: impl std::fmt::Display) -> TopoError {
    TopoError::Nvml(format!("{what}: {e}"))
}

/// Reads the GPUs of this machine and their NVLink mesh from NVML and classifies it.
///
/// For each GPU and each active NVLink: a link to another GPU adds 1 to that pair; a link
/// to an NVSwitch adds 1 to the GPU's switch-link count. Then `mesh[i][j] = direct(i, j) +
/// min(switch(i), switch(j))` (all NVSwitches of a node assumed joined). Direct counts
/// seen differently from the two ends take the smaller. Fails with a clear error when
/// NVML (the NVIDIA driver) is missing or there is no GPU.
pub fn from_nvml() -> Result<Topology, TopoError> {
    let nvml = Nvml::init().map_err(|e| {
        nvml_err(
            "cannot initialise NVML (is the NVIDIA driver installed and loaded?)",
            e,
        )
    })?;
    let count = nvml
        .device_count()
        .map_err(|e| nvml_err("device count", e))? as usize;
    if count == 0 {
        return Err(TopoError::Nvml("NVML reports no GPU".into()));
    }
    if count > MAX_GPUS {
        return Err(TopoError::Nvml(format!(
            "{count} GPUs; at most {MAX_GPUS} supported"
        )));
    }
    let mut devices = Vec::with_capacity(count);
    let mut gpus = Vec::with_capacity(count);
    let mut bus = Vec::with_capacity(count);
    for index in 0..count {
        let d = nvml
            .device_by_index(index as u32)
            .map_err(|e| nvml_err(&format!("GPU {index}"), e))?;
        let pci = d
            .pci_info()
            .map_err(|e| nvml_err(&format!("PCI info of GPU {index}"), e))?;
        bus.push((pci.domain, pci.bus, pci.device));
        gpus.push(GpuInfo {
            index,
            name: d.name().unwrap_or_else(|_| format!("GPU{index}")),
            pci_bus_id: Some(pci.bus_id),
            uuid: d.uuid().ok(),
        });
        devices.push(d);
    }

    let mut direct = vec![vec![0u32; count]; count];
    let mut switch_links = vec![0u32; count];
    for (i, d) in devices.iter().enumerate() {
        for link in 0..MAX_NVLINKS {
            let wrapper = d.link_wrapper_for(link);
            if !wrapper.is_active().unwrap_or(false) {
                continue;
            }
            // Unknown type (old driver): try it as a GPU; an NVSwitch's PCI id matches no GPU.
            let kind = remote_device_type(&nvml, d, link).unwrap_or(REMOTE_GPU);
            if kind == REMOTE_SWITCH {
                if let Some(s) = switch_links.get_mut(i) {
                    *s += 1;
                }
                continue;
            }
            let Ok(remote) = wrapper.remote_pci_info() else {
                continue;
            };
            let key = (remote.domain, remote.bus, remote.device);
            if let Some(j) = bus.iter().position(|b| *b == key) {
                if j != i {
                    if let Some(c) = direct.get_mut(i).and_then(|r| r.get_mut(j)) {
                        *c += 1;
                    }
                }
            }
        }
    }
    let get = |m: &Vec<Vec<u32>>, i: usize, j: usize| {
        m.get(i).and_then(|r| r.get(j)).copied().unwrap_or(0)
    };
    let mesh = NvlMesh::from_fn(count, |i, j| {
        if i == j {
            return 0;
        }
        let sw = switch_links
            .get(i)
            .copied()
            .unwrap_or(0)
            .min(switch_links.get(j).copied().unwrap_or(0));
        get(&direct, i, j).min(get(&direct, j, i)) + sw
    })?;
    Topology::new(gpus, mesh)
}

/// Remote end type of `link` of `device` through the raw NVML call (nvml-wrapper 0.13's
/// own wrapper always answers Unknown). `None` when the symbol is missing or the call fails.
fn remote_device_type(nvml: &Nvml, device: &Device<'_>, link: u32) -> Option<u32> {
    let f = nvml
        .lib()
        .nvmlDeviceGetNvLinkRemoteDeviceType
        .as_ref()
        .ok()?;
    let mut kind: u32 = u32::MAX;
    // SAFETY: `f` was resolved from the loaded NVML library with the signature nvml.h
    // declares; `device.handle()` is a live handle owned by `nvml`, which outlives this
    // call; `kind` is a valid, writable `unsigned int` for the out-parameter.
    let rc = unsafe { f(device.handle(), link, &mut kind) };
    (rc == NVML_SUCCESS).then_some(kind)
}
