"""Correlation pyramid and look-up (RAFT), with an on-demand path for large frames.

``AllPairsCorr`` builds the full 4-D volume once ([N, h*w, h, w] per level), which is fastest for
small frames but grows as (h*w)^2: a 4K frame at 1/8 would need ~70 GB. ``LocalCorr`` computes
only the (2r+1)^2 correlations the update block looks at, from the (pooled) target features,
every iteration. The two give the same numbers: average-pooling the volume over its target
dimensions equals correlating with average-pooled target features, and bilinear look-up is linear,
so sampling the features and then taking dot products equals sampling the volume.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def window_offsets(radius: int, *, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The (2r+1)^2 integer (dx, dy) offsets of the look-up window, in one fixed order."""
    d = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    dy, dx = torch.meshgrid(d, d, indexing="ij")
    return torch.stack([dx, dy], dim=-1).reshape(-1, 2)  # [K, 2] as (x, y)


def _normalize_grid(xy: torch.Tensor, h: int, w: int) -> torch.Tensor:
    # Pixel-centre coordinates to grid_sample's [-1, 1] with align_corners=False. (align_corners=True
    # cannot express "outside" for a 1-pixel-wide pyramid level: it maps every point to pixel 0.)
    gx = (2.0 * xy[..., 0] + 1.0) / w - 1.0
    gy = (2.0 * xy[..., 1] + 1.0) / h - 1.0
    return torch.stack([gx, gy], dim=-1)


def _sample_volume(corr: torch.Tensor, xy: torch.Tensor, offs: torch.Tensor) -> torch.Tensor:
    """Bilinear look-up of one precomputed level: corr [M, 1, hl, wl], xy [M, 1, 1, 2] positions at the
    level, offs [K, 2] -> [M, K] (zero outside the level)."""
    grid = _normalize_grid(xy + offs.reshape(1, 1, -1, 2), corr.shape[2], corr.shape[3])
    sampled = F.grid_sample(corr, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return sampled.reshape(corr.shape[0], -1)


# Values of one chunk of a correlation volume made in the autocast dtype before it is widened (~64 MB
# in float32): the full half-type volume is never held beside the float32 one.
_VOLUME_CHUNK = 1 << 24


def _volume(query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """query [N, P, D] x keys [N, D, J] -> [N, P, J] float32, made in the autocast dtype.

    Stored in float32 because grid_sample runs in float32 under autocast: a half-type volume would be
    copied to float32 at every iteration (1.9 s per iteration for the [4, 32640, 2040] level at 1080p
    under CPU bf16 autocast). The product runs in the autocast dtype (where the matrix units are; in
    float32 a 1088x1920 window took 9.1 s against 8.5 s, 2 cores with AMX), in chunks of query rows
    written into the float32 volume, so the half-type copy is one chunk, not a second full volume
    (1.5 GB of fresh memory at 1080p otherwise, whose page faults cost more than the product).
    """
    n, p, _ = query.shape
    j = keys.shape[-1]
    out = torch.empty(n, p, j, device=query.device, dtype=torch.float32)
    rows = max(1, _VOLUME_CHUNK // max(1, n * j))
    for s in range(0, p, rows):
        out[:, s:s + rows] = torch.bmm(query[:, s:s + rows], keys)
    return out


def _pool_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    out = [x]
    for _ in range(levels - 1):
        x = F.avg_pool2d(x, 2, stride=2, ceil_mode=True) if min(x.shape[-2:]) > 1 else x
        out.append(x)
    return out


class AllPairsCorr:
    """Full correlation volume, pooled into ``levels`` levels."""

    def __init__(self, fmap1: torch.Tensor, fmap2: torch.Tensor, *, levels: int, radius: int) -> None:
        # fmap1, fmap2: [N, D, h, w]
        n, d, h, w = fmap1.shape
        self.levels, self.radius = levels, radius
        # scaled on the [N, D, hw] features, not on the [N, hw, hw] volume
        corr = _volume((fmap1.flatten(2) / math.sqrt(d)).transpose(1, 2), fmap2.flatten(2))  # [N, hw, h2*w2]
        corr = corr.reshape(n * h * w, 1, fmap2.shape[2], fmap2.shape[3])  # corr: [N*h*w, 1, h2, w2]
        self.pyramid = _pool_pyramid(corr, levels)
        self.shape = (n, h, w)

    def __call__(self, coords: torch.Tensor) -> torch.Tensor:
        # coords: [N, 2, h, w] positions in frame 2 (1/8 pixels) -> [N, levels*K, h, w]
        n, h, w = self.shape
        offs = window_offsets(self.radius, device=coords.device, dtype=coords.dtype)  # [K, 2]
        xy = coords.permute(0, 2, 3, 1).reshape(n * h * w, 1, 1, 2)
        out = [
            _sample_volume(corr, xy / 2**lvl, offs).reshape(n, h, w, -1)
            for lvl, corr in enumerate(self.pyramid)
        ]
        return torch.cat(out, dim=-1).permute(0, 3, 1, 2).contiguous()


class LocalCorr:
    """Correlation computed on demand inside the look-up radius; memory linear in h*w.

    For each query pixel the correlations with the (2r+2)^2 integer neighbours of floor(coords) are
    formed, and the (2r+1)^2 bilinear look-ups are then combined from those integer-position
    correlations with the shared fractional weights. Out-of-frame neighbours read a zero row, which
    matches zero padding in the all-pairs look-up.

    Two ways to form the integer-position correlations, with the same numbers:

    - ``tile`` x ``tile`` blocks of query pixels whose neighbours fall in one small region of the
      target (neighbouring pixels move alike) take one matrix product with that region's rows,
      and their neighbours are picked from the result. This reads each target row once per block
      instead of once per query pixel: the per-pixel gather moved (2r+2)^2 x D values per query
      and dominated refinement at 1080p.
    - blocks whose region would be too large (motion boundaries, ``tile`` = 0) gather every
      query's neighbour rows from a channels-last copy of the target features (contiguous rows,
      unlike ``grid_sample`` on NCHW), ``chunk`` query pixels at a time.

    ``chunk`` also bounds the temporaries of the block path to those of one gathered chunk
    (chunk x (2r+2)^2 x D values).
    """

    def __init__(
        self,
        fmap1: torch.Tensor,
        fmap2: torch.Tensor,
        *,
        levels: int,
        radius: int,
        chunk: int = 4096,
        max_volume: int = 0,
        tile: int = 8,
        max_spread: int = 8,
    ) -> None:
        self.levels, self.radius, self.chunk = levels, radius, chunk
        self.tile, self.max_spread = tile, max_spread
        n, d, h, w = fmap1.shape
        self.fmap1 = fmap1.flatten(2).transpose(1, 2)  # [N, P, D]
        self.scale = 1.0 / math.sqrt(d)
        # Per level: ("table", rows, hl, wl) gathered every iteration, or ("volume", corr, hl, wl)
        # precomputed once. Coarse levels are small enough to precompute (a level of hl*wl targets
        # costs h*w*hl*wl values per pair, up to ``max_volume``), and their look-up is then a cheap
        # sample instead of a (2r+2)^2 x D gather per query pixel: half the work at 1080p.
        self.tables: list[tuple[str, torch.Tensor, int, int]] = []
        scaled_query: torch.Tensor | None = None
        for f2 in _pool_pyramid(fmap2, levels):
            hl, wl = f2.shape[2], f2.shape[3]
            if h * w * hl * wl <= max_volume:
                # The scale goes on the query ([N, P, D]) rather than on the volume ([N, P, hl*wl],
                # ~10x larger at 1080p, where multiplying the volume took 0.97 s of a 21 s window).
                if scaled_query is None:
                    scaled_query = self.fmap1 * self.scale
                corr = _volume(scaled_query, f2.flatten(2))  # [N, P, hl*wl]
                self.tables.append(("volume", corr.reshape(n * h * w, 1, hl, wl), hl, wl))
                continue
            rows = f2.flatten(2).transpose(1, 2)  # [N, hl*wl, D]
            rows = torch.cat([rows, rows.new_zeros(n, 1, d)], dim=1)  # last row: zeros for outside
            self.tables.append(("table", rows.contiguous(), hl, wl))
        self.shape = (n, h, w)
        # The query features cut into tile x tile blocks ([N*th*tw, t*t, D], zero-padded to whole
        # blocks): the same at every iteration and level, so cut once.
        self._qblocks = None
        if tile > 0 and any(kind == "table" for kind, *_ in self.tables):
            ph, pw = -h % tile, -w % tile
            self._qblocks = self._to_blocks(F.pad(fmap1, (0, pw, 0, ph)).permute(0, 2, 3, 1))

    def _to_blocks(self, x: torch.Tensor) -> torch.Tensor:
        """[N, H', W', ...] (H', W' whole blocks) -> [N*th*tw, t*t, ...]."""
        n, hp, wp, t = x.shape[0], x.shape[1], x.shape[2], self.tile
        rest = x.shape[3:]
        x = x.reshape(n, hp // t, t, wp // t, t, *rest).transpose(2, 3)
        return x.reshape(n * (hp // t) * (wp // t), t * t, *rest)

    def _integer_corr(self, rows: torch.Tensor, bx: torch.Tensor, by: torch.Tensor, hl: int, wl: int,
                      ix: torch.Tensor, iy: torch.Tensor) -> torch.Tensor:
        """Correlations with the integer neighbours: bx, by [N, h, w] -> [N, h*w, side*side]."""
        n, h, w = self.shape
        if self.tile > 0:
            out, todo = self._blocks(rows, bx, by, hl, wl, ix, iy)
        else:
            out = self.fmap1.new_empty(n, h * w, ix.numel())
            todo = torch.ones(n, h, w, dtype=torch.bool, device=bx.device)
        sel = todo.reshape(n, h * w).nonzero(as_tuple=True)  # (batch, pixel) of the queries left
        if sel[0].numel():
            bxs, bys = bx.reshape(n, -1)[sel], by.reshape(n, -1)[sel]  # [Q]
            gx, gy = bxs[:, None] + ix, bys[:, None] + iy  # [Q, side*side]
            inside = (gx >= 0) & (gx < wl) & (gy >= 0) & (gy < hl)
            idx = torch.where(inside, gy * wl + gx, hl * wl)
            q = self.fmap1[sel]  # [Q, D]
            for s in range(0, idx.shape[0], self.chunk):
                e = min(s + self.chunk, idx.shape[0])
                feat = rows[sel[0][s:e, None], idx[s:e]]  # [q, side*side, D]
                # .to: under autocast the product comes back in the low-precision dtype
                out[sel[0][s:e], sel[1][s:e]] = torch.einsum("qd,qkd->qk", q[s:e], feat).to(out.dtype)
        return out

    def _blocks(self, rows: torch.Tensor, bx: torch.Tensor, by: torch.Tensor, hl: int, wl: int,
                ix: torch.Tensor, iy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Block path: -> (correlations [N, h*w, side*side], [N, h, w] True where it was not used)."""
        n, h, w = self.shape
        t, r = self.tile, self.radius
        side = 2 * r + 2
        ph, pw = -h % t, -w % t
        # Pad the query grid to whole blocks by repeating edge positions (a padded query adds no
        # spread to its block); padded queries are dropped at the end.
        bxp = F.pad(bx[:, None].float(), (0, pw, 0, ph), mode="replicate")[:, 0].long()
        byp = F.pad(by[:, None].float(), (0, pw, 0, ph), mode="replicate")[:, 0].long()
        th, tw = (h + ph) // t, (w + pw) // t
        bxb, byb = self._to_blocks(bxp), self._to_blocks(byp)  # [B, t*t]
        x0, y0 = bxb.amin(1) - r, byb.amin(1) - r  # [B] region corner
        spread_x, spread_y = bxb.amax(1) - bxb.amin(1), byb.amax(1) - byb.amin(1)
        limit = t - 1 + self.max_spread  # a block moving rigidly spans t - 1
        ok = (spread_x <= limit) & (spread_y <= limit)  # [B]
        rw = int(spread_x[ok].max()) + side if bool(ok.any()) else 0
        rh = int(spread_y[ok].max()) + side if bool(ok.any()) else 0
        out = self.fmap1.new_zeros(n * th * tw, t * t, side * side)
        d = self.fmap1.shape[-1]
        q = self._qblocks  # [B, t*t, D]
        assert q is not None
        ids = ok.nonzero()[:, 0]
        if ids.numel():
            # Neighbour (iy, ix) of a query -> its place in the block's rh x rw region.
            local = (byb[ids, :, None] + iy - y0[ids, None, None]) * rw + (
                bxb[ids, :, None] + ix - x0[ids, None, None])  # [b, t*t, side*side]
            ry = torch.arange(rh, device=bx.device)
            rx = torch.arange(rw, device=bx.device)
            per = max(1, (self.chunk * side * side * d) // (rh * rw * (d + t * t)))
            batch_of = ids // (th * tw)
            for s in range(0, ids.numel(), per):
                e = min(s + per, ids.numel())
                gy = y0[ids[s:e], None, None] + ry[:, None]  # [b, rh, 1]
                gx = x0[ids[s:e], None, None] + rx[None, :]  # [b, 1, rw]
                inside = (gx >= 0) & (gx < wl) & (gy >= 0) & (gy < hl)
                idx = torch.where(inside, gy * wl + gx, hl * wl)
                region = rows[batch_of[s:e, None], idx.reshape(e - s, -1)]  # [b, rh*rw, D]
                corr = torch.bmm(q[ids[s:e]], region.transpose(1, 2))  # [b, t*t, rh*rw]
                out[ids[s:e]] = torch.gather(corr, 2, local[s:e]).to(out.dtype)
        # Back from blocks to the (cropped) query grid.
        out = out.reshape(n, th, tw, t, t, -1).transpose(2, 3).reshape(n, th * t, tw * t, -1)
        out = out[:, :h, :w].reshape(n, h * w, -1)
        todo = (~ok).reshape(n, th, 1, tw, 1).expand(n, th, t, tw, t).reshape(n, th * t, tw * t)
        return out, todo[:, :h, :w]

    def __call__(self, coords: torch.Tensor) -> torch.Tensor:
        # coords: [N, 2, h, w] -> [N, levels*K, h, w]
        n, h, w = self.shape
        r = self.radius
        side = 2 * r + 2
        ints = torch.arange(-r, r + 2, device=coords.device)
        iy, ix = torch.meshgrid(ints, ints, indexing="ij")
        iy, ix = iy.reshape(-1), ix.reshape(-1)  # [side*side]
        xy = coords.flatten(2).transpose(1, 2)  # [N, P, 2]
        offs = window_offsets(r, device=coords.device, dtype=coords.dtype)  # [K, 2]
        per_level = []
        for lvl, (kind, rows, hl, wl) in enumerate(self.tables):
            pts = xy / 2**lvl
            if kind == "volume":
                # rows: [N*h*w, 1, hl, wl], sampled as AllPairsCorr does
                sampled = _sample_volume(rows, pts.reshape(n * h * w, 1, 1, 2), offs)
                per_level.append(sampled.reshape(n, h * w, -1).to(self.fmap1.dtype))
                continue
            base = torch.floor(pts)
            frac = (pts - base).to(self.fmap1.dtype)  # [N, P, 2]
            bx = base[..., 0].long().reshape(n, h, w)
            by = base[..., 1].long().reshape(n, h, w)
            c = self._integer_corr(rows, bx, by, hl, wl, ix, iy)  # [N, P, side*side]
            c = (c * self.scale).reshape(n, h * w, side, side)  # rows: y, cols: x
            fx = frac[..., 0, None, None]
            fy = frac[..., 1, None, None]
            top = c[:, :, :-1, :-1] * (1 - fx) + c[:, :, :-1, 1:] * fx
            bottom = c[:, :, 1:, :-1] * (1 - fx) + c[:, :, 1:, 1:] * fx
            per_level.append((top * (1 - fy) + bottom * fy).reshape(n, h * w, -1))  # [N, P, K] (dy, dx)
        out = torch.cat(per_level, dim=-1)  # [N, P, levels*K]
        return out.transpose(1, 2).reshape(n, -1, h, w)


def build_corr(
    fmap1: torch.Tensor, fmap2: torch.Tensor, *, levels: int, radius: int, impl: str, max_all_pairs: int
) -> AllPairsCorr | LocalCorr:
    """Pick the look-up: all-pairs up to ``max_all_pairs`` query pixels (at 1/8), on-demand above.

    On demand (``auto`` above the limit), the pyramid levels whose volume fits the all-pairs
    volume's budget (``max_all_pairs`` squared values per pair) are still precomputed.
    """
    if impl not in ("auto", "all_pairs", "local"):
        raise ValueError(f"corr impl must be auto, all_pairs or local, not {impl!r}")
    pixels = fmap1.shape[2] * fmap1.shape[3]
    if impl == "all_pairs" or (impl == "auto" and pixels <= max_all_pairs):
        return AllPairsCorr(fmap1, fmap2, levels=levels, radius=radius)
    budget = max_all_pairs * max_all_pairs if impl == "auto" else 0
    return LocalCorr(fmap1, fmap2, levels=levels, radius=radius, max_volume=budget)
