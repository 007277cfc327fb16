"""A small numpy renderer for the tabletop world (no OpenGL).

Every object is drawn as a few screen-space primitives — discs, flat ellipses, convex polygons and
capsules — with anti-aliased edges from signed distances, each evaluated only inside its bounding box,
composited far-to-near (painter's algorithm). Depth shows as perspective size and as shadows on the table,
cast by a light above, behind and to the right: a shadow falls toward the front left of what casts it,
`SHADOW_SHEAR` metres per metre of height. So the hand's height is the offset between the hand and its
shadow — in the open, not hidden under the hand, as a shadow straight below a steeply viewed hand is.
"""

from __future__ import annotations

import numpy as np

from tkjepa.world import hand
from tkjepa.world.scene import COLORS, TABLE_X, TABLE_Y, Camera

SKIN = np.array([232.0, 188.0, 160.0])
SLEEVE = np.array([72.0, 72.0, 78.0])
LIGHT = np.array([-0.35, -0.55, 0.76])  # in screen coordinates (x right, y down, z toward the viewer)
LIGHT /= np.linalg.norm(LIGHT)
# Where a shadow falls on the table: (dx, dy) per metre of height above it (toward −x, and −y = the viewer).
SHADOW_SHEAR = np.array([-0.45, -0.35])
PALM = np.array([0.0, 0.035, 0.0])  # the hand's shadow is centred under the palm, just ahead of the wrist


class Renderer:
    """Renders a `WorldState` to an [S, S, 3] uint8 frame for one `Camera`."""

    def __init__(self, camera: Camera):
        self.cam, self.S = camera, camera.size
        self.f = float(camera.intrinsic[0, 0])
        # Pixel-centre coordinates (OpenCV convention: pixel (i, j) is centred at u = j, v = i).
        self._Y, self._X = np.mgrid[0:self.S, 0:self.S].astype(np.float32)
        self.background, self.wall = self._table()
        self._static_key, self._static = None, None

    # -- scene ---------------------------------------------------------------------------------------
    def render(self, state, cue_object: int = -1) -> np.ndarray:
        # Objects at rest change rarely: their layer is cached and only the hand is drawn per frame. The
        # camera looks down steeply and the hand stays above what it does not hold, so drawing it last
        # gives the right occlusions.
        key = (state.held, cue_object, np.round([o.position for o in state.objects], 4).tobytes())
        if key != self._static_key:
            self._static_key, self._static = key, self._static_layer(state, cue_object)
        img = self._static.copy()
        wrist = state.wrist
        self._shadow(img, wrist + PALM, 0.045, wrist[2])
        held = state.objects[state.held] if state.held >= 0 else None
        if held is not None:
            self._shadow(img, held.position, held.radius * 1.15, held.position[2], held.height)
        self._hand(img, wrist, state.grip, held)
        return np.clip(img + 0.5, 0, 255).astype(np.uint8)

    def _static_layer(self, state, cue_object: int) -> np.ndarray:
        img = self.background.copy()
        resting = [o for i, o in enumerate(state.objects) if i != state.held]
        for o in resting:  # shadows lie on the table, under everything
            self._shadow(img, o.position, o.radius * 1.15, max(o.position[2], 0.0), o.height)
        if cue_object >= 0:
            b = state.objects[cue_object]
            self._flat_ellipse(img, b.position, b.radius * 1.55, (255.0, 255.0, 255.0), inner=b.radius * 1.2)
        # far to near; bowls get a bias so what lies inside them draws on top
        for o in sorted(resting, key=lambda o: -(self._depth(o.position) + (0.02 if o.shape == "bowl" else 0))):
            self._object(img, o)
        if cue_object >= 0:  # a marker floating over the marked bowl, and the wall lit in its colour
            b = state.objects[cue_object]
            uv, z = self.cam.project(b.position + np.array([0.0, 0.0, 0.09]))
            self._disc(img, uv, self.f * 0.012 / z, (255.0, 255.0, 255.0), shade=False)
            # The whole back wall, so a coarse vision tower (the tiny thinker: one token per 32×32 px) sees
            # the colour in every top token; the ring alone is a few pixels.
            img[self.wall] = np.array(COLORS[b.color], np.float32) * 0.85
        return img

    def _object(self, img, o) -> None:
        color = np.array(COLORS[o.color], float)
        p, r, h = o.position, o.radius, o.height
        if o.shape == "ball":
            uv, z = self.cam.project(p + np.array([0.0, 0.0, h / 2]))
            self._disc(img, uv, self.f * r / z, color)
        elif o.shape == "cube":
            self._box(img, p, r, h, color)
        elif o.shape == "cylinder":
            self._cylinder(img, p, r, r, h, color * 0.68, color)
        else:  # bowl: a tapered body, a rim, and a shaded interior
            self._cylinder(img, p, r * 0.62, r, h, color * 0.62, color * 0.92)
            self._flat_ellipse(img, p + np.array([0.0, 0.003, h]), r * 0.78, color * 0.48)

    def _hand(self, img, wrist, grip, held) -> None:
        joints = hand.hand_joints(wrist, grip)
        self._capsule(img, joints["rightForearm"], wrist, 0.016, 0.014, SLEEVE)
        palm = wrist + np.array([0.0, 0.028, -0.008])
        uv, z = self.cam.project(palm)
        self._disc(img, uv, self.f * 0.026 / z, SKIN)
        if held is not None:
            self._object(img, held)
        knuckles = {n: wrist + np.array([x, 0.046, -0.012])
                    for n, x in zip(hand.FINGERTIPS, (-0.026, -0.018, 0.0, 0.016, 0.028))}
        knuckles["rightThumbTip"] = wrist + np.array([-0.024, 0.012, -0.010])
        self._capsules(img, [knuckles[n] for n in hand.FINGERTIPS], [joints[n] for n in hand.FINGERTIPS],
                       0.0085, 0.0075, SKIN * 0.97)

    # -- primitives (pixel space, pixel centres at integer coordinates) ------------------------------------
    def _window(self, x0, x1, y0, y1):
        x0, y0 = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
        x1, y1 = min(int(np.ceil(x1)) + 1, self.S), min(int(np.ceil(y1)) + 1, self.S)
        if x0 >= x1 or y0 >= y1:
            return None
        sl = (slice(y0, y1), slice(x0, x1))
        return sl, self._X[sl], self._Y[sl]

    @staticmethod
    def _composite(img, win, alpha, color) -> None:
        sl = win[0]
        a = alpha[..., None]
        img[sl] = img[sl] * (1 - a) + np.broadcast_to(color, img[sl].shape) * a

    def _disc(self, img, uv, radius, color, shade=True) -> None:
        (u, v), R = uv, max(float(radius), 0.3)
        win = self._window(u - R - 1, u + R + 1, v - R - 1, v + R + 1)
        if win is None:
            return
        dx, dy = win[1] - u, win[2] - v
        d = np.sqrt(dx * dx + dy * dy)
        alpha = np.clip(R - d + 0.5, 0, 1)
        col = np.asarray(color, float)
        if shade:
            nz = np.sqrt(np.clip(1 - (d / R) ** 2, 0, 1))
            lum = 0.5 + 0.55 * np.clip((dx / R) * LIGHT[0] + (dy / R) * LIGHT[1] + nz * LIGHT[2], 0, 1)
            col = col * lum[..., None]
        self._composite(img, win, alpha, col)

    def _ellipse_params(self, center, radius):
        """Screen ellipse (u, v, a, b) of a horizontal disc: width from perspective, height foreshortened."""
        uv, z = self.cam.project(center)
        ray = np.asarray(center, float) - self.cam.eye
        a = self.f * radius / z
        return uv[0], uv[1], a, a * abs(ray[2]) / np.linalg.norm(ray)

    def _ellipse_alpha(self, win, u, v, a, b, soft=0.5):
        q = np.sqrt(((win[1] - u) / a) ** 2 + ((win[2] - v) / b) ** 2)
        return np.clip((1 - q) * min(a, b) / (2 * soft) + 0.5, 0, 1)

    def _flat_ellipse(self, img, center, radius, color, inner: float | None = None) -> None:
        u, v, a, b = self._ellipse_params(center, radius)
        win = self._window(u - a - 1, u + a + 1, v - b - 1, v + b + 1)
        if win is None:
            return
        alpha = self._ellipse_alpha(win, u, v, a, b)
        if inner is not None:
            _, _, ai, bi = self._ellipse_params(center, inner)
            alpha = alpha * (1 - self._ellipse_alpha(win, u, v, ai, bi))
        self._composite(img, win, alpha, np.asarray(color, float))

    def _shadow(self, img, base, radius, height, thickness: float = 0.0) -> None:
        """Shadow on the table of something whose bottom is `height` m above `base`'s table point.

        It falls `SHADOW_SHEAR` × (height + thickness / 2) away from the point below it, and widens and fades
        a little with height, staying dark enough to be seen (and located) at the hand's highest.
        """
        height = max(float(height), 0.0)
        offset = SHADOW_SHEAR * (height + thickness / 2)
        center = np.array([base[0] + offset[0], base[1] + offset[1], 0.0])
        u, v, a, b = self._ellipse_params(center, radius * (1 + 1.0 * height))
        win = self._window(u - a - 1, u + a + 1, v - b - 1, v + b + 1)
        if win is None:
            return
        alpha = self._ellipse_alpha(win, u, v, a, b, soft=1.0 + 4 * height) * (0.5 * np.exp(-2.5 * height))
        self._composite(img, win, alpha, np.zeros(3))

    def _polygon(self, img, pts, color) -> None:
        """Convex polygon [n, 2] in pixel space."""
        pts = np.asarray(pts, float)
        area = np.sum(pts[:, 0] * np.roll(pts[:, 1], -1) - np.roll(pts[:, 0], -1) * pts[:, 1])
        if abs(area) < 1e-6:
            return
        if area < 0:
            pts = pts[::-1]
        win = self._window(pts[:, 0].min(), pts[:, 0].max(), pts[:, 1].min(), pts[:, 1].max())
        if win is None:
            return
        sdf = np.full(win[1].shape, -np.inf, dtype=np.float32)
        for p, q in zip(pts, np.roll(pts, -1, axis=0)):
            e = q - p
            n = np.array([e[1], -e[0]]) / np.linalg.norm(e)  # outward normal for counter-clockwise in y-down
            sdf = np.maximum(sdf, (win[1] - p[0]) * n[0] + (win[2] - p[1]) * n[1])
        self._composite(img, win, np.clip(0.5 - sdf, 0, 1), np.asarray(color, float))

    def _box(self, img, p, r, h, color) -> None:
        corners = np.array([[x, y, z] for z in (0, h) for y in (-r, r) for x in (-r, r)]) + p
        uv, _ = self.cam.project(corners)  # index = 4*z + 2*y + x
        faces = [((0, 1, 5, 4), 0.72)]  # front (−y) faces the camera
        if self.cam.eye[0] < p[0] - r:
            faces.append(((0, 2, 6, 4), 0.55))
        elif self.cam.eye[0] > p[0] + r:
            faces.append(((1, 3, 7, 5), 0.55))
        faces.append(((4, 5, 7, 6), 1.0))  # top
        for idx, shade in faces:
            self._polygon(img, uv[list(idx)], color * shade)

    def _cylinder(self, img, p, r_bottom, r_top, h, side, top) -> None:
        ub, vb, ab, bb = self._ellipse_params(p, r_bottom)
        ut, vt, at, bt = self._ellipse_params(p + np.array([0.0, 0.0, h]), r_top)
        self._flat_ellipse(img, p, r_bottom, side)
        self._polygon(img, [(ub - ab, vb), (ub + ab, vb), (ut + at, vt), (ut - at, vt)], side)
        self._flat_ellipse(img, p + np.array([0.0, 0.0, h]), r_top, top)

    def _capsule(self, img, p0, p1, r0, r1, color) -> None:
        self._capsules(img, [p0], [p1], r0, r1, color)

    def _capsules(self, img, p0s, p1s, r0, r1, color) -> None:
        """Capsules of one colour (e.g. the five fingers) in one vectorised pass: coverage is the union,
        shading comes from the capsule nearest each pixel."""
        (a, za), (b, zb) = self.cam.project(np.asarray(p0s)), self.cam.project(np.asarray(p1s))  # [K, 2], [K]
        ra, rb = self.f * r0 / za, self.f * r1 / zb                                              # [K]
        R = float(np.max(np.maximum(ra, rb))) + 1
        lo, hi = np.minimum(a, b).min(0) - R, np.maximum(a, b).max(0) + R
        win = self._window(lo[0], hi[0], lo[1], hi[1])
        if win is None:
            return
        X, Y = win[1][None], win[2][None]                                   # [1, h, w]
        e = (b - a)[:, :, None, None]                                       # [K, 2, 1, 1]
        ax, ay = a[:, 0, None, None], a[:, 1, None, None]
        t = np.clip(((X - ax) * e[:, 0] + (Y - ay) * e[:, 1]) / np.maximum((e ** 2).sum(1), 1e-9), 0, 1)
        dx, dy = X - (ax + t * e[:, 0]), Y - (ay + t * e[:, 1])             # [K, h, w]
        rad = ra[:, None, None] + t * (rb - ra)[:, None, None]
        d = np.sqrt(dx * dx + dy * dy)
        k = np.argmin(d - rad, axis=0)[None]                                 # nearest capsule per pixel
        dx, dy, d, rad = (np.take_along_axis(v, k, 0)[0] for v in (dx, dy, d, rad))
        nz = np.sqrt(np.clip(1 - (d / rad) ** 2, 0, 1))
        lum = 0.55 + 0.45 * np.clip((dx / rad) * LIGHT[0] + (dy / rad) * LIGHT[1] + nz * LIGHT[2], 0, 1)
        self._composite(img, win, np.clip(rad - d + 0.5, 0, 1), np.asarray(color, float) * lum[..., None])

    def _depth(self, p) -> float:
        return float(self.cam.to_camera(p)[2])

    # -- background ------------------------------------------------------------------------------------
    def _table(self) -> tuple[np.ndarray, np.ndarray]:
        """Wall, floor and a wooden table top: ray–plane intersection per pixel, computed once.

        Returns the image [S, S, 3] float and the wall mask [S, S] (floor/wall pixels in the top quarter).
        """
        S, K, R, eye = self.S, self.cam.intrinsic, self.cam.pose[:3, :3], self.cam.eye
        v, u = self._Y.astype(float), self._X.astype(float)
        rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1) @ R.T
        t = -eye[2] / np.minimum(rays[..., 2], -1e-6)
        hit = eye + t[..., None] * rays
        on_table = ((hit[..., 0] > TABLE_X[0]) & (hit[..., 0] < TABLE_X[1])
                    & (hit[..., 1] > TABLE_Y[0] - 0.12) & (hit[..., 1] < TABLE_Y[1]) & (rays[..., 2] < 0))
        grain = 0.93 + 0.05 * np.sin(hit[..., 0] * 90 + np.sin(hit[..., 1] * 25) * 2)
        wood = np.array([196.0, 160.0, 118.0]) * grain[..., None]
        floor = np.array([96.0, 98.0, 108.0]) * (0.8 + 0.2 * (v / S))[..., None]
        wall = ~on_table & (v < S / 4)
        return np.where(on_table[..., None], wood, floor).astype(np.float32), wall
