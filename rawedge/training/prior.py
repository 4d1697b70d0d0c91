"""PriorRAW's offline stages: reference pairs from RAW files, the pixel-search encoder's training
(Algorithm 1 of the paper) and the prior table (Algorithm 2: spherical k-means, then each entry the
average of the ``group_size`` reference embeddings nearest to a centroid, with their sRGB and RAW).

End to end (see also ``rawedge prior build --help``)::

    rawedge prior build priorraw --refs RAW_DIR --camera "PowerShot S40" --train-encoder-steps 300 -o s40.pt
    rawedge train --model priorraw --init s40.pt ...      # reconstructor; the encoder stays frozen
    rawedge export ...                                     # the table is an initializer of the ONNX file

The k-means uses faiss (inner product, random initial centroids, as in the paper) when installed, else
scikit-learn's MiniBatchKMeans on the normalised embeddings (the same spherical objective).
"""
from __future__ import annotations

import fnmatch
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rawedge.errors import RawedgeError
from rawedge.filekinds import RAW_SUFFIXES, scan
from rawedge.metrics import psnr_from_mse

DEFAULT_GROUP_SIZE = 200
DEFAULT_MAX_SIDE = 1024


# ---- reference pairs --------------------------------------------------------------------------------
def box_downscale(x: np.ndarray, factor: int) -> np.ndarray:
    """[C,H,W] -> [C,H//f,W//f] by averaging f x f blocks (trailing rows/columns dropped)."""
    if factor <= 1:
        return x
    c, h, w = x.shape
    h, w = h // factor, w // factor
    return x[:, :h * factor, :w * factor].reshape(c, h, factor, w, factor).mean(axis=(2, 4)).astype(np.float32)


def load_reference_pair(path: str | os.PathLike, max_side: int | None = DEFAULT_MAX_SIDE, bright: float = 1.0):
    """(srgb [3,H,W], raw [4,H/2,W/2]) float32 in [0,1] from a RAW file, in RGGB phase.

    The sRGB is LibRaw's rendering (aligned pixel-for-pixel with the mosaic); both are shifted so a red
    site is at the origin, then box-downscaled by the same integer factor (the packed grid by f, the
    sRGB by f then cropped to twice the packed size) so the longer side is at most ``max_side``."""
    from rawedge.data.rggb import to_rggb
    from rawedge.io.raw import read_raw
    from rawedge.io.render import RenderSettings, render_raw
    from rawedge.isp.ops import pack

    raw = read_raw(path)
    rgb = render_raw(path, RenderSettings(bright=bright))
    srgb = to_rggb(rgb.astype(np.float32) / float(np.iinfo(rgb.dtype).max), raw.cfa)
    mosaic = to_rggb(raw.normalized(), raw.cfa)
    packed = pack(mosaic, "RGGB").astype(np.float32)
    return downscale_pair(np.ascontiguousarray(srgb.transpose(2, 0, 1)), packed, max_side)


def downscale_pair(srgb: np.ndarray, packed: np.ndarray, max_side: int | None):
    """Box-downscale a (srgb [3,H,W], packed [4,H/2,W/2]) pair by the integer factor that brings the
    longer side to at most ``max_side``, keeping the sRGB exactly twice the packed grid."""
    h, w = srgb.shape[1:]
    factor = max(1, math.ceil(max(h, w) / max_side)) if max_side else 1
    packed = box_downscale(packed, factor)
    srgb = box_downscale(srgb, factor)[:, :2 * packed.shape[1], :2 * packed.shape[2]]
    return np.ascontiguousarray(srgb), np.ascontiguousarray(packed)


def data_reference_pairs(data_dir: str | os.PathLike, camera: str | None = None, split: str = "train",
                         max_side: int | None = DEFAULT_MAX_SIDE, kinds=("libraw", "camera_jpeg")):
    """(pairs, camera name, camera profile dict, sample ids) of one camera's ``split`` samples of a data
    folder made by ``rawedge data prepare`` (the train split: validation scenes stay out of the prior)."""
    from rawedge.data.dataset import load_pair
    from rawedge.data.manifest import load_manifest
    from rawedge.isp.ops import pack

    manifest = load_manifest(data_dir)
    samples = manifest.select(split, list(kinds))
    if not samples:
        raise RawedgeError(data_dir, f"no {'/'.join(kinds)} pairs in the {split} split")
    cameras = sorted({s.camera for s in samples})
    if camera is None:
        if len(cameras) != 1:
            raise RawedgeError(data_dir, f"{len(cameras)} cameras in the {split} split ({', '.join(cameras)}); "
                                         "a prior table is per camera: pick one with --camera NAME")
        camera = cameras[0]
    match = [c for c in cameras if c.lower() == camera.lower()] or [c for c in cameras if camera.lower() in c.lower()]
    if len(match) != 1:
        raise RawedgeError(data_dir, f"camera {camera!r} matches {len(match)} of the {split} split's cameras "
                                     f"({', '.join(cameras) or 'none'})")
    chosen = [s for s in samples if s.camera == match[0]]
    pairs = []
    for sample in chosen:
        arrays = load_pair(data_dir, sample)
        srgb = np.moveaxis(arrays.srgb_float(), -1, 0)
        pairs.append(downscale_pair(srgb, pack(arrays.mosaic, "RGGB").astype(np.float32), max_side))
    return pairs, match[0], manifest.cameras[match[0]], [s.id for s in chosen]


def _pair(item):
    """A pair as (srgb [3,H,W], raw [4,H/2,W/2]) tensors, from a tuple or a dataset sample dict."""
    import torch

    srgb, raw = (item["srgb"], item["raw"]) if isinstance(item, dict) else item
    srgb, raw = torch.as_tensor(np.asarray(srgb), dtype=torch.float32), torch.as_tensor(np.asarray(raw), dtype=torch.float32)
    if srgb.dim() == 4:
        srgb, raw = srgb[0], raw[0]
    if srgb.shape[0] != 3 or raw.shape[0] != 4 or tuple(raw.shape[1:]) != (srgb.shape[1] // 2, srgb.shape[2] // 2):
        raise RawedgeError(None, f"reference pair shapes {tuple(srgb.shape)}, {tuple(raw.shape)} are not "
                                 "[3,H,W] sRGB and [4,H/2,W/2] packed RAW")
    return srgb, raw


def _search_encoder(model):
    return model.encoder if hasattr(model, "encoder") else model


# ---- Algorithm 1: the pixel-search encoder ---------------------------------------------------------
def _random_crop(srgb, raw, crop: int, rng: np.random.Generator):
    h, w = raw.shape[1:]
    c = crop // 2
    if h <= c and w <= c:
        return srgb, raw
    i = int(rng.integers(0, max(h - c, 0) + 1))
    j = int(rng.integers(0, max(w - c, 0) + 1))
    return srgb[:, 2 * i:2 * (i + c), 2 * j:2 * (j + c)], raw[:, i:i + c, j:j + c]


def _embed_positions(encoder, srgb):
    """[3,H,W] -> ([P,D] embeddings) for one image."""
    return encoder(srgb[None])[0].flatten(1).t()


def assembled_l2(model, targets, references, max_refs: int = 16384, seed: int = 0) -> float:
    """Mean L2 of the RAW assembled for ``targets`` from the reference positions (no table; at most
    ``max_refs`` randomly chosen reference positions): what Algorithm 1 minimises."""
    import torch

    from rawedge.models.priorraw import soft_retrieve

    encoder = _search_encoder(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        feats, raws = [], []
        for item in references:
            srgb, raw = _pair(item)
            feats.append(_embed_positions(encoder, srgb))
            raws.append(raw.flatten(1).t())
        feats, raws = torch.cat(feats), torch.cat(raws)
        if feats.shape[0] > max_refs:
            keep = torch.randperm(feats.shape[0], generator=gen)[:max_refs]
            feats, raws = feats[keep], raws[keep]
        bias = torch.zeros(feats.shape[0])
        err, count = 0.0, 0
        for item in targets:
            srgb, raw = _pair(item)
            pred = soft_retrieve(_embed_positions(encoder, srgb), feats, raws, encoder.scale(), bias)
            err += float(((pred - raw.flatten(1).t()) ** 2).sum())
            count += raw.numel()
    return err / max(count, 1)


def train_encoder(model, dataset, steps: int, lr: float = 1e-3, crop: int = 64, targets: int = 2,
                  references: int = 4, seed: int = 0, log=None) -> list[float]:
    """Algorithm 1: for each step, split the pairs at random into target and reference images, assemble
    each target's RAW as softmax(scale * f_t . f_r) @ RAW_r over all reference positions (random
    ``crop`` x ``crop`` windows) and minimise its L2 to the true RAW. Only the encoder (and its
    temperature) learn. Returns the loss of every step. ``dataset``: pairs or sample dicts."""
    import torch

    from rawedge.models.priorraw import soft_retrieve

    encoder = _search_encoder(model)
    pairs = [_pair(dataset[i]) for i in range(len(dataset))]
    if not pairs:
        raise RawedgeError(None, "no reference pairs to train the pixel-search encoder on")
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    was_training = encoder.training
    grad_flags = [p.requires_grad for p in encoder.parameters()]
    for p in encoder.parameters():
        p.requires_grad_(True)
    opt = torch.optim.Adam(encoder.parameters(), lr=lr)
    encoder.train()
    losses = []
    try:
        for step in range(steps):
            order = rng.permutation(len(pairs))
            if len(pairs) == 1:  # one image: disjoint random windows of it play both roles
                t_idx, r_idx = [order[0]] * targets, [order[0]] * references
            else:
                nt = min(targets, len(pairs) - 1)
                t_idx, r_idx = order[:nt], order[nt:nt + references]
            t_crops = [_random_crop(*pairs[i], crop, rng) for i in t_idx]
            r_crops = [_random_crop(*pairs[i], crop, rng) for i in r_idx]
            f_r = torch.cat([_embed_positions(encoder, s) for s, _ in r_crops])
            raw_r = torch.cat([r.flatten(1).t() for _, r in r_crops])
            f_t = torch.cat([_embed_positions(encoder, s) for s, _ in t_crops])
            raw_t = torch.cat([r.flatten(1).t() for _, r in t_crops])
            pred = soft_retrieve(f_t, f_r, raw_r, encoder.scale(), torch.zeros(f_r.shape[0]), chunk=None)
            loss = torch.mean((pred - raw_t) ** 2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            if log and (step + 1) % max(1, steps // 10) == 0:
                log(f"encoder step {step + 1}/{steps}: assembled-RAW L2 {np.mean(losses[-max(1, steps // 10):]):.3g}")
    finally:
        for p, flag in zip(encoder.parameters(), grad_flags):
            p.requires_grad_(flag)
        encoder.train(was_training)
    return losses


# ---- Algorithm 2: the prior table -------------------------------------------------------------------
@dataclass
class PriorTable:
    """The compressed prior: ``feat`` [K,D] (average embeddings), ``srgb`` [K,3], ``raw`` [K,4] (packed)."""

    feat: np.ndarray
    srgb: np.ndarray
    raw: np.ndarray
    group_size: int
    reference_positions: int  # embeddings clustered (one per 2x2 Bayer block)
    reference_images: int
    backend: str
    sources: list[str] = field(default_factory=list)
    members: np.ndarray | None = None  # [K,G] indices of each entry's members among the embeddings

    @property
    def entries(self) -> int:
        return int(self.feat.shape[0])

    def fraction(self) -> float:
        """Entries / reference embeddings (the paper's ~0.02% is 5,000 / 26,214,400)."""
        return self.entries / max(self.reference_positions, 1)

    def nbytes(self) -> int:
        return int(self.feat.astype(np.float32).nbytes + self.srgb.astype(np.float32).nbytes
                   + self.raw.astype(np.float32).nbytes)

    def install(self, model) -> None:
        model.set_prior_table(self.feat, self.srgb, self.raw)

    def summary(self) -> dict:
        return {"entries": self.entries, "embed_dim": int(self.feat.shape[1]), "group_size": self.group_size,
                "reference_positions": self.reference_positions, "reference_sensor_pixels": 4 * self.reference_positions,
                "reference_images": self.reference_images, "fraction": self.fraction(), "bytes": self.nbytes(),
                "kmeans": self.backend, "sources": list(self.sources)}


def embed_references(model, pairs):
    """All reference embeddings with the sRGB (2x2 block mean) and packed RAW of their positions:
    ([M,D], [M,3], [M,4]) float32 numpy."""
    import torch
    import torch.nn.functional as F

    encoder = _search_encoder(model)
    feats, srgbs, raws = [], [], []
    with torch.no_grad():
        for item in pairs:
            srgb, raw = _pair(item)
            feats.append(_embed_positions(encoder, srgb).numpy())
            srgbs.append(F.avg_pool2d(srgb[None], 2)[0].flatten(1).t().numpy())
            raws.append(raw.flatten(1).t().numpy())
    return (np.ascontiguousarray(np.concatenate(feats), dtype=np.float32),
            np.concatenate(srgbs).astype(np.float32), np.concatenate(raws).astype(np.float32))


def _faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def spherical_kmeans(feats: np.ndarray, k: int, seed: int = 0, niter: int = 20, backend: str = "auto"):
    """(unit centroids [k,D], backend used): k-means under inner product with random initial centroids."""
    import torch

    faiss = _faiss() if backend in ("auto", "faiss") else None
    if backend == "faiss" and faiss is None:
        raise RawedgeError(None, "faiss is not installed: pip install faiss-cpu (or use the sklearn backend)")
    x = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    if faiss is not None:
        faiss.omp_set_num_threads(torch.get_num_threads())
        km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed, spherical=True, verbose=False)
        km.train(np.ascontiguousarray(x, dtype=np.float32))
        return np.asarray(km.centroids, dtype=np.float32), "faiss"
    from sklearn.cluster import MiniBatchKMeans

    km = MiniBatchKMeans(n_clusters=k, init="random", n_init=1, random_state=seed, max_iter=niter * 5,
                         batch_size=max(4096, 4 * k))
    km.fit(x)
    c = km.cluster_centers_.astype(np.float32)
    return c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12), "sklearn"


def nearest_members(centroids: np.ndarray, feats: np.ndarray, group: int, chunk: int = 65536) -> np.ndarray:
    """[K,group] indices of the embeddings with the largest inner product with each centroid (exact)."""
    faiss = _faiss()
    if faiss is not None:
        index = faiss.IndexFlatIP(feats.shape[1])
        index.add(np.ascontiguousarray(feats, dtype=np.float32))
        _, idx = index.search(np.ascontiguousarray(centroids, dtype=np.float32), group)
        return idx.astype(np.int64)
    import torch

    c = torch.from_numpy(centroids)
    best_v = torch.full((c.shape[0], 0), -math.inf)
    best_i = torch.zeros((c.shape[0], 0), dtype=torch.int64)
    for start in range(0, feats.shape[0], chunk):
        s = c @ torch.from_numpy(feats[start:start + chunk]).t()
        v = torch.cat([best_v, s], dim=1)
        i = torch.cat([best_i, torch.arange(start, start + s.shape[1]).expand(c.shape[0], -1)], dim=1)
        best_v, pos = v.topk(min(group, v.shape[1]), dim=1)
        best_i = i.gather(1, pos)
    return best_i.numpy()


def build_prior_table_from_pairs(model, pairs, entries: int, group_size: int = DEFAULT_GROUP_SIZE, seed: int = 0,
                                 backend: str = "auto", sources: list[str] | None = None) -> PriorTable:
    """Algorithm 2 on in-memory pairs: cluster the embeddings, average each cluster's nearest members."""
    feats, srgb, raw = embed_references(model, pairs)
    m = feats.shape[0]
    if m == 0:
        raise RawedgeError(None, "no reference positions to build a prior table from")
    k = min(entries, m)
    g = min(group_size, m)
    centroids, used = spherical_kmeans(feats, k, seed=seed, backend=backend)
    members = nearest_members(centroids, feats, g)
    return PriorTable(feat=feats[members].mean(axis=1), srgb=srgb[members].mean(axis=1), raw=raw[members].mean(axis=1),
                      group_size=g, reference_positions=m, reference_images=len(pairs), backend=used,
                      sources=list(sources or []), members=members)


# ---- `rawedge prior build`: references in, a priorraw checkpoint with its table out -------------------
DEFAULT_KINDS = ("libraw", "camera_jpeg")  # a data folder's real sensor data


@dataclass
class PriorBuild:
    """What :func:`build_prior_checkpoint` made, for its report: the table, the images and its PSNR."""

    table: PriorTable
    images: int
    psnr: float


def reference_files(refs, exclude=()) -> list[Path]:
    """The RAW files given (a folder: its RAW files, not recursive), less those whose name matches an
    ``exclude`` glob; none is an error."""
    files = []
    for ref in refs:
        p = Path(ref)
        found = scan(p, RAW_SUFFIXES) if p.is_dir() else [p]
        files += [f for f in found if not any(fnmatch.fnmatch(f.name, pat) for pat in exclude)]
    if not files:
        raise RawedgeError(refs[0] if refs else None, "no RAW files found")
    return files


def camera_files(files, camera):
    """The files of one camera, and its profile; several cameras without ``camera`` is an error."""
    from rawedge.io.raw import read_raw

    by_camera: dict[str, list] = {}
    profiles = {}
    for f in files:
        raw = read_raw(f)
        by_camera.setdefault(raw.profile.name, []).append(f)
        profiles.setdefault(raw.profile.name, raw.profile)
    if camera is None:
        if len(by_camera) > 1:
            raise RawedgeError(None, "the reference files come from several cameras ("
                               + ", ".join(f"{k}: {len(v)}" for k, v in sorted(by_camera.items()))
                               + "); a prior table is per camera: pick one with --camera NAME")
        camera = next(iter(by_camera))
    match = {k.lower(): k for k in by_camera}.get(camera.lower())
    partial = [k for k in by_camera if camera.lower() in k.lower()]
    if match is None and len(partial) == 1:
        match = partial[0]
    if match is None:
        raise RawedgeError(None, f"no reference file of camera {camera!r}; found: {', '.join(sorted(by_camera))}")
    return by_camera[match], profiles[match]


def load_prior_model(model: str, config: dict | None = None):
    """(model, checkpoint dict) from a priorraw checkpoint file, or fresh weights for ``"priorraw"``
    with the options ``config``; anything without a prior table is an error."""
    from rawedge.models.checkpoint import load_checkpoint
    from rawedge.models.registry import create_model

    if Path(model).is_file():
        if config:
            raise RawedgeError(model, "--set applies to fresh models only; this is a checkpoint")
        net, ckpt = load_checkpoint(model)
    elif model == "priorraw":
        try:
            net, ckpt = create_model("priorraw", **(config or {})), {}
        except (TypeError, ValueError) as exc:
            raise RawedgeError(None, f"bad priorraw option ({exc})") from None
    else:
        raise RawedgeError(model, "no such file (give a priorraw checkpoint, or `priorraw` for a fresh model)")
    if not hasattr(net, "set_prior_table"):
        raise RawedgeError(model, f"a {net.model_name} model has no prior table (only priorraw models do)")
    return net, ckpt


def _references(refs, data_dir, kinds, camera, exclude, max_side, log):
    """(pairs, camera profile, source names) of one camera: its RAW files, or a data folder's train split."""
    from rawedge.types import CameraProfile

    if data_dir:
        pairs, name, profile_dict, sources = data_reference_pairs(data_dir, camera, max_side=max_side or None,
                                                                    kinds=kinds or DEFAULT_KINDS)
        keep = [i for i, s in enumerate(sources) if not any(fnmatch.fnmatch(s, pat) for pat in exclude)]
        pairs, sources = [pairs[i] for i in keep], [sources[i] for i in keep]
        log(f"{len(pairs)} training pairs of {name} from {data_dir} at max side {max_side or 'full'}")
        return pairs, CameraProfile.from_dict(profile_dict), sources
    files, profile = camera_files(reference_files(refs, exclude), camera)
    log(f"{len(files)} reference files of {profile.name}; rendering at max side {max_side or 'full'}")
    return [load_reference_pair(f, max_side or None) for f in files], profile, [f.name for f in files]


def build_prior_checkpoint(model: str, output, refs=(), data_dir=None, kinds=(), camera: str | None = None,
                           exclude=(), entries: int | None = None, group_size: int = DEFAULT_GROUP_SIZE,
                           max_side: int = DEFAULT_MAX_SIDE, encoder_steps: int = 0, encoder_lr: float = 1e-3,
                           encoder_crop: int = 96, config: dict | None = None, backend: str = "auto",
                           seed: int = 0, threads: int | None = None, log=None) -> PriorBuild:
    """One camera's prior table from its references (``refs``: RAW files or folders, each rendered by
    LibRaw; or ``data_dir``: a data folder's train split), stored with the model in a priorraw
    checkpoint at ``output``. ``model``: a priorraw checkpoint, or ``"priorraw"`` for fresh weights
    (``config``: their options); ``encoder_steps`` first trains the pixel-search encoder (Algorithm 1);
    ``entries`` defaults to the model's ``table_size``; ``max_side`` 0 keeps full resolution."""
    import torch

    from rawedge.io.atomic import check_output_dir
    from rawedge.models.checkpoint import save_checkpoint

    log = log or (lambda message: None)
    check_output_dir(output)
    if bool(refs) == bool(data_dir):
        raise RawedgeError(None, "give the references with either --refs (RAW files) or --data (a data folder)")
    if threads:
        torch.set_num_threads(threads)
    net, ckpt = load_prior_model(model, config)
    pairs, profile, sources = _references(refs, data_dir, kinds, camera, exclude, max_side, log)
    if encoder_steps:
        losses = train_encoder(net, pairs, encoder_steps, lr=encoder_lr, crop=encoder_crop, seed=seed, log=log)
        log(f"pixel-search encoder: assembled-RAW L2 {losses[0]:.3g} -> {losses[-1]:.3g}")
    net.eval()
    table = build_prior_table_from_pairs(net, pairs, entries or net.table_size, group_size, seed=seed, backend=backend,
                                         sources=sources)
    table.install(net)
    psnr = table_psnr(net, pairs)
    summary = {**table.summary(), "camera": profile.name, "max_side": max_side, "encoder_steps": encoder_steps,
               "reference_psnr": psnr}
    profiles = list(ckpt.get("camera_profiles", []))
    if not any(p.get("name") == profile.name for p in profiles):
        profiles.append(profile.to_dict())
    recipe = {**ckpt.get("recipe", {}), "prior_table": {k: v for k, v in summary.items() if k != "sources"}}
    extra = {**ckpt.get("extra", {}), "prior_table": summary}
    save_checkpoint(output, net, camera_profiles=profiles, recipe=recipe, metrics=ckpt.get("metrics", {}),
                    extra=extra)
    return PriorBuild(table=table, images=len(pairs), psnr=psnr)


def table_psnr(model, pairs) -> float:
    """RAW PSNR (dB) of the RAW assembled from the model's table for ``pairs`` (the prior alone)."""
    import torch

    model._require_table()
    err, count = 0.0, 0
    with torch.no_grad():
        for item in pairs:
            srgb, raw = _pair(item)
            _, pred = model.assemble(model.encoder(srgb[None]))
            err += float(((pred[0] - raw) ** 2).sum())
            count += raw.numel()
    return psnr_from_mse(err / max(count, 1))
