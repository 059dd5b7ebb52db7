"""Spatial sizes through a stack of convolution-like layers, with errors that say what to change."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConvStage:
    """One layer that slides a ``kernel``×``kernel`` window: its name and sliding parameters."""

    name: str
    kernel: int
    stride: int = 1
    padding: int = 0


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """``floor((size + 2 padding - kernel) / stride) + 1``; zero or less when the window does not fit."""
    return (size + 2 * padding - kernel) // stride + 1


def grid_sizes(height: int, width: int, stages: list[ConvStage], hint: str = "") -> list[tuple[int, int]]:
    """The ``(height, width)`` after each stage; raise ``ValueError`` naming the first that does not fit.

    Args:
        height: input height.
        width: input width.
        stages: the layers in order.
        hint: appended to the error, e.g. which options to change.

    Returns:
        One ``(height, width)`` per stage.
    """
    sizes: list[tuple[int, int]] = []
    trail = [f"{height}×{width}"]
    for stage in stages:
        if stage.kernel < 1 or stage.stride < 1 or stage.padding < 0:
            raise ValueError(
                f"{stage.name}: kernel and stride must be ≥ 1 and padding ≥ 0, "
                f"got kernel {stage.kernel}, stride {stage.stride}, padding {stage.padding}"
            )
        out_h = conv_output_size(height, stage.kernel, stage.stride, stage.padding)
        out_w = conv_output_size(width, stage.kernel, stage.stride, stage.padding)
        if out_h < 1 or out_w < 1:
            raise ValueError(
                f"{stage.name} (kernel {stage.kernel}, stride {stage.stride}, padding {stage.padding}) does not fit "
                f"its {height}×{width} input (sizes: {' → '.join(trail)}); it needs at least "
                f"{stage.kernel - 2 * stage.padding}×{stage.kernel - 2 * stage.padding}.{' ' + hint if hint else ''}"
            )
        sizes.append((out_h, out_w))
        trail.append(f"{out_h}×{out_w}")
        height, width = out_h, out_w
    return sizes
