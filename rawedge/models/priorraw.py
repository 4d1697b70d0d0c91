"""PriorRAW: RAW reconstruction from *prior metadata* (a per-camera table of reference RAW pixels) instead
of per-image metadata. See /work/shared/papers/prior-meta-raw-reconstruction.txt (P1 in DIGEST.md).

Three stages, all on the packed RGGB grid (one embedding per 2x2 Bayer block, H/2 x W/2):

1. Pixel-search encoder (:class:`PixelSearchEncoder`): sRGB context -> L2-normalised embedding, trained
   so that softmax(scale * f_t . f_r) over reference positions, applied to their RAW values, gives the
   target RAW (Algorithm 1; :func:`rawedge.training.prior.train_encoder`).
2. Prior table: k-means over the reference embeddings of one camera, each entry the average feature,
   sRGB and packed RAW of the nearest members of a cluster (Algorithm 2;
   :func:`rawedge.training.prior.build_prior_checkpoint`, `rawedge prior build`). It lives in fixed-size buffers (``table_size`` rows plus a validity mask) so it is saved in checkpoints
   and becomes an initializer of the exported ONNX graph.
3. Reconstructor: assembled sRGB/RAW from the table, D = |F_sRGB - sRGB|, f_p = conv([D, sRGB, F_RAW]),
   reliability gate f_c = f_p * sigmoid(conv(f_p)), multi-head attention over the table (keys = table
   features, values = table RAW) plus an FFN, then a U-Net that fuses f_o at every decoder scale and
   predicts a residual on the analytic reverse ISP.

Without a table the model refuses to run (and to export) when ``use_prior`` or ``use_attention`` is on:
a zero table would silently produce a meaningless prior. ``use_prior=False, use_attention=False`` is the
"sRGB + U-Net" ablation and needs no table.

Memory: retrieval and attention are MatMul + Softmax on [N, P, K] (P = positions of the tile = (H/2)(W/2),
K = ``table_size``). Python-side calls process queries in chunks of ``chunk`` positions; the exported graph
(dynamic H and W) holds the whole tile: about 4 * P * K * (1 + heads) bytes of logits, e.g. 256x256 tile,
K = 1024, 2 heads: 16384 * 1024 * 4 * 3 = 192 MiB, hence the recommended tile of ``export_extras``
(about 288 px for the defaults) instead of the usual 512.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rawedge.errors import RawedgeError
from rawedge.models.base import ReverseISP, analytic_packed
from rawedge.models.registry import register_model
from rawedge.models.unet import ThumbEncoder, conv_block

INVALID_LOGIT = -1.0e4  # added to the logits of empty table rows: exp() underflows to exactly 0


def exporting() -> bool:
    """True while torch.onnx (TorchScript or dynamo) traces the model: shapes are symbolic, no chunking."""
    return bool(torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling())


def soft_retrieve(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, scale, bias: torch.Tensor,
                  chunk: int | None = 4096) -> torch.Tensor:
    """softmax(scale * query @ keys^T + bias) @ values, chunked over query positions.

    query [..., P, D], keys [..., K, D], values [..., K, C], bias [K] (0 valid, INVALID_LOGIT empty)
    -> [..., P, C]. Leading dims broadcast (batch, heads). Chunking bounds the memory of the [P, K]
    logits to ``chunk * K``; inside an ONNX export the whole tile is one MatMul + Softmax."""
    def attend(q):
        logits = torch.matmul(q, keys.transpose(-1, -2)) * scale + bias
        return torch.matmul(torch.softmax(logits, dim=-1), values)

    if exporting() or not chunk or chunk <= 0 or query.shape[-2] <= chunk:
        return attend(query)
    return torch.cat([attend(q) for q in query.split(chunk, dim=-2)], dim=-2)


class ResBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(0.2, inplace=True),
                                  nn.Conv2d(width, width, 3, padding=1))

    def forward(self, x):
        return F.leaky_relu(x + self.body(x), 0.2)


class PixelSearchEncoder(nn.Module):
    """Small ResNet-like encoder, total stride 2 (space-to-depth, so position (i, j) is exactly the 2x2
    block of packed RAW position (i, j)), L2-normalised output and a learnable softmax temperature."""

    def __init__(self, dim: int = 16, width: int = 24, blocks: int = 2, init_scale: float = 20.0):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(12, width, 3, padding=1), nn.LeakyReLU(0.2, inplace=True))
        self.blocks = nn.Sequential(*[ResBlock(width) for _ in range(blocks)])
        self.proj = nn.Conv2d(width, dim, 1)
        self.log_scale = nn.Parameter(torch.tensor(math.log(init_scale)))

    def scale(self) -> torch.Tensor:
        """Inverse temperature of the affinity softmax (bounded so training cannot blow it up)."""
        return self.log_scale.clamp(max=math.log(100.0)).exp()

    def forward(self, srgb: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(F.pixel_unshuffle(srgb, 2)))
        return F.normalize(self.proj(x), dim=1, eps=1e-6)


def to_positions(x: torch.Tensor) -> torch.Tensor:
    """[N,C,h,w] -> [N,h*w,C]."""
    return x.flatten(2).transpose(1, 2)


def to_map(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """[N,h*w,C] -> [N,C,h,w]."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], h, w)


class PriorAttention(nn.Module):
    """Multi-head attention of every pixel over the table: Q = f_c, K = table features, V = table RAW."""

    def __init__(self, width: int, feat_dim: int, heads: int, head_dim: int):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.q = nn.Linear(width, heads * head_dim)
        self.k = nn.Linear(feat_dim, heads * head_dim)
        self.v = nn.Linear(4, heads * head_dim)
        self.out = nn.Linear(heads * head_dim, width)
        nn.init.zeros_(self.out.weight)  # starts as identity of the residual path
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, table_feat, table_raw, bias, chunk) -> torch.Tensor:
        n, _, h, w = x.shape
        hd, dh = self.heads, self.head_dim
        q = self.q(to_positions(x)).reshape(n, -1, hd, dh).transpose(1, 2)  # [N,heads,P,dh]
        k = self.k(table_feat).reshape(-1, hd, dh).transpose(0, 1)  # [heads,K,dh]
        v = self.v(table_raw).reshape(-1, hd, dh).transpose(0, 1)
        o = soft_retrieve(q, k, v, 1.0 / math.sqrt(dh), bias, chunk)  # [N,heads,P,dh]
        return to_map(self.out(o.transpose(1, 2).reshape(n, -1, hd * dh)), h, w)


@register_model("priorraw")
class PriorRAW(ReverseISP):
    default_config = {
        "embed_dim": 16, "enc_width": 24, "enc_blocks": 2,  # pixel-search encoder
        "table_size": 1024,  # rows of the prior table (fixed: the buffers of the exported graph)
        "width": 16, "depth": 2, "heads": 2, "head_dim": 8,  # reconstructor
        "use_prior": True, "use_gate": True, "use_attention": True,  # ablation switches
        "freeze_encoder": True,  # keep the table's keys valid while the reconstructor trains
        "chunk": 4096,  # query positions per retrieval chunk outside ONNX export
    }
    logits_budget = 256 * 2**20  # bytes of attention logits per tile the recommended tile aims at

    def __init__(self, embed_dim=16, enc_width=24, enc_blocks=2, table_size=1024, width=16, depth=2, heads=2,
                 head_dim=8, use_prior=True, use_gate=True, use_attention=True, freeze_encoder=True, chunk=4096):
        super().__init__()
        self.use_prior, self.use_gate, self.use_attention = bool(use_prior), bool(use_gate), bool(use_attention)
        self.chunk = int(chunk)
        self.depth = depth
        self.align = 2 * 2**depth
        self.encoder = PixelSearchEncoder(embed_dim, enc_width, enc_blocks)
        for p in self.encoder.parameters():
            p.requires_grad_(not freeze_encoder)
        self.register_buffer("prior_feat", torch.zeros(table_size, embed_dim))
        self.register_buffer("prior_srgb", torch.zeros(table_size, 3))
        self.register_buffer("prior_raw", torch.zeros(table_size, 4))
        self.register_buffer("prior_valid", torch.zeros(table_size))
        self.table_count = 0
        self.register_load_state_dict_post_hook(lambda module, keys: module._sync_table_count())

        c = width
        fuse_in = 12 + 4 + (3 + 4 if self.use_prior else 0)  # sRGB blocks, analytic RAW, D, F_RAW
        self.fuse = nn.Sequential(nn.Conv2d(fuse_in, c, 3, padding=1), nn.LeakyReLU(0.2, inplace=True),
                                  nn.Conv2d(c, c, 3, padding=1))
        self.conf = nn.Conv2d(c, 1, 3, padding=1) if self.use_gate else None
        if self.use_attention:
            self.attn = PriorAttention(c, embed_dim, heads, head_dim)
            self.ffn = nn.Sequential(nn.Conv2d(c, 2 * c, 1), nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(2 * c, c, 1))
        chans = [width * 2**i for i in range(depth + 1)]
        self.head = conv_block(c + 12, chans[0])
        self.downs = nn.ModuleList(nn.Conv2d(chans[i], chans[i + 1], 2, stride=2) for i in range(depth))
        self.enc = nn.ModuleList(conv_block(chans[i + 1], chans[i + 1]) for i in range(depth))
        self.thumb = ThumbEncoder(chans[-1])
        self.ups = nn.ModuleList(nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2) for i in reversed(range(depth)))
        # each decoder stage also sees f_o resized to its scale (the paper's extra fusion)
        self.dec = nn.ModuleList(conv_block(chans[i] * 2 + c, chans[i]) for i in reversed(range(depth)))
        self.tail = nn.Conv2d(chans[0], 4, 1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def export_extras(self) -> dict:
        """The recommended tile: the largest (<= 512) whose [P, K] logits of the retrieval and the
        attention heads fit ``logits_budget`` (about 288 px for K = 1024 and 2 heads)."""
        heads = self.attn.heads if self.use_attention else 0
        per_position = 4 * self.table_size * ((1 if self.use_prior else 0) + heads)
        if per_position == 0:
            return {}
        side = 2 * int(math.sqrt(self.logits_budget / per_position))
        return {"tile": int(min(512, max(4 * self.align, side - side % self.align)))}

    # ---- the prior table -------------------------------------------------------------------------
    @property
    def needs_table(self) -> bool:
        return self.use_prior or self.use_attention

    @property
    def table_size(self) -> int:
        return self.prior_valid.shape[0]

    def _sync_table_count(self) -> None:
        self.table_count = int(self.prior_valid.sum().item())

    def set_prior_table(self, feat, srgb, raw) -> None:
        """Store k entries (k <= table_size); the remaining rows are masked out of every softmax."""
        feat, srgb, raw = (torch.as_tensor(np.asarray(a), dtype=torch.float32) for a in (feat, srgb, raw))
        k = feat.shape[0]
        if k > self.table_size:
            raise RawedgeError(None, f"prior table has {k} entries but this model holds at most {self.table_size} "
                                     f"(model option table_size)")
        if feat.shape[1] != self.prior_feat.shape[1] or srgb.shape[1:] != (3,) or raw.shape[1:] != (4,):
            raise RawedgeError(None, f"prior table shapes {tuple(feat.shape)}, {tuple(srgb.shape)}, {tuple(raw.shape)} "
                                     f"do not fit embed_dim {self.prior_feat.shape[1]}")
        with torch.no_grad():
            for buf in (self.prior_feat, self.prior_srgb, self.prior_raw, self.prior_valid):
                buf.zero_()
            self.prior_feat[:k] = feat.to(self.prior_feat)
            self.prior_srgb[:k] = srgb.to(self.prior_srgb)
            self.prior_raw[:k] = raw.to(self.prior_raw)
            self.prior_valid[:k] = 1.0
        self.table_count = k

    def _require_table(self) -> None:
        if self.needs_table and self.table_count == 0:
            raise RawedgeError(None, "this priorraw model has no prior table: build one with "
                                     "`rawedge prior build MODEL.pt --refs RAW_DIR -o MODEL_WITH_TABLE.pt` "
                                     "(or set use_prior=false and use_attention=false)")

    def _table_bias(self) -> torch.Tensor:
        return (1.0 - self.prior_valid) * INVALID_LOGIT

    def assemble(self, f_t: torch.Tensor, chunk: int | None = None):
        """Softmax assembly from the table: (F_sRGB [N,3,h,w], F_RAW [N,4,h,w]) for embeddings f_t."""
        h, w = f_t.shape[2:]
        values = torch.cat([self.prior_srgb, self.prior_raw], dim=1)
        out = soft_retrieve(to_positions(f_t), self.prior_feat, values, self.encoder.scale(), self._table_bias(),
                            self.chunk if chunk is None else chunk)
        out = to_map(out, h, w)
        return out[:, :3], out[:, 3:]

    # ---- the reconstructor ----------------------------------------------------------------------
    def forward(self, srgb, thumb, exif, wb, cam2rgb, rgb2cam):
        self._require_table()
        analytic = analytic_packed(srgb, wb, rgb2cam)
        blocks = F.pixel_unshuffle(srgb, 2)
        inputs = [blocks, analytic]
        prior_raw = None
        if self.use_prior:
            f_srgb, prior_raw = self.assemble(self.encoder(srgb))
            inputs += [(f_srgb - F.avg_pool2d(srgb, 2)).abs(), prior_raw]
        f = self.fuse(torch.cat(inputs, dim=1))
        if self.conf is not None:
            f = f * torch.sigmoid(self.conf(f))
        if self.use_attention:
            f = f + self.attn(f, self.prior_feat, self.prior_raw, self._table_bias(), self.chunk)
            f = f + self.ffn(f)
        x = self.head(torch.cat([f, blocks], dim=1))
        skips = [x]
        for down, enc in zip(self.downs, self.enc):
            x = enc(down(x))
            skips.append(x)
        x = x + self.thumb(thumb)[:, :, None, None]
        for level, (up, dec, skip) in zip(reversed(range(self.depth)), zip(self.ups, self.dec, reversed(skips[:-1]))):
            f_level = F.avg_pool2d(f, 2**level) if level else f
            x = dec(torch.cat([up(x), skip, f_level], dim=1))
        out = {"raw": (analytic + self.tail(x)).clamp(0.0, 1.0)}
        if prior_raw is not None and not exporting():
            out["prior_raw"] = prior_raw  # the assembled RAW alone (training/evaluation only)
        return out
