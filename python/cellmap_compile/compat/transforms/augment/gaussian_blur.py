"""``GaussianBlur``: an isotropic Gaussian over the last 2 or 3 axes, replicate edges."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class GaussianBlur(torch.nn.Module):
    """Depthwise convolution with a normalised ``kernel_size``\\ :sup:`dim` Gaussian of ``sigma``
    (voxels), edges replicated, output shape equal to the input's, float32.

    ``dim`` is 2 (blur the last two axes) or 3; ``kernel_size`` must be odd. A tensor with exactly
    ``dim`` axes is blurred as one image; a longer one is ``[C, ...]`` or ``[N, C, ...]`` with
    ``channels`` channels. The compat loader runs it in Rust as ``gaussian_blur: {sigma:
    [sigma, sigma, sigma], radius: kernel_size // 2}`` (``dim=2``: ``[0, sigma, sigma]``, a blur
    within each z slice).
    """

    def __init__(self, kernel_size: int = 3, sigma: float = 0.1, dim: int = 2, channels: int = 1) -> None:
        super().__init__()
        if dim not in (2, 3):
            raise AssertionError(f"GaussianBlur supports dim 2 or 3, got {dim}")
        if kernel_size % 2 != 1:
            raise AssertionError(f"GaussianBlur needs an odd kernel_size, got {kernel_size}")
        self.kernel_size = kernel_size
        self.kernel_shape = (kernel_size,) * dim
        self.sigma = sigma
        self.dim = dim
        self.channels = channels
        self.kernel = self._kernel()
        weight = self.kernel.reshape(1, 1, *self.kernel_shape).repeat(channels, 1, *(1,) * dim)
        self.register_buffer("weight", weight, persistent=False)

    def _kernel(self) -> torch.Tensor:
        """The normalised kernel, ``kernel_shape``."""
        offsets = (torch.arange(self.kernel_size) - self.kernel_size // 2).to(torch.float32)
        squared = sum(g**2 for g in torch.meshgrid(*([offsets] * self.dim), indexing="ij"))
        kernel = torch.exp(-squared / (2 * self.sigma**2))
        return kernel / kernel.sum()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Blur ``x`` (see the class docs for the accepted shapes)."""
        weight = self.weight.to(x.device)
        image = x.to(torch.float32)
        single = image.ndim == self.dim
        if single:
            image = image.unsqueeze(0)
        r = self.kernel_size // 2
        padded = F.pad(image, (r,) * (2 * self.dim), mode="replicate")
        conv = F.conv3d if self.dim == 3 else F.conv2d
        out = conv(padded, weight, groups=self.channels)
        return out.squeeze(0) if single else out

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, sigma={self.sigma}, dim={self.dim}, channels={self.channels}"
