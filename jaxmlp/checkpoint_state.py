"""Between a sweep's state and what a checkpoint holds: group grids, abstract targets, fingerprints of the
data and the settings a checkpoint was trained on.

A checkpoint holds each group's whole (streams × hyperparameters) grid of member states, without units,
padding or devices, so a checkpoint written with one device count or chunk size restores with another. No
random state is stored: every key derives from a member's seed and the epoch.
"""

from __future__ import annotations

import json
from typing import Any

import jax
import numpy as np

from jaxmlp import hosts
from jaxmlp import members as members_lib
from jaxmlp.checkpoint_io import settings_fingerprint
from jaxmlp.layout import Unit

# Settings that change only how members are laid out on devices, never which members a sweep has or what
# they train on: checkpoints hold whole group grids, so these may differ between saving and resuming.
LAYOUT_ONLY = ("devices", "chunk_size", "member_block")


def data_fingerprint(prep: members_lib.Prepared) -> dict[str, str]:
    """Per dataset, the SHA-256 of its arrays (:meth:`jaxmlp.data.Dataset.fingerprint`, the one results.json
    records too). With the settings' fingerprint (subset share, data seed, folds) it fixes what the sweep
    trains on."""
    return {name: d.fingerprint for name, d in sorted(prep.data.items())}


def settings(config: dict[str, Any]) -> str:
    """A SHA-256 of the settings that define a sweep (the layout-only ones left out)."""
    return settings_fingerprint({k: v for k, v in plain(config).items() if k not in LAYOUT_ONLY})


def plain(d: dict[str, Any]) -> dict[str, Any]:
    """`d` as JSON would return it (tuples -> lists), so saved and current configs compare equal."""
    return json.loads(json.dumps(d))


def differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """'--flag A in the checkpoint, B now' for each setting that differs (layout-only ones ignored; a
    table of settings, such as ``hparams``, compared name by name)."""
    saved, now = _flat(plain(saved)), _flat(plain(now))
    out = []
    for k in sorted((set(saved) | set(now)) - set(LAYOUT_ONLY)):
        if saved.get(k) != now.get(k):
            out.append(f"--{k.replace('_', '-')} {_show(saved.get(k))} in the checkpoint, {_show(now.get(k))} now")
    return out


def _flat(config: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in config.items():
        if isinstance(v, dict):
            out.update(v)
        else:
            out[k] = v
    return out


def _show(v: Any) -> str:
    if v is None:
        return "default"
    if isinstance(v, list):
        return "/".join(_show(x) for x in v) if any(isinstance(x, list) for x in v) else ",".join(map(str, v))
    return str(v)


def sweep_state(prep: members_lib.Prepared, grids: dict[str, Any], meta: dict[str, Any],
                planned: bool = False) -> members_lib.SweepState:
    """The restored (host) grids cut into units and placed on the member mesh: the layout the sweep
    trained in when saved (repacked units included, so the resumed epochs run exactly as the
    uninterrupted ones did), or the planned one (`planned`, an older checkpoint, or another device count)."""
    layout = list(prep.units)
    overrides = {int(i): {k: float(v) for k, v in d.items()} for i, d in (meta.get("overrides") or {}).items()}
    saved = meta.get("layout")
    if saved and not planned and meta.get("layout_devices") == len(prep.layout.devices):
        planned_units = {json.dumps(u.to_dict()): u for u in prep.units}
        # A planned unit comes back as itself (so a never-repacked sweep is seen as such: members.canonical).
        layout = [planned_units.get(json.dumps(d)) or Unit.from_dict(d) for d in saved]
    planned_at = {id(u): k for k, u in enumerate(prep.units)}
    inputs = [prep.inputs[planned_at[id(unit)]] if id(unit) in planned_at and not np.isin(unit.index, list(overrides)).any()
              else members_lib.unit_inputs(prep.groups[unit.group], prep.program(unit), unit,
                                           prep.group_data(unit.group), prep.layout, overrides)
              for unit in layout]
    units = []
    for unit in layout:
        pick = (np.asarray(unit.streams)[:, None], unit.points)   # padding repeats real members here too
        grid = jax.tree.map(lambda a: np.asarray(a)[pick], grids[f"group_{unit.group}"])
        units.append(hosts.put(grid, prep.layout.members(unit)))
    status = {int(i): dict(v) for i, v in (meta.get("status") or {}).items()}
    return members_lib.SweepState(int(meta["epoch"]), units, list(meta["history"]), layout, inputs, status,
                                  overrides, list(meta.get("events") or []),
                                  {int(i): int(e) for i, e in (meta.get("started") or {}).items()},
                                  dict(meta.get("spent") or {}))


def layout_meta(prep: members_lib.Prepared, state: members_lib.SweepState) -> dict[str, Any]:
    """What a checkpoint records besides the grids: the layout trained in and the members' end states."""
    return {"layout": [u.to_dict() for u in state.layout_of(prep)], "layout_devices": len(prep.layout.devices),
            "status": {str(i): v for i, v in state.status.items()},
            "overrides": {str(i): v for i, v in state.overrides.items()}, "events": list(state.events),
            "started": {str(i): e for i, e in state.started.items()}, "spent": dict(state.spent)}


def target(prep: members_lib.Prepared) -> dict[str, Any]:
    """The abstract state: per group, the member-state tree of its (S, H) grid as
    ``jax.ShapeDtypeStruct`` (with optax's state classes), from ``jax.eval_shape`` of the group's own
    init on one of its units (whose leading (s, h) axes become the group's)."""
    out = {}
    for g, group in enumerate(prep.groups):
        u = next(u for u, unit in enumerate(prep.units) if unit.group == g)
        one = jax.eval_shape(prep.programs[g].init, *prep.inputs[u])
        grid = (len(group.streams), len(group.hparams))
        out[f"group_{g}"] = jax.tree.map(lambda a: jax.ShapeDtypeStruct(grid + a.shape[2:], a.dtype), one)
    return out


def grid(prep: members_lib.Prepared, state: members_lib.SweepState, g: int) -> Any:
    """Group g's state as its (S, H) grid of real members: the unit's own arrays when one unit covers the
    grid, else gathered from the units on the host (padding left out)."""
    group = prep.groups[g]
    units = [(u, unit) for u, unit in enumerate(state.layout_of(prep)) if unit.group == g]
    shape = (len(group.streams), len(group.hparams))
    if len(units) == 1 and units[0][1].shape == shape and units[0][1].real.all() and (
            units[0][1].points == np.arange(shape[1])).all():
        return state.units[units[0][0]]
    host = hosts.get([state.units[u] for u, _ in units])

    def assemble(*leaves):
        out = np.empty(shape + leaves[0].shape[2:], leaves[0].dtype)
        for (_, unit), leaf in zip(units, leaves):
            a, b = np.nonzero(unit.real)
            out[np.asarray(unit.streams)[a], unit.points[a, b]] = leaf[a, b]
        return out

    return jax.tree.map(assemble, *host)
