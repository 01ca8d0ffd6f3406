"""Random crops and horizontal flips of a whole batch at once, on the batch's device, with parameters drawn per image.

torchvision's transforms draw one set of random parameters per call, so a batch passed to them is
cropped and flipped all alike; per-image parameters would need one call per image. Here each image
gets its own crop offset (or box) and flip, computed for the batch in a few tensor operations:
a random crop with padding is one index_select of uint8 pixel rows (exact copies, no interpolation),
a random-resized crop is one affine_grid + grid_sample with one affine matrix per image.
"""

import math

import torch
import torch.nn.functional as F

CROPS = ("random", "random_resized", "none")
PADDING_MODES = ("constant", "edge", "reflect", "symmetric")


class BatchAugment:
    """uint8 (B, C, H, W) images -> augmented images of the same size, on the same device.

    crop: "random" pads by `padding` pixels on every side (filled as torchvision's RandomCrop
    `padding_mode`) and cuts an HxW window at a random offset; "random_resized" cuts a box of random
    area fraction in `scale` and aspect ratio in `ratio` and resizes it to HxW (bilinear), as
    torchvision's RandomResizedCrop does; "none" keeps the image. flip: mirror left-right with
    probability 0.5. "random" and "none" return uint8, "random_resized" float in [0, 255].
    """

    def __init__(
        self,
        crop: str = "random",
        padding: int = 4,
        padding_mode: str = "constant",
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip: bool = True,
    ):
        if crop not in CROPS:
            raise ValueError(f"unknown crop {crop!r}; choose one of {CROPS}")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"unknown padding_mode {padding_mode!r}; choose one of {PADDING_MODES}")
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding}")
        self.crop = crop
        self.padding = padding if crop == "random" else 0
        self.padding_mode = padding_mode
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.flip = flip

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        flipped = (
            torch.rand(len(images), device=images.device) < 0.5
            if self.flip
            else torch.zeros(len(images), dtype=torch.bool, device=images.device)
        )
        if self.crop == "random_resized":
            return self._random_resized_crop(images, flipped)
        return self._shifted_crop(images, flipped)

    def _shifted_crop(self, images: torch.Tensor, flipped: torch.Tensor) -> torch.Tensor:
        """A window of the padded image at a random offset, mirrored where flipped.

        Every run of W consecutive pixels of the padded batch (and of its mirror image) is a row of one
        strided view of it, so a single index_select copies the rows of all windows, whole rows at a time.
        """
        batch, channels, height, width = images.shape
        pad = self.padding
        padded = self._pad(images)
        if self.flip:
            padded = torch.cat([padded, padded.flip(3)])  # sample b mirrored is sample batch + b
        padded_height, padded_width = padded.shape[2:]
        device = images.device
        source = torch.arange(batch, device=device) + batch * flipped
        top = torch.randint(0, 2 * pad + 1, (batch, 1, 1), device=device)
        left = torch.randint(0, 2 * pad + 1, (batch, 1, 1), device=device)
        first_rows = (
            source[:, None, None] * channels + torch.arange(channels, device=device)[:, None]
        ) * padded_height + top
        starts = (
            first_rows + torch.arange(height, device=device)
        ) * padded_width + left  # (B, C, H): where each output row starts
        runs = padded.reshape(-1).unfold(0, width, 1)
        return runs.index_select(0, starts.view(-1)).view(batch, channels, height, width)

    def _pad(self, images: torch.Tensor) -> torch.Tensor:
        """Padded by `padding` on every side as torchvision pads: zeros (constant) or by index maps of the rows and columns."""
        pad = self.padding
        if pad == 0:
            return images
        if self.padding_mode == "constant":
            return F.pad(images, (pad, pad, pad, pad))
        height, width = images.shape[2:]
        if pad >= min(height, width) and self.padding_mode != "edge":
            raise ValueError(
                f"padding {pad} must be smaller than the image ({height}x{width}) to {self.padding_mode}-pad it"
            )
        for dim, size in (
            (2, height),
            (3, width),
        ):  # only the borders are gathered: a gather across the whole width is slow
            before = self._fold_into(torch.arange(-pad, 0, device=images.device), size)
            after = self._fold_into(torch.arange(size, size + pad, device=images.device), size)
            images = torch.cat([images.index_select(dim, before), images, images.index_select(dim, after)], dim)
        return images

    def _fold_into(self, position: torch.Tensor, size: int) -> torch.Tensor:
        """Positions outside [0, size) mapped inside as padding_mode pads."""
        if self.padding_mode == "reflect":  # ... 2 1 | 0 1 2 ... n-1 | n-2 ...
            position = torch.where(
                position < 0, -position, torch.where(position >= size, 2 * (size - 1) - position, position)
            )
        elif self.padding_mode == "symmetric":  # ... 1 0 | 0 1 2 ... n-1 | n-1 ...
            position = torch.where(
                position < 0, -position - 1, torch.where(position >= size, 2 * size - 1 - position, position)
            )
        return position.clamp(0, size - 1)  # edge: the nearest pixel

    def _random_resized_crop(self, images: torch.Tensor, flipped: torch.Tensor) -> torch.Tensor:
        box_height, box_width, top, left = self._random_boxes(len(images), *images.shape[2:], images.device)
        return self._resize_boxes(images, flipped, box_height, box_width, top, left)

    @staticmethod
    def _resize_boxes(
        images: torch.Tensor,
        flipped: torch.Tensor,
        box_height: torch.Tensor,
        box_width: torch.Tensor,
        top: torch.Tensor,
        left: torch.Tensor,
    ) -> torch.Tensor:
        """Each image's box [top, top + h) x [left, left + w) resized to the full image size (bilinear), mirrored where flipped."""
        batch, _, height, width = images.shape
        # affine_grid maps output coordinates in [-1, 1] to input coordinates in [-1, 1] (align_corners=False:
        # -1 and 1 are the outer edges of the border pixels), so the box [left, left + w) maps to scale w / W
        # and offset (2 left + w) / W - 1; a negative x scale mirrors the image
        theta = torch.zeros(batch, 2, 3, device=images.device)
        theta[:, 0, 0] = torch.where(flipped, -1.0, 1.0) * box_width / width
        theta[:, 0, 2] = (2 * left + box_width) / width - 1
        theta[:, 1, 1] = box_height / height
        theta[:, 1, 2] = (2 * top + box_height) / height - 1
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        # near its edges, resizing the box interpolates with the box's edge pixels, not with pixels beyond it
        # (torchvision crops, then resizes): clamp sampling points to the centres of the box's outer pixels
        low = torch.stack([(2 * left + 1) / width - 1, (2 * top + 1) / height - 1], dim=1).view(batch, 1, 1, 2)
        high = torch.stack(
            [(2 * (left + box_width) - 1) / width - 1, (2 * (top + box_height) - 1) / height - 1], dim=1
        ).view(batch, 1, 1, 2)
        grid = torch.minimum(torch.maximum(grid, low), high)
        return F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)

    def _random_boxes(self, batch: int, height: int, width: int, device: torch.device) -> tuple[torch.Tensor, ...]:
        """torchvision's RandomResizedCrop.get_params for every image at once: up to 10 tries of a random
        area and log-uniform aspect ratio, the first that fits; none fits: the whole image, ratio clamped."""
        tries = 10
        area = height * width * torch.empty(batch, tries, device=device).uniform_(*self.scale)
        log_ratio = torch.empty(batch, tries, device=device).uniform_(math.log(self.ratio[0]), math.log(self.ratio[1]))
        aspect = torch.exp(log_ratio)
        box_width = torch.sqrt(area * aspect).round()
        box_height = torch.sqrt(area / aspect).round()
        fits = (box_width > 0) & (box_width <= width) & (box_height > 0) & (box_height <= height)
        first = fits.float().argmax(1, keepdim=True)  # argmax returns the first maximum: the first try that fits
        box_width, box_height = box_width.gather(1, first)[:, 0], box_height.gather(1, first)[:, 0]

        image_ratio = width / height
        if image_ratio < self.ratio[0]:
            fallback_width, fallback_height = width, round(width / self.ratio[0])
        elif image_ratio > self.ratio[1]:
            fallback_width, fallback_height = round(height * self.ratio[1]), height
        else:
            fallback_width, fallback_height = width, height
        any_fits = fits.any(1)
        box_width = torch.where(any_fits, box_width, float(fallback_width))
        box_height = torch.where(any_fits, box_height, float(fallback_height))
        top = torch.floor(torch.rand(batch, device=device) * (height - box_height + 1))
        left = torch.floor(torch.rand(batch, device=device) * (width - box_width + 1))
        # the fallback is centred, as in torchvision
        top = torch.where(any_fits, top, float((height - fallback_height) // 2))
        left = torch.where(any_fits, left, float((width - fallback_width) // 2))
        return box_height, box_width, top, left
