"""The camera state the editor's 3D viewer reports after restoring a saved one, float for float.

``createPreview3DAdvancedExtension`` (``src/extensions/core/load3d.ts``) sends the camera as the
viewer holds it, not as saved: ``CameraManager.setCameraState`` copies position and target, then
three.js's ``OrbitControls.update`` runs once (the offset through spherical coordinates and back,
the target through ``clampLength``) and ``Object3D.lookAt`` recomputes the orientation
(``Matrix4.lookAt`` → ``Quaternion.setFromRotationMatrix``).  The results differ from the saved
numbers in the last bits, so the same double-precision steps are repeated here in the same order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["restored_camera"]

_Vector = tuple[float, float, float]
_POLAR_EPSILON = 0.000001  # three.js Spherical.makeSafe


def _vector(value: Any) -> _Vector | None:
    if not isinstance(value, Mapping):
        return None
    parts = [value.get(axis) for axis in "xyz"]
    if not all(isinstance(p, (int, float)) and not isinstance(p, bool) and math.isfinite(p) for p in parts):
        return None
    return float(parts[0]), float(parts[1]), float(parts[2])  # type: ignore[arg-type]


def _length(v: _Vector) -> float:
    return math.sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2])


def _scaled(v: _Vector, factor: float) -> _Vector:
    return v[0] * factor, v[1] * factor, v[2] * factor


def _normalized(v: _Vector) -> _Vector:
    return _scaled(v, 1 / (_length(v) or 1))  # divideScalar multiplies by the reciprocal


def _cross(a: _Vector, b: _Vector) -> _Vector:
    return a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]


def _orbit(position: _Vector, target: _Vector) -> tuple[_Vector, _Vector]:
    """OrbitControls.update with no pending rotation, pan or zoom and the cursor at the origin."""
    offset = (position[0] - target[0], position[1] - target[1], position[2] - target[2])
    radius = _length(offset)
    if radius == 0:
        theta = phi = 0.0
    else:
        theta = math.atan2(offset[0], offset[2])
        phi = math.acos(max(-1.0, min(1.0, offset[1] / radius)))
    phi = max(_POLAR_EPSILON, min(math.pi - _POLAR_EPSILON, max(0.0, min(math.pi, phi))))
    distance = _length(target)
    target = _scaled(_scaled(target, 1 / (distance or 1)), distance)  # clampLength(0, Infinity)
    ring = math.sin(phi) * radius
    offset = (ring * math.sin(theta), math.cos(phi) * radius, ring * math.cos(theta))
    return (target[0] + offset[0], target[1] + offset[1], target[2] + offset[2]), target


def _look_at(eye: _Vector, target: _Vector) -> tuple[float, float, float, float]:
    """The quaternion of a camera at ``eye`` looking at ``target`` with up = +y."""
    z = (eye[0] - target[0], eye[1] - target[1], eye[2] - target[2])
    if _length(z) == 0:
        z = (z[0], z[1], 1.0)
    z = _normalized(z)
    up = (0.0, 1.0, 0.0)
    x = _cross(up, z)
    if _length(x) == 0:
        z = _normalized((z[0], z[1], z[2] + 0.0001))
        x = _cross(up, z)
    x = _normalized(x)
    y = _cross(z, x)
    m11, m12, m13 = x[0], y[0], z[0]
    m21, m22, m23 = x[1], y[1], z[1]
    m31, m32, m33 = x[2], y[2], z[2]
    trace = m11 + m22 + m33
    if trace > 0:
        s = 0.5 / math.sqrt(trace + 1.0)
        return (m32 - m23) * s, (m13 - m31) * s, (m21 - m12) * s, 0.25 / s
    if m11 > m22 and m11 > m33:
        s = 2.0 * math.sqrt(1.0 + m11 - m22 - m33)
        return 0.25 * s, (m12 + m21) / s, (m13 + m31) / s, (m32 - m23) / s
    if m22 > m33:
        s = 2.0 * math.sqrt(1.0 + m22 - m11 - m33)
        return (m12 + m21) / s, 0.25 * s, (m23 + m32) / s, (m13 - m31) / s
    s = 2.0 * math.sqrt(1.0 + m33 - m11 - m22)
    return (m13 + m31) / s, (m23 + m32) / s, 0.25 * s, (m21 - m12) / s


def restored_camera(state: Mapping[str, Any]) -> dict[str, Any]:
    """``state`` with position, target and quaternion as the viewer reports them after restoring it.

    A state without numeric ``position`` and ``target`` is returned as saved.
    """
    result = dict(state)
    position, target = _vector(state.get("position")), _vector(state.get("target"))
    if position is None or target is None:
        return result
    position, target = _orbit(position, target)
    result["position"] = {**state["position"], **_js_numbers(position, "xyz")}
    result["target"] = {**state["target"], **_js_numbers(target, "xyz")}
    if isinstance(state.get("quaternion"), Mapping):
        result["quaternion"] = {**state["quaternion"], **_js_numbers(_look_at(position, target), "xyzw")}
    return result


def _js_numbers(values: tuple[float, ...], axes: str) -> dict[str, float | int]:
    """JSON.stringify writes integral doubles without a fraction: keep 10, not 10.0."""
    return {axis: int(v) if v.is_integer() else v for axis, v in zip(axes, values, strict=True)}
