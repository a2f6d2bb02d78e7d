"""benchmarks/part_sensitivity.py: the unchanged renders are the data set's own clips, a changed plan moves
only the named part (or takes one component of another section), paired AUCs, and clear errors for an
unknown part or a missing neighbour."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import part_sensitivity as ps  # noqa: E402
from fault_proxy import demo_preset  # noqa: E402

from hybrid_asd.data import synthetic  # noqa: E402
from hybrid_asd.errors import ConfigError  # noqa: E402


def test_original_renders_are_the_data_sets_own_clips_and_parts_change_them(tmp_path):
    data = tmp_path / "data"
    synthetic.generate(data, preset="tiny", seed=3, machines=["valve"], progress=False)
    preset, seed, _ = demo_preset(data)
    paths = ps.render_variants(preset, seed, "valve", 2, 1.0, tmp_path / "renders", progress=False)
    variants = {v for v, _ in paths}
    assert variants == {ps.ORIGINAL, *ps.parts_of("valve", len(preset.sections))} >= set(ps.NEIGHBOUR_PARTS)
    originals = {t: p for (v, t), p in paths.items() if v == ps.ORIGINAL}
    assert len(originals) == 2 * len(preset.sections)
    for task, path in originals.items():
        own = data / "valve" / Path(path).relative_to(tmp_path / "renders" / ps.ORIGINAL / "valve")
        assert Path(path).read_bytes() == own.read_bytes(), own.name
        for part in ps.parts_of("valve", len(preset.sections)):
            assert Path(paths[(part, task)]).read_bytes() != own.read_bytes(), (part, own.name)


def test_changed_plan_moves_only_the_named_part():
    plan = synthetic.plan_section(0, "fan", 1)
    resonant = ps.changed_plan(plan, "resonances", 1.0, np.random.default_rng(0))
    assert resonant["product"]["modes"] != plan["product"]["modes"]
    assert {k: v for k, v in resonant["product"].items() if k != "modes"} == \
        {k: v for k, v in plan["product"].items() if k != "modes"}
    assert resonant["mount"] == plan["mount"]
    mounted = ps.changed_plan(plan, ps.MOUNT, 1.0, np.random.default_rng(0))
    assert mounted["mount"] != plan["mount"] and mounted["product"] == plan["product"]
    assert ps.changed_plan(plan, ps.ORIGINAL, 1.0, np.random.default_rng(0)) == plan
    assert plan == synthetic.plan_section(0, "fan", 1)  # the input plan is left as it was
    with pytest.raises(ConfigError, match="unknown part 'speed'"):
        ps.changed_plan(plan, "speed", 1.0, np.random.default_rng(0))


def test_neighbour_parts_take_one_component_of_another_section():
    plan, other = synthetic.plan_section(0, "gearbox", 0), synthetic.plan_section(0, "gearbox", 2)
    rng = np.random.default_rng(0)
    unit = ps.changed_plan(plan, ps.NEIGHBOUR_PRODUCT, 1.0, rng, other)
    assert (unit["product"], unit["ref_rms"]) == (other["product"], other["ref_rms"])
    assert unit["product"] != plan["product"] and unit["ref_rms"] != plan["ref_rms"]
    assert (unit["mount"], unit["source"], unit["target"]) == (plan["mount"], plan["source"], plan["target"])
    conditions = ps.changed_plan(plan, ps.NEIGHBOUR_CONDITIONS, 1.0, rng, other)
    assert conditions["source"] == other["source"] != plan["source"]
    assert {k: v for k, v in conditions.items() if k != "source"} == {k: v for k, v in plan.items() if k != "source"}
    assert plan == synthetic.plan_section(0, "gearbox", 0)
    for neighbour in (None, plan, synthetic.plan_section(0, "pump", 1)):
        with pytest.raises(ConfigError, match="needs the plan of another section of gearbox"):
            ps.changed_plan(plan, ps.NEIGHBOUR_PRODUCT, 1.0, rng, neighbour)


def test_parts_are_the_models_variation_groups_and_the_mounting():
    assert ps.parts_of("fan") == ["resonances", "profiles", "rates", "gains", "depths", "mount"]
    assert ps.parts_of("pump") == ["resonances", "profiles", "rates", "gains", "mount"]  # no modulation depths
    assert ps.parts_of("pump", 3) == ps.parts_of("pump") + ["neighbour_product", "neighbour_conditions"]


def test_paired_aucs():
    tasks = [synthetic.ClipTask("fan", 0, "source", "test", "normal", i) for i in range(3)]
    scores = {(ps.ORIGINAL, t): s for t, s in zip(tasks, [1.0, 2.0, 3.0])}
    scores.update({("gains", t): s for t, s in zip(tasks, [4.0, 5.0, 6.0])})
    scores.update({("mount", t): s for t, s in zip(tasks, [1.0, 2.0, 3.0])})
    scores.update({("rates", t): s for t, s in zip(tasks, [0.0, 0.5, 2.5])})
    aucs = ps.paired_aucs(scores)
    assert aucs == {"gains": 1.0, "mount": 0.5, "rates": pytest.approx(2 / 9)}
