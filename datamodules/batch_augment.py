"""Random crops and flips of a whole uint8 batch on its device, parameters drawn per image.

torchvision's transforms draw one set of parameters per call, so a batch would be cropped all alike; per-image
calls are one Python step per image. Here a padded crop is one index_select of pixel rows, a resized crop one
grid_sample with an affine matrix per image.
"""

import math

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

CROPS = ("random", "random_resized", "none")
PADDING_MODES = ("constant", "edge", "reflect", "symmetric")


class BatchAugment:
    """crop "random": pad (as RandomCrop's padding_mode) and cut an HxW window (uint8 out); "random_resized": a box
    of area `scale` and aspect `ratio` resized bilinearly (float in [0, 255] out, as RandomResizedCrop); flip: p=0.5."""

    def __init__(
        self,
        crop: str = "random",
        padding: int = 4,
        padding_mode: str = "constant",
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip: bool = True,
    ):
        if crop not in CROPS or padding_mode not in PADDING_MODES or padding < 0:
            raise ValueError(
                f"crop must be one of {CROPS}, padding_mode one of {PADDING_MODES}, padding >= 0; got {crop!r}, {padding_mode!r}, {padding}"
            )
        self.crop, self.padding_mode, self.flip = crop, padding_mode, flip
        self.padding = padding if crop == "random" else 0
        self.scale, self.ratio = (float(scale[0]), float(scale[1])), (float(ratio[0]), float(ratio[1]))

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        flipped = torch.rand(len(images), device=images.device) < (0.5 if self.flip else 0.0)
        if self.crop == "random_resized":
            return self._resize_boxes(
                images, flipped, *self._random_boxes(len(images), *images.shape[2:], images.device)
            )
        return self._shifted_crop(images, flipped)

    def _shifted_crop(self, images: torch.Tensor, flipped: torch.Tensor) -> torch.Tensor:
        """Every run of W pixels of the padded batch (and its mirror) is a row of one strided view: one index_select."""
        batch, channels, height, width = images.shape
        device, pad = images.device, self.padding
        padded = TF.pad(images, [pad], padding_mode=self.padding_mode) if pad else images
        if self.flip:
            padded = torch.cat([padded, padded.flip(3)])  # sample b mirrored is sample batch + b
        padded_height, padded_width = padded.shape[2:]
        source = torch.arange(batch, device=device) + batch * flipped
        top, left = torch.randint(0, 2 * pad + 1, (2, batch, 1, 1), device=device)
        first_rows = (source[:, None, None] * channels + torch.arange(channels, device=device)[:, None]) * padded_height
        starts = (first_rows + top + torch.arange(height, device=device)) * padded_width + left  # (B, C, H)
        runs = padded.reshape(-1).unfold(0, width, 1)
        return runs.index_select(0, starts.view(-1)).view(batch, channels, height, width)

    @staticmethod
    def _resize_boxes(images, flipped, box_height, box_width, top, left) -> torch.Tensor:
        """Each image's box resized to the image size (bilinear), mirrored where flipped: torchvision's crop, then resize."""
        batch, _, height, width = images.shape
        # affine_grid maps output [-1, 1] to input [-1, 1] (outer pixel edges); a negative x scale mirrors
        theta = torch.zeros(batch, 2, 3, device=images.device)
        theta[:, 0, 0] = torch.where(flipped, -1.0, 1.0) * box_width / width
        theta[:, 0, 2] = (2 * left + box_width) / width - 1
        theta[:, 1, 1] = box_height / height
        theta[:, 1, 2] = (2 * top + box_height) / height - 1
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        # sample no further out than the centres of the box's edge pixels, as a crop before the resize does
        low = torch.stack([(2 * left + 1) / width - 1, (2 * top + 1) / height - 1], dim=1)[:, None, None]
        high = low + torch.stack([2 * (box_width - 1) / width, 2 * (box_height - 1) / height], dim=1)[:, None, None]
        grid = grid.clamp(low, high)
        return F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)

    def _random_boxes(self, batch: int, height: int, width: int, device: torch.device) -> tuple[torch.Tensor, ...]:
        """RandomResizedCrop.get_params for every image at once: the first of 10 tries that fits, else the centred fallback."""
        area = height * width * torch.empty(batch, 10, device=device).uniform_(*self.scale)
        aspect = torch.exp(torch.empty(batch, 10, device=device).uniform_(*map(math.log, self.ratio)))
        box_width, box_height = torch.sqrt(area * aspect).round(), torch.sqrt(area / aspect).round()
        fits = (box_width > 0) & (box_width <= width) & (box_height > 0) & (box_height <= height)
        first, any_fits = fits.float().argmax(1, keepdim=True), fits.any(1)
        (low, high), ratio = self.ratio, width / height
        fallback_width = round(height * high) if ratio > high else width
        fallback_height = round(width / low) if ratio < low else height
        box_width = torch.where(any_fits, box_width.gather(1, first)[:, 0], float(fallback_width))
        box_height = torch.where(any_fits, box_height.gather(1, first)[:, 0], float(fallback_height))
        top, left = torch.rand(2, batch, device=device)
        top = torch.where(
            any_fits, torch.floor(top * (height - box_height + 1)), float((height - fallback_height) // 2)
        )
        left = torch.where(any_fits, torch.floor(left * (width - box_width + 1)), float((width - fallback_width) // 2))
        return box_height, box_width, top, left
