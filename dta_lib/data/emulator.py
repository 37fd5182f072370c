"""Event-camera emulator: static images -> polarity event streams, as CIFAR10-DVS / N-MNIST were recorded.

The DVS pixel of Lichtsteiner et al. 2008, as in ESIM / v2e (docs/data.md, "Event-camera emulator"): the image moves
along a closed triangle of three saccades on a black canvas; a pixel seeing ``L = log(log_eps + I)`` emits, when
``|L - L_ref| >= C``, ``n = floor(|L - L_ref| / C)`` events of polarity ``sign(L - L_ref)`` (ON = 1, OFF = 0) and
moves ``L_ref`` by ``n C``; crossings are time-stamped by linear interpolation between sub-steps. ``C`` varies per
pixel in a fixed pattern drawn from ``seed``: deterministic. Vectorised over chunks of images (torch); cached on
disk, keyed by a hash of the images and every parameter."""
from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import filelock
import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF
from tqdm import tqdm

from .common import single_threaded
from .events import EVENT_DTYPE, EventFrames, events_to_frames
from ..atomic import atomic_write
from ..paths import cache_dir
from .registry import cache_key

_STORE_DTYPE = np.dtype([("t", "<u4"), ("x", "<u2"), ("y", "<u2"), ("p", "u1")])
EMULATOR_VERSION = 1


@dataclass(frozen=True)
class EmulatorConfig:
    """Parameters of the emulator (docs/data.md, "Event-camera emulator")."""

    contrast_threshold: float = 0.25
    threshold_sigma: float = 0.03
    log_eps: float = 0.1
    amplitude: float = 3.0
    margin: int = 3
    steps_per_saccade: int = 12
    saccade_us: int = 100_000
    seed: int = 0

    def __post_init__(self) -> None:
        checks = {
            "contrast_threshold": self.contrast_threshold > 0,
            "threshold_sigma": self.threshold_sigma >= 0,
            "log_eps": self.log_eps > 0,
            "amplitude": self.amplitude >= 0,
            "margin": isinstance(self.margin, int) and self.margin >= self.amplitude / 2,
            "steps_per_saccade": isinstance(self.steps_per_saccade, int) and self.steps_per_saccade >= 1,
            "saccade_us": isinstance(self.saccade_us, int) and self.steps_per_saccade <= self.saccade_us < 2**31 // 3,
        }
        if bad := [k for k, ok in checks.items() if not ok]:
            raise ValueError(f"EmulatorConfig: invalid {', '.join(f'{k}={getattr(self, k)!r}' for k in bad)}; expected "
                             "contrast_threshold > 0, threshold_sigma >= 0, log_eps > 0, amplitude >= 0, int margin >= "
                             "amplitude/2, int steps_per_saccade >= 1, int saccade_us in [steps, 2**31/3)")

    def sensor_size(self, height: int, width: int) -> tuple[int, int, int]:
        """tonic ``(W, H, P)`` of the sensor for ``height x width`` images."""
        return (width + 2 * self.margin, height + 2 * self.margin, 2)


def saccade_path(config: EmulatorConfig) -> torch.Tensor:
    """Image offsets ``[3*steps + 1, 2]`` (x, y in pixels) along the three saccades, starting at rest."""
    a, s = config.amplitude, config.steps_per_saccade
    vertices = torch.tensor([[0.0, 0.0], [a / 2, a], [a, 0.0], [0.0, 0.0]], dtype=torch.float64)
    frac = torch.arange(1, s + 1, dtype=torch.float64)[:, None] / s
    return torch.cat([vertices[:1]] + [vertices[i] + frac * (vertices[i + 1] - vertices[i]) for i in range(3)]).float()


def _as_gray(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``[N,H,W]`` / ``[N,1|3,H,W]`` / ``[N,H,W,3]`` uint8 or float in [0,1] -> float ``[N,1,H,W]`` in [0,1]."""
    x = torch.as_tensor(np.array(images, copy=True)) if isinstance(images, np.ndarray) else torch.as_tensor(images)
    if x.dim() == 4 and x.shape[-1] == 3 and x.shape[1] != 3:
        x = x.permute(0, 3, 1, 2)
    if x.dim() == 3:
        x = x[:, None]
    if x.dim() != 4 or x.shape[1] not in (1, 3) or x.shape[0] == 0 or min(x.shape[-2:]) < 2:
        raise ValueError(f"images of shape {tuple(x.shape)}: expected a non-empty [N,H,W], [N,1|3,H,W] or [N,H,W,3]")
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    elif x.is_floating_point():
        x = x.float()
        if not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1:
            raise ValueError("float images must be finite and lie in [0, 1] (un-normalised intensities)")
    else:
        raise ValueError(f"images of dtype {x.dtype}: expected uint8 or float in [0, 1]")
    return TF.rgb_to_grayscale(x) if x.shape[1] == 3 else x


def _emulate_chunk(gray: torch.Tensor, config: EmulatorConfig) -> tuple[torch.Tensor, ...]:
    """Events of a chunk as flat tensors ``(image, t_us, x, y, p)`` (unsorted)."""
    (n, _, h, w), m = gray.shape, config.margin
    hc, wc = h + 2 * m, w + 2 * m
    path, centre = saccade_path(config), torch.tensor([config.amplitude / 2, config.amplitude / 2])
    uu, vv = torch.arange(wc, dtype=torch.float32), torch.arange(hc, dtype=torch.float32)
    c, gen = config.contrast_threshold, torch.Generator().manual_seed(config.seed)  # the sensor's fixed pattern
    thr_flat = (c * (1 + config.threshold_sigma * torch.randn(hc, wc, generator=gen))).clamp_min(0.1 * c).flatten().repeat(n)
    dt = config.saccade_us / config.steps_per_saccade

    def log_frame(offset: torch.Tensor) -> torch.Tensor:
        ox, oy = (m - centre + offset).tolist()  # image origin on the canvas
        gx, gy = 2 * (uu - ox) / (w - 1) - 1, 2 * (vv - oy) / (h - 1) - 1
        grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], -1).expand(n, hc, wc, 2)
        img = F.grid_sample(gray, grid, mode="bilinear", padding_mode="zeros", align_corners=True)[:, 0]
        return torch.log(config.log_eps + img)

    ref = (prev := log_frame(path[0]).reshape(-1)).clone()
    empty = torch.zeros(0, dtype=torch.int64)
    out: list[tuple[torch.Tensor, ...]] = [(empty, empty.int(), empty.bool())]
    for step in range(1, len(path)):
        diff = (cur := log_frame(path[step]).reshape(-1)) - ref
        count = torch.floor(diff.abs() / thr_flat + 1e-5)  # |dL| >= C fires, robust to float round-off
        idx = torch.nonzero(count, as_tuple=True)[0]
        if idx.numel():
            k_n = count[idx].to(torch.int64)
            sgn, base, th, p0, dp = torch.sign(diff[idx]), ref[idx], thr_flat[idx], prev[idx], cur[idx] - prev[idx]
            ref[idx], k = base + sgn * k_n * th, torch.ones(())
            if int(k_n.max()) > 1:  # pixels crossing several thresholds in one sub-step
                rep = torch.repeat_interleave(torch.arange(len(idx)), k_n)
                k = (torch.arange(len(rep)) - torch.repeat_interleave(torch.cumsum(k_n, 0) - k_n, k_n) + 1).float()
                idx, sgn, base, th, p0, dp = idx[rep], sgn[rep], base[rep], th[rep], p0[rep], dp[rep]
            frac = ((base + sgn * k * th - p0) / dp.where(dp.abs() > 1e-12, torch.ones(()))).clamp(0, 1)
            out.append((idx, ((step - 1 + frac) * dt).round().to(torch.int32), sgn > 0))
        prev = cur
    flat, t, p = (torch.cat(parts) for parts in zip(*out))
    return flat // (hc * wc), t, flat % wc, (flat % (hc * wc)) // wc, p


@torch.no_grad()
def emulate(images: torch.Tensor | np.ndarray, config: EmulatorConfig | None = None, chunk: int = 2048,
            progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(events, offsets)`` of ``N`` images: image ``i``'s are ``events[offsets[i]:offsets[i+1]]``, sorted by ``t``."""
    config = config or EmulatorConfig()
    gray = _as_gray(images)
    parts: list[np.ndarray] = []
    counts = np.zeros(len(gray), dtype=np.int64)
    with single_threaded():  # measured 460 vs 80 img/s (1 vs 2 threads) on the shared 2-core machine
        for start in tqdm(range(0, len(gray), chunk), disable=not progress, desc="emulating", unit="chunk"):
            b, t, x, y, p = _emulate_chunk(gray[start:start + chunk], config)
            order = np.argsort(b.numpy() * (1 << 32) + t.numpy(), kind="stable")
            ev = np.empty(len(b), dtype=_STORE_DTYPE)
            ev["t"], ev["x"], ev["y"], ev["p"] = t.numpy()[order], x.numpy()[order], y.numpy()[order], p.numpy()[order]
            counts[start:start + chunk] = np.bincount(b.numpy(), minlength=min(chunk, len(gray) - start))
            parts.append(ev)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    return np.concatenate(parts), offsets  # parts: one per chunk, never empty (N >= 1)


def to_tonic(stored: np.ndarray) -> np.ndarray:
    """Compact stored events -> tonic structured array with :data:`~dta_lib.data.events.EVENT_DTYPE`."""
    return np.asarray(stored).astype(EVENT_DTYPE)


def emulate_cached(images: torch.Tensor | np.ndarray, config: EmulatorConfig | None = None,
                   cache: str | os.PathLike | None | bool = None, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """:func:`emulate` with an on-disk cache keyed by a hash of the image bytes and every parameter."""
    config = config or EmulatorConfig()
    if cache is False:
        return emulate(images, config, progress=progress)
    arr = np.ascontiguousarray(torch.as_tensor(images).numpy())
    key = cache_key(images=hashlib.sha256(arr.tobytes()).hexdigest(), shape=arr.shape, dtype=str(arr.dtype),
                    config=asdict(config), version=EMULATOR_VERSION)
    folder = Path(cache) if cache not in (None, True) else cache_dir() / "emulator"
    ev_path, off_path = folder / f"{key}.events.npy", folder / f"{key}.offsets.npy"
    if cached := _load_cache(ev_path, off_path, len(arr), warn=False):  # without the lock (read-only caches)
        return cached
    folder.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(folder / f"{key}.lock"):  # one writer per entry (parallel campaign workers)
        for tmp in folder.glob(f".{key}.*.tmp"):  # temp files of a write that a kill interrupted
            tmp.unlink(missing_ok=True)
        if cached := _load_cache(ev_path, off_path, len(arr)):
            return cached
        events, offsets = emulate(arr, config, progress=progress)
        for path, a in ((ev_path, events), (off_path, offsets)):
            atomic_write(path, lambda tmp, a=a: np.save(open(tmp, "wb"), a))
    return events, offsets


def _load_cache(ev_path: Path, off_path: Path, n_images: int, warn: bool = True) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached arrays; ``None`` when absent, or (with a warning naming the file) unreadable or inconsistent."""
    if not (ev_path.is_file() and off_path.is_file()):
        return None
    try:
        events, offsets = np.load(ev_path, mmap_mode="r"), np.load(off_path)
        ok = (offsets.ndim == 1 and len(offsets) == n_images + 1 and offsets[0] == 0
              and offsets[-1] == len(events) and bool(np.all(np.diff(offsets) >= 0)))
        reason = f"its {off_path.name} does not index {n_images} images of its {len(events)} events"
    except (OSError, ValueError, EOFError) as e:  # truncated: "mmap length is greater than file size", ...
        ok, reason = False, " ".join(str(e).split())
    if not ok and warn:
        warnings.warn(f"emulator cache {ev_path} is corrupt ({reason}); rebuilding it", stacklevel=3)
    return (events, offsets) if ok else None


class EmulatedEvents(EventFrames):
    """``(frames [T,2,H,W], label)`` from emulated events (framed per sample with tonic ``ToFrame``)."""

    def __init__(self, images: torch.Tensor | np.ndarray, targets: Any, time_steps: int,
                 config: EmulatorConfig | None = None, frame_size: int | None = None,
                 transform: Callable | None = None, cache: str | os.PathLike | None | bool = None,
                 classes: list[str] | None = None, progress: bool = True) -> None:
        self.config = config or EmulatorConfig()
        h, w = _as_gray(images[:1]).shape[-2:]  # the image layouts :func:`emulate` reads
        self.sensor_size = self.config.sensor_size(h, w)
        self.stored, self.offsets = emulate_cached(images, self.config, cache, progress)
        self.targets = [int(t) for t in targets]
        self.time_steps, self.frame_size, self.transform, self.classes = time_steps, frame_size, transform, classes

    def events(self, index: int) -> np.ndarray:
        """The tonic structured array ``(t, x, y, p)`` of sample ``index``."""
        return to_tonic(self.stored[self.offsets[index]:self.offsets[index + 1]])

    def frames(self, index: int) -> torch.Tensor:
        return events_to_frames(self.events(index), self.sensor_size, self.time_steps, self.frame_size)
