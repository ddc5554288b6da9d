#!/usr/bin/env python3
"""Generate the arena example's sprite PNGs.

Uses only the Python standard library (zlib, struct, math). Output is fully
deterministic: running it twice produces byte-identical files.

    python3 assets/generate.py

Shapes are drawn with signed distance functions and ~1px linear coverage
smoothing, composited with straight-alpha "over" into a float RGBA canvas,
then written as 8-bit RGBA PNGs (filter 0, zlib level 9).
"""

import math
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
SPRITES = os.path.join(HERE, "sprites")


# --------------------------------------------------------------------------
# PNG encoder (RGBA8, filter type 0 on every scanline)
# --------------------------------------------------------------------------

def _chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def write_png(path, width, height, rgba_bytes):
    raw = bytearray()
    stride = width * 4
    for y in range(height):
        raw.append(0)  # filter: None
        raw += rgba_bytes[y * stride:(y + 1) * stride]
    png = b"\x89PNG\r\n\x1a\n"
    png += _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0))
    png += _chunk(b"IDAT", zlib.compress(bytes(raw), 9))
    png += _chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


# --------------------------------------------------------------------------
# Small maths helpers
# --------------------------------------------------------------------------

def clamp(v, lo=0.0, hi=1.0):
    return lo if v < lo else hi if v > hi else v


def lerp(a, b, t):
    return a + (b - a) * t


def mix(c1, c2, t):
    return tuple(lerp(a, b, t) for a, b in zip(c1, c2))


def smoothstep(e0, e1, x):
    t = clamp((x - e0) / (e1 - e0))
    return t * t * (3.0 - 2.0 * t)


def coverage(d):
    """Signed distance (pixels, negative inside) -> coverage with ~1px AA."""
    return clamp(0.5 - d)


def rgb(hexstr):
    hexstr = hexstr.lstrip("#")
    return tuple(int(hexstr[i:i + 2], 16) / 255.0 for i in (0, 2, 4))


# Signed distance functions ------------------------------------------------

def sd_circle(px, py, cx, cy, r):
    return math.hypot(px - cx, py - cy) - r


def sd_ring(px, py, cx, cy, r, half_width):
    return abs(math.hypot(px - cx, py - cy) - r) - half_width


def sd_round_box(px, py, cx, cy, hw, hh, r):
    qx = abs(px - cx) - hw + r
    qy = abs(py - cy) - hh + r
    outside = math.hypot(max(qx, 0.0), max(qy, 0.0))
    inside = min(max(qx, qy), 0.0)
    return outside + inside - r


# Deterministic hashing / periodic value noise ------------------------------

def hash2(ix, iy, seed=0):
    h = (ix * 374761393 + iy * 668265263 + seed * 2147483647) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * 1274126177) & 0xFFFFFFFF
    h ^= h >> 16
    return (h & 0xFFFFFF) / float(0xFFFFFF)


def periodic_noise(x, y, cell, period, seed):
    """Smooth value noise on a lattice of `cell` px that repeats every `period` px."""
    n = period // cell
    gx, gy = x / cell, y / cell
    x0, y0 = math.floor(gx), math.floor(gy)
    fx, fy = gx - x0, gy - y0
    sx = fx * fx * (3 - 2 * fx)
    sy = fy * fy * (3 - 2 * fy)

    def v(i, j):
        return hash2(i % n, j % n, seed)

    top = lerp(v(x0, y0), v(x0 + 1, y0), sx)
    bot = lerp(v(x0, y0 + 1), v(x0 + 1, y0 + 1), sx)
    return lerp(top, bot, sy)


def fbm(x, y, period, seed, cells=(32, 16, 8, 4)):
    total, amp, norm = 0.0, 1.0, 0.0
    for i, c in enumerate(cells):
        total += amp * periodic_noise(x, y, c, period, seed + 17 * i)
        norm += amp
        amp *= 0.5
    return total / norm


# --------------------------------------------------------------------------
# Canvas with straight-alpha "over" compositing
# --------------------------------------------------------------------------

class Canvas:
    def __init__(self, w, h, bg=(0.0, 0.0, 0.0), alpha=0.0):
        self.w, self.h = w, h
        # RGB of fully transparent pixels is set to `bg` so that bilinear
        # filtering in the engine does not bleed a black fringe into edges.
        self.px = [[bg[0], bg[1], bg[2], alpha] for _ in range(w * h)]

    def blend(self, x, y, color, a):
        if a <= 0.0:
            return
        p = self.px[y * self.w + x]
        da = p[3]
        oa = a + da * (1.0 - a)
        if oa <= 0.0:
            return
        k = da * (1.0 - a)
        for i in range(3):
            p[i] = (color[i] * a + p[i] * k) / oa
        p[3] = oa

    def draw(self, sdf, shade, opacity=1.0, bbox=None):
        """Fill where sdf(x, y) < 0; shade(x, y, d) -> (r, g, b) or (r, g, b, a)."""
        x0, y0, x1, y1 = bbox if bbox else (0, 0, self.w, self.h)
        for y in range(max(0, y0), min(self.h, y1)):
            for x in range(max(0, x0), min(self.w, x1)):
                px, py = x + 0.5, y + 0.5
                d = sdf(px, py)
                cov = coverage(d)
                if cov <= 0.0:
                    continue
                c = shade(px, py, d)
                a = cov * opacity * (c[3] if len(c) > 3 else 1.0)
                self.blend(x, y, c, a)

    def to_bytes(self):
        out = bytearray()
        for p in self.px:
            out += bytes(int(round(clamp(v) * 255.0)) for v in p)
        return out

    def save(self, name):
        path = os.path.join(SPRITES, name)
        write_png(path, self.w, self.h, self.to_bytes())
        return path


def solid(color):
    return lambda px, py, d: color


# --------------------------------------------------------------------------
# Sprites
# --------------------------------------------------------------------------

OUTLINE = rgb("#2b2d33")   # dark grey: stays dark under any multiply tint
PUPIL = rgb("#15161a")
WHITE = (1.0, 1.0, 1.0)


def draw_creature(cv, cx, cy, s, tint=(1.0, 1.0, 1.0)):
    """Round top-down creature centred at (cx, cy); s = scale (1.0 -> 64px sprite).

    `tint` is multiplied into the body only (used for the icon); the game
    sprite is drawn untinted and coloured at runtime via Sprite.color.
    """
    R = 25.5 * s          # body radius
    OW = 2.6 * s          # outline width
    bb = (int(cx - R - OW - 2), int(cy - R - OW - 2), int(cx + R + OW + 3), int(cy + R + OW + 3))

    # Outline disc (body is drawn on top of it, leaving a ring).
    cv.draw(lambda x, y: sd_circle(x, y, cx, cy, R + OW), solid(OUTLINE), bbox=bb)

    # Light direction (from top-left, towards the viewer).
    lx, ly, lz = -0.45, -0.55, 0.70
    ln = math.sqrt(lx * lx + ly * ly + lz * lz)
    lx, ly, lz = lx / ln, ly / ln, lz / ln

    def body_shade(x, y, d):
        nx, ny = (x - cx) / R, (y - cy) / R
        r2 = min(nx * nx + ny * ny, 1.0)
        nz = math.sqrt(1.0 - r2)
        lam = max(0.0, nx * lx + ny * ly + nz * lz)
        v = 0.80 + 0.20 * lam
        # soft rim darkening just inside the outline
        v -= 0.06 * smoothstep(0.80, 1.0, math.sqrt(r2))
        # small specular highlight
        hx, hy = cx - 0.42 * R, cy - 0.48 * R
        spec = 1.0 - smoothstep(0.0, 0.22 * R, math.hypot(x - hx, y - hy))
        v = lerp(v, 1.0, 0.85 * spec)
        return (v * tint[0], v * tint[1], v * tint[2])

    cv.draw(lambda x, y: sd_circle(x, y, cx, cy, R), body_shade, bbox=bb)

    # Eyes: offset towards the top (facing "up"/forward).
    er = 6.6 * s           # sclera radius
    eo = 1.3 * s           # sclera outline width
    pr = 3.5 * s           # pupil radius
    for side in (-1, 1):
        ex, ey = cx + side * 8.8 * s, cy - 7.5 * s
        cv.draw(lambda x, y, ex=ex, ey=ey: sd_circle(x, y, ex, ey, er + eo), solid(OUTLINE), bbox=bb)
        cv.draw(lambda x, y, ex=ex, ey=ey: sd_circle(x, y, ex, ey, er), solid(WHITE), bbox=bb)
        px_, py_ = ex + side * 0.6 * s, ey - 2.2 * s
        cv.draw(lambda x, y, px_=px_, py_=py_: sd_circle(x, y, px_, py_, pr), solid(PUPIL), bbox=bb)
        gx, gy = px_ - 1.2 * s, py_ - 1.3 * s
        cv.draw(lambda x, y, gx=gx, gy=gy: sd_circle(x, y, gx, gy, 1.15 * s), solid(WHITE), bbox=bb)


def make_player():
    cv = Canvas(64, 64, bg=OUTLINE)
    draw_creature(cv, 32.0, 32.0, 1.0)
    return cv.save("player.png")


def make_shadow():
    w, h = 64, 32
    cv = Canvas(w, h, bg=(0.0, 0.0, 0.0))
    cx, cy, rx, ry = w / 2, h / 2, 30.0, 14.0

    def shade(x, y, d):
        r = math.hypot((x - cx) / rx, (y - cy) / ry)
        a = 0.55 * (1.0 - smoothstep(0.25, 1.0, r))
        return (0.02, 0.03, 0.04, a)

    cv.draw(lambda x, y: math.hypot((x - cx) / rx, (y - cy) / ry) - 1.0, shade)
    return cv.save("shadow.png")


# Flagstone rows for the floor: (row shift, stone widths summing to 128).
FLOOR_ROWS = (
    (0, (40, 48, 40)),
    (20, (56, 32, 40)),
    (8, (32, 48, 48)),
    (28, (48, 40, 40)),
)


def make_floor():
    N = 128
    cv = Canvas(N, N, alpha=1.0)
    base = rgb("#374345")
    grout = rgb("#2a3335")
    moss = rgb("#394a41")
    SH = N // len(FLOOR_ROWS)   # row height (32px)
    GAP = 1.3                   # half grout width
    for y in range(N):
        for x in range(N):
            px, py = x + 0.5, y + 0.5
            row = int(py // SH)
            shift, widths = FLOOR_ROWS[row]
            u = (px - shift) % N
            col, start = 0, 0
            while u >= start + widths[col]:
                start += widths[col]
                col += 1
            sw = widths[col]
            lx, ly = u - start, py - row * SH
            # per-stone rounded rectangle
            d = sd_round_box(lx, ly, sw / 2, SH / 2, sw / 2 - GAP, SH / 2 - GAP, 5.0)
            # subtle per-stone variation; all noise is periodic with period N
            sv = hash2(col, row, 7) - 0.5
            n = fbm(px, py, N, 3) - 0.5
            fine = hash2(x, y, 11) - 0.5
            m = smoothstep(0.50, 0.75, fbm(px, py, N, 29, cells=(32, 16, 8)))
            stone = mix(base, moss, m * 0.8)
            bright = 1.0 + 0.06 * sv + 0.10 * n + 0.025 * fine
            # gentle bevel: lighter towards the top-left of each stone
            edge = 1.0 - smoothstep(-4.0, 0.0, d)
            tl = (sw / 2 - lx) / (sw / 2) * 0.4 + (SH / 2 - ly) / (SH / 2) * 0.6
            bright *= 1.0 + 0.05 * (1.0 - edge) * tl
            stone = tuple(c * bright for c in stone)
            g = tuple(c * (1.0 + 0.08 * n) for c in grout)
            c = mix(g, stone, coverage(d))
            cv.px[y * N + x] = [c[0], c[1], c[2], 1.0]
    return cv.save("floor.png")


def make_wall():
    N = 32
    cv = Canvas(N, N, alpha=1.0)
    face = rgb("#1f262c")
    light = rgb("#46525a")
    dark = rgb("#0d1013")
    B = 3.0  # bevel width
    for y in range(N):
        for x in range(N):
            px, py = x + 0.5, y + 0.5
            n = fbm(px, py, N, 41, cells=(16, 8, 4)) - 0.5
            fine = hash2(x, y, 43) - 0.5
            c = tuple(v * (1.0 + 0.30 * n + 0.05 * fine) for v in face)
            # distance to each edge
            dl, dt, dr, db = px, py, N - px, N - py
            m = min(dl, dt, dr, db)
            if m < B + 1.0:
                t = 1.0 - smoothstep(B - 0.5, B + 0.5, m)
                # nearest edge picks the bevel colour (mitred at the corners)
                edges = ((dt, light), (dl, mix(light, face, 0.35)),
                         (db, dark), (dr, mix(dark, face, 0.25)))
                edge_col = min(edges, key=lambda e: e[0])[1]
                c = mix(c, edge_col, t)
            # 1px dark seam around the block so tiled blocks read individually
            seam = 1.0 - smoothstep(0.0, 1.0, min(dr, db))
            c = mix(c, dark, seam * 0.8)
            cv.px[y * N + x] = [c[0], c[1], c[2], 1.0]
    return cv.save("wall.png")


def make_ring():
    cv = Canvas(64, 64, bg=WHITE)
    cv.draw(lambda x, y: sd_ring(x, y, 32.0, 32.0, 29.0, 1.6), solid(WHITE))
    return cv.save("ring.png")


def make_icon():
    cv = Canvas(64, 64, bg=rgb("#1b2228"))
    top, bottom = rgb("#2a3540"), rgb("#151b21")
    cv.draw(lambda x, y: sd_round_box(x, y, 32.0, 32.0, 31.0, 31.0, 12.0),
            lambda x, y, d: mix(top, bottom, y / 64.0))
    # shadow under the creature
    cx, cy = 32.0, 34.0
    cv.draw(lambda x, y: math.hypot((x - cx) / 22.0, (y - (cy + 16.0)) / 7.0) - 1.0,
            lambda x, y, d: (0.0, 0.0, 0.0,
                             0.5 * (1.0 - smoothstep(0.2, 1.0, math.hypot((x - cx) / 22.0, (y - (cy + 16.0)) / 7.0)))))
    draw_creature(cv, cx, cy - 2.0, 0.88, tint=rgb("#ffb347"))
    return cv.save("icon.png")


def main():
    os.makedirs(SPRITES, exist_ok=True)
    for fn in (make_player, make_shadow, make_floor, make_wall, make_ring, make_icon):
        path = fn()
        print(f"wrote {os.path.relpath(path, os.path.dirname(HERE))} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
