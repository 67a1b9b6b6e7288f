"""The inverted IPC kernel Mirage adds IPC with (``obs_generator.invert_ipc_kernel``), precomputed
so that Mirage never inverts at run time nor writes next to a (shared, read-only) CRDS file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits

from mirage_data.io.atomic import atomic_path

KERNEL_PREFIX = "Kernel_to_add_IPC_effects_from_"


def invert_ipc_kernel(kernel: np.ndarray) -> np.ndarray:
    """Turn a kernel that removes IPC into one that adds it (2-D ``(ky, kx)`` or 4-D
    ``(ky, kx, ny, nx)``; 2048-pixel axes keep their 4-pixel reference border), by dividing a
    delta function by the kernel in Fourier space over the kernel axes, as Mirage does."""
    shape = kernel.shape
    ys, ye = (4, 2044) if shape[-2] == 2048 else (0, shape[-2])
    xs, xe = (4, 2044) if shape[-1] == 2048 else (0, shape[-1])
    sub = kernel[..., ys:ye, xs:xe] if kernel.ndim == 4 else kernel[ys:ye, xs:xe]
    sub4 = sub if sub.ndim == 4 else sub[:, :, None, None]
    delta = np.zeros_like(sub4, dtype=np.float64)
    delta[sub4.shape[0] // 2, sub4.shape[1] // 2] = 1.0
    out = np.fft.fftshift(
        np.fft.ifft2(np.fft.fft2(delta, axes=(0, 1)) / np.fft.fft2(sub4, axes=(0, 1)), axes=(0, 1)), axes=(0, 1)
    )
    real = np.real(out)
    if kernel.ndim == 2:
        return real[:, :, 0, 0]
    full = np.array(kernel, dtype=np.float64, copy=True)
    full[..., ys:ye, xs:xe] = real
    return full


def write_inverted_kernel(ipc_file: Path, folder: Path, detector: str, instrument: str) -> Path:
    """Write ``Kernel_to_add_IPC_effects_from_<ipc file>`` into *folder* (atomically; kept if it
    is already there) in Mirage's layout (empty primary, kernel in extension 1)."""
    out = Path(folder) / (KERNEL_PREFIX + Path(ipc_file).name)
    if out.is_file():
        return out
    kernel = fits.getdata(ipc_file)  # the first HDU with data, as Mirage reads it
    inverted = invert_ipc_kernel(np.asarray(kernel, dtype=np.float64))
    hdu = fits.ImageHDU(inverted)
    hdu.header["DETECTOR"] = detector
    hdu.header["INSTRUME"] = instrument
    hdu.header["IPCSRC"] = (Path(ipc_file).name, "CRDS IPC file inverted by mirage-data")
    with atomic_path(out) as tmp:
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp)
    return out
