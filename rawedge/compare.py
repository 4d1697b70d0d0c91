"""One comparator for the outputs of two runs of a model (``{name: array}``, e.g. PyTorch and a backend),
with an explicit tolerance per output, so export parity, the INT8 gate and ``rawedge bench`` measure the
same statistics the same way (PSNR: rawedge.metrics). A core module: numpy only.

Statistics are accumulated in float64 over blocks of the first axis, so memory-mapped 48 MP outputs are
never copied whole."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rawedge.metrics import psnr_from_mse

BLOCK_ELEMENTS = 1 << 22  # elements per float64 block of the difference (32 MB)


@dataclass(frozen=True)
class Tolerance:
    """What one output may differ by; a bound left None is reported, not checked. ``per_image``: the PSNR
    bound holds for every image along the first axis (a batch), not just for the whole output, since a
    mean can hide one bad image."""

    max_abs: float | None = None
    min_psnr_db: float | None = None
    per_image: bool = False


@dataclass(frozen=True)
class OutputDiff:
    """How far one output of the candidate run is from the reference run. The statistics are None when
    the output is missing or its shape differs (``failures`` says which)."""

    name: str
    shape: tuple | None  # the reference's
    max_abs: float | None = None
    mean_abs: float | None = None
    psnr_db: float | None = None  # over the whole output
    worst_image: int | None = None  # with Tolerance.per_image: the image of lowest PSNR, and that PSNR
    worst_image_psnr_db: float | None = None
    failures: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def identical(self) -> bool:
        return self.max_abs == 0.0

    def __str__(self) -> str:
        if self.max_abs is None:
            return f"{self.name}: {'; '.join(self.failures)}"
        text = f"{self.name}: max abs {self.max_abs:.3g}, mean abs {self.mean_abs:.3g}, PSNR {self.psnr_db:.1f} dB"
        if self.worst_image is not None:
            text += f" (worst image {self.worst_image}: {self.worst_image_psnr_db:.1f} dB)"
        return text + (f" FAILED: {'; '.join(self.failures)}" if self.failures else "")


@dataclass(frozen=True)
class Comparison:
    """Every compared output, in the order of the tolerances."""

    outputs: dict[str, OutputDiff]

    @property
    def passed(self) -> bool:
        return all(d.passed for d in self.outputs.values())

    @property
    def failed(self) -> list[OutputDiff]:
        return [d for d in self.outputs.values() if not d.passed]

    def __str__(self) -> str:
        return "\n".join(str(d) for d in self.outputs.values())


class Comparator:
    """Compares exactly the outputs named in ``tolerances``; others in the runs are ignored. NaN in a
    candidate fails every bound it meets (comparisons are written so that NaN never passes)."""

    def __init__(self, tolerances: dict[str, Tolerance]):
        self.tolerances = dict(tolerances)

    def __call__(self, reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]) -> Comparison:
        return Comparison({name: self._compare(name, tol, reference.get(name), candidate.get(name))
                           for name, tol in self.tolerances.items()})

    @staticmethod
    def _compare(name: str, tol: Tolerance, ref, cand) -> OutputDiff:
        if ref is None or cand is None:
            which = "reference" if ref is None else "candidate"
            return OutputDiff(name, None if ref is None else tuple(ref.shape), failures=(f"missing from the {which}",))
        shape = tuple(ref.shape)
        if tuple(cand.shape) != shape:
            return OutputDiff(name, shape, failures=(f"shape {list(cand.shape)}, reference {list(shape)}",))
        max_abs, sum_abs, sse = _accumulate(ref, cand)
        size = max(int(np.prod(shape)), 1)
        psnr_db = psnr_from_mse(float(sse.sum()) / size)
        worst = worst_psnr = None
        if tol.per_image:
            worst = int(np.argmax(sse))
            worst_psnr = psnr_from_mse(float(sse[worst]) * len(sse) / size)
        failures = []
        if tol.max_abs is not None and not max_abs <= tol.max_abs:
            failures.append(f"max abs {max_abs:.3g} > {tol.max_abs:g}")
        checked = worst_psnr if tol.per_image else psnr_db
        if tol.min_psnr_db is not None and not checked >= tol.min_psnr_db:
            where = f"image {worst} " if tol.per_image else ""
            failures.append(f"{where}PSNR {checked:.1f} dB < {tol.min_psnr_db:g} dB")
        return OutputDiff(name, shape, max_abs=max_abs, mean_abs=sum_abs / size, psnr_db=psnr_db,
                          worst_image=worst, worst_image_psnr_db=worst_psnr, failures=tuple(failures))


def _accumulate(ref: np.ndarray, cand: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(max |d|, sum |d|, sum d^2 per index of the first axis) of d = cand - ref, block by block."""
    ref, cand = np.atleast_1d(ref), np.atleast_1d(cand)
    n = ref.shape[0]
    step = max(1, BLOCK_ELEMENTS // max(int(np.prod(ref.shape[1:])), 1))
    max_abs, sum_abs, sse = 0.0, 0.0, np.zeros(n)
    for i in range(0, n, step):
        d = np.asarray(cand[i:i + step], np.float64) - np.asarray(ref[i:i + step], np.float64)
        d = d.reshape(d.shape[0], -1)
        a = np.abs(d)
        max_abs = float(np.maximum(max_abs, a.max(initial=0.0)))  # np.maximum keeps a NaN
        sum_abs += float(a.sum())
        sse[i:i + len(d)] = np.einsum("ij,ij->i", d, d)
    return max_abs, sum_abs, sse
