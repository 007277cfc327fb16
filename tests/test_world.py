"""The tabletop world: determinism, physics, rendering, the information structure, and the CLI."""

import hashlib
from pathlib import Path

import numpy as np
import pytest

from tkjepa.cli import main
from tkjepa.episode import RIGHT_HAND_JOINTS, WRIST
from tkjepa.world import FAMILIES, TabletopEnv, WorldConfig, default_camera, generate_episode
from tkjepa.world import expert, hand
from tkjepa.world.stats import ambiguity_report


@pytest.fixture(scope="module")
def episodes():
    return [generate_episode(s) for s in range(40)]


def test_same_seed_same_episode_and_different_seeds_differ():
    a, b, c = generate_episode(3), generate_episode(3), generate_episode(4)
    assert np.array_equal(a.frames, b.frames)
    for name in a.transforms:
        assert np.array_equal(a.transforms[name], b.transforms[name])
    assert a.instruction == b.instruction and a.extras["subgoal_end"].tolist() == b.extras["subgoal_end"].tolist()
    assert not np.array_equal(a.frames, c.frames)


def test_episode_layout(episodes):
    ep = episodes[0]
    assert ep.frames.shape == (64, 64, 64, 3) and ep.frames.dtype == np.uint8
    assert set(ep.transforms) == set(RIGHT_HAND_JOINTS) | {"camera"}
    assert all(t.shape == (64, 4, 4) and t.dtype == np.float32 for t in ep.transforms.values())
    assert ep.extras["actions"].shape == (64, 4) and ep.extras["object_positions"].shape[:1] == (64,)
    for ep in episodes:
        ends = ep.extras["subgoal_end"]
        assert np.all(np.diff(ends) > 0) and ends[-1] < ep.num_frames
        assert ep.extras["success"]


def test_every_colour_has_its_home_so_a_name_says_where():
    from tkjepa.world.scene import HOME_JITTER, HOMES, SIZES

    episodes = [generate_episode(s, WorldConfig(layout="homes")) for s in range(24)]
    assert all(e.extras["success"] and e.extras["attempt"] == 0 for e in episodes)
    r = ambiguity_report(episodes, horizon=16)["ade"]             # the next subgoal still matters as much
    assert r["candidate_mean"] > 1.5 * r["told_next_subgoal"]
    for ep in episodes:
        assert ep.extras["layout"] == "homes"
        names, start = ep.extras["object_names"], ep.extras["object_positions"][0]
        colours = [n.split()[0] for n in names]
        assert len(set(colours)) == len(colours), names            # one object per colour
        for name, pos in zip(names, start):
            colour, shape = name.split()
            assert np.all(np.abs(pos[:2] - HOMES[colour]) <= HOME_JITTER[shape] + 1e-6), name
            assert pos[2] == 0.0
        radius = [SIZES[n.split()[1]] for n in names]
        gaps = [np.linalg.norm(start[i, :2] - start[j, :2]) - radius[i] - radius[j]
                for i in range(len(start)) for j in range(i)]
        assert min(gaps) > 0.002, names                              # no two objects overlap, even two bowls


def test_scattered_layout_is_the_default_and_replays_from_the_episode():
    from tkjepa.world.generate import expert_segments

    eps = [generate_episode(s) for s in range(12)]
    assert all(e.extras["layout"] == "scattered" and e.extras["success"] for e in eps)
    assert np.array_equal(eps[0].frames, generate_episode(0, WorldConfig(layout="scattered")).frames)
    # anywhere on the table: some scene repeats a colour, or puts an object far from its colour's home
    from tkjepa.world.scene import HOMES
    far = [np.linalg.norm(p[:2] - HOMES[n.split()[0]]) > 0.05
           for e in eps for n, p in zip(e.extras["object_names"], e.extras["object_positions"][0])]
    assert np.mean(far) > 0.5
    # the expert is replayed on the layout the episode was drawn with, not on today's default
    ep = eps[0]
    targets = lambda segs: [s.target.round(6).tolist() for s in segs]  # noqa: E731
    assert targets(expert_segments(ep)) == targets(expert_segments(ep, WorldConfig(family=ep.task, layout="scattered")))
    assert targets(expert_segments(ep)) != targets(expert_segments(ep, WorldConfig(family=ep.task, layout="homes")))
    homes = generate_episode(0, WorldConfig(layout="homes"))
    assert targets(expert_segments(homes)) == targets(expert_segments(homes, WorldConfig(family=homes.task,
                                                                                      layout="homes")))
    with pytest.raises(ValueError, match="layout"):
        WorldConfig(layout="tidy")


def test_expert_succeeds_first_time_in_every_family():
    for family in FAMILIES:
        eps = [generate_episode(s, WorldConfig(family=family)) for s in range(8)]
        assert all(e.task == family and e.extras["success"] for e in eps)
        assert sum(e.extras["attempt"] == 0 for e in eps) >= 7, family


def test_decision_point_sits_at_the_forecast_start(episodes):
    s = 32
    decisions = np.array([ep.extras["decision_frame"] for ep in episodes])
    assert np.all((decisions >= s) & (decisions <= s + 6)), decisions
    assert np.mean(decisions == s) > 0.9  # later only when the first subgoal cannot be done by then
    for ep in episodes:
        w = ep.positions([WRIST])[:, 0]
        assert np.linalg.norm(w[s - 1] - w[s - 4]) < 0.01  # the dense window sees a still hand
        d = ep.extras["decision_frame"]
        assert np.linalg.norm(w[d + 4] - w[d]) > 0.01  # and it is on its way four frames after the decision


def test_hand_height_is_visible_as_the_offset_to_its_shadow(episodes):
    """From the hand's image position alone, height and depth are confounded (one pixel row, many (y, z));
    with its shadow's, which falls `SHADOW_SHEAR` per metre of height to the front left, xyz is linear."""
    from tkjepa.world.render import PALM, SHADOW_SHEAR
    from tkjepa.world.stats import image_position_ceiling

    hand_only, with_shadow = image_position_ceiling(episodes), image_position_ceiling(episodes, shadow=True)
    x, y, z = hand_only["r2_xyz"]
    assert x > 0.95 and z < 0.3 and y < 0.95             # z (and so y) not readable from the hand alone
    assert 0.8 < hand_only["r2"] < 0.9 and hand_only["frames"] == 64 * len(episodes)
    assert min(with_shadow["r2_xyz"]) > 0.98, with_shadow
    p = episodes[0].positions([WRIST])[20, 0]
    shadow = p + PALM
    shadow[:2] += SHADOW_SHEAR * p[2]
    u, v = np.round(default_camera(64).project(np.r_[shadow[:2], 0.0][None])[0][0]).astype(int)
    frame = episodes[0].frames[20].astype(float)
    assert frame[v, u].mean() < frame[5:, :].mean()        # and the shadow is drawn there: darker than average


def test_future_is_ambiguous_without_the_subgoal(episodes):
    r = ambiguity_report(episodes, horizon=16)["ade"]
    assert r["told_next_subgoal"] < 0.5 * r["const_velocity"]
    assert r["candidate_mean"] > 1.5 * r["told_next_subgoal"]
    assert r["wrong_candidate"] > 2.5 * r["told_next_subgoal"]


def test_hand_stays_in_view(episodes):
    for ep in episodes:
        uv = ep.project([WRIST])[:, 0]
        assert np.all((uv > -2) & (uv < 66)), ep.instruction


def test_palm_is_drawn_where_the_camera_model_projects_it():
    ep = generate_episode(0)
    palm = ep.positions([WRIST])[:, 0] + np.array([0.0, 0.028, -0.008])  # the renderer's palm centre
    uv, _ = default_camera(64).project(palm)
    u, v = np.round(uv).astype(int).T
    ok = (u >= 0) & (u < 64) & (v >= 0) & (v < 64)
    px = ep.frames[np.nonzero(ok)[0], v[ok], u[ok]].astype(float)
    assert ok.mean() > 0.9
    assert np.median(np.abs(px - [232.0, 188.0, 160.0]).max(axis=1)) < 45  # skin tone under the palm
    assert np.allclose(ep.project([WRIST])[:, 0], default_camera(64).project(ep.positions([WRIST])[:, 0])[0],
                       atol=1e-3)  # Episode.project agrees with the renderer's camera


def test_cue_only_in_cue_frames():
    ep = generate_episode(1, WorldConfig(family="marked_pick_place"))
    lo, hi = ep.extras["cue_start"], ep.extras["cue_end"]
    white = (ep.frames.min(axis=-1) > 240).sum(axis=(1, 2))
    assert np.all(white[lo:hi] > 5) and np.all(white[hi:] == 0)
    assert "marked bowl" in ep.instruction


# -- physics ------------------------------------------------------------------------------------------
def _env_with(family="pick_place", seed=0):
    env = TabletopEnv(family=family)
    env.reset(seed)
    return env


def _move_to(env, target, grip, steps=20):
    for _ in range(steps):
        env.step(np.concatenate([target - env.state.wrist, [grip]]))


def test_grasp_carry_and_drop_into_bowl():
    env = _env_with()
    obj_i, bowl_i = env.task.subgoals[0][1], env.task.subgoals[1][1]
    obj, bowl = env.state.objects[obj_i], env.state.objects[bowl_i]
    g = expert.grasp_pose(obj)
    _move_to(env, g + [0, 0, 0.1], 0.0)
    _move_to(env, g, 0.0)
    assert env.state.held == -1 and np.allclose(obj.position, env.clone_state().objects[obj_i].position)
    assert env.progress() == 0                                    # the grasp is next
    _move_to(env, g, 1.0, steps=4)
    assert env.state.held == obj_i and env.progress() == 1        # then the place
    above = bowl.position + [0, 0, 0.1] - hand.GRASP_OFFSET
    _move_to(env, above, 1.0)
    assert np.linalg.norm(obj.center - hand.grasp_point(env.state.wrist)) < 1e-6  # carried
    assert not env.success()
    _move_to(env, above, 0.0, steps=10)
    assert env.state.held == -1 and env.in_bowl(obj_i, bowl_i) and env.success()
    assert env.progress() == 1                                    # released, but done: still the last


def test_descending_on_an_object_does_not_push_it():
    env = _env_with()
    obj_i = env.task.subgoals[0][1]
    start = env.state.objects[obj_i].position.copy()
    g = expert.grasp_pose(env.state.objects[obj_i])
    _move_to(env, g + [0, 0, 0.1], 0.0)
    _move_to(env, g, 0.0)
    assert np.allclose(env.state.objects[obj_i].position, start)


def test_open_hand_pushes_along_its_motion():
    env = _env_with(family="push")
    i = env.task.subgoals[0][1]
    o = env.state.objects[i]
    start = o.position.copy()
    low = lambda xy: np.array([xy[0], xy[1], 0.018]) - hand.GRASP_OFFSET  # noqa: E731
    _move_to(env, low(start[:2] - [0.06, 0.0]) + [0, 0, 0.08], 0.0)
    _move_to(env, low(start[:2] - [0.06, 0.0]), 0.0)
    _move_to(env, low(start[:2] + [0.04, 0.0]), 0.0, steps=30)
    moved = o.position - start
    assert moved[0] > 0.05 and abs(moved[1]) < 0.01  # along +x, not sideways


def test_touch_registers_in_order():
    env = _env_with(family="touch_sequence")
    for k, (_, i) in enumerate(env.task.subgoals):
        assert env.progress() == k
        t = expert.touch_pose(env.state.objects[i])
        _move_to(env, t + [0, 0, 0.08], 0.0)
        _move_to(env, t, 0.0)
    assert env.state.touched[-len(env.task.subgoals):] == [i for _, i in env.task.subgoals]
    assert env.success() and env.progress() == len(env.task.subgoals) - 1
    env.state.touched = [env.task.subgoals[1][1], env.task.subgoals[0][1]]   # out of order: only the first counts
    assert env.progress() == 1
    env.state.touched = [env.task.subgoals[1][1]]
    assert env.progress() == 0


def test_slips_dip_and_close_the_hand_and_the_env_records_what_they_did():
    """`WorldConfig.fumbles`: the wrist dips below the clean demonstration's path during each slip, an empty hand
    half-closes, and the episode carries the env's frame-by-frame progress, which `next_subgoal` then reads."""
    from tkjepa.world.stats import next_subgoal

    cfg = WorldConfig(family="pick_place", fumbles=3)
    slipped, clean = generate_episode(7, cfg), generate_episode(7, WorldConfig(family="pick_place"))
    assert "next_subgoal" not in clean.extras and "fumbles" not in clean.extras
    assert slipped.extras["attempt"] == clean.extras["attempt"] == 0 and slipped.extras["success"]
    np.testing.assert_array_equal(slipped.frames[0], clean.frames[0])
    z = lambda ep: ep.positions([WRIST])[:, 0, 2]  # noqa: E731
    for f0, n, dip, _ in slipped.extras["fumbles"]:
        f0, n = int(f0), int(n)
        assert 2 <= n <= 6 and 0.02 <= dip <= 0.10
        assert (z(slipped)[f0 + 1:f0 + n + 1] < z(clean)[f0 + 1:f0 + n + 1] - 0.005).any()   # the dip shows
    progress = slipped.extras["next_subgoal"]
    held = slipped.extras["held"] == slipped.extras["subgoal_objects"][0]
    assert set(progress[:np.argmax(held)]) == {0} and (progress[held] == 1).all()
    assert [next_subgoal(slipped, s) for s in (1, 64)] == [0, 1]
    assert next_subgoal(slipped, int(np.argmax(held)) + 1) == 1
    shut = (slipped.extras["grip"] > 0.25) & (slipped.extras["held"] < 0)       # closing on nothing
    assert shut.any() and not (clean.extras["grip"][clean.extras["held"] < 0] > 0.6).any()
    assert generate_episode(7, WorldConfig(family="pick_place", fumbles=3)).extras["fumbles"].tolist() == \
        slipped.extras["fumbles"].tolist()                                      # slips are seeded too
    assert "fumbles" not in generate_episode(7, WorldConfig(family="push", fumbles=3)).extras
    with pytest.raises(ValueError, match="fumbles"):
        WorldConfig(fumbles=-1)


def test_env_rejects_bad_use():
    env = TabletopEnv()
    with pytest.raises(RuntimeError, match="reset"):
        env.step([0, 0, 0, 0])
    env.reset(0)
    with pytest.raises(ValueError, match="4 finite numbers"):
        env.step([0, 0, np.nan, 0])
    with pytest.raises(ValueError, match="unknown task family"):
        TabletopEnv(family="juggle").reset(0)
    with pytest.raises(ValueError, match="num_frames"):
        WorldConfig(num_frames=8)


# -- command line -------------------------------------------------------------------------------------
def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_generate_is_bit_for_bit_reproducible_whatever_the_workers(tmp_path, capsys):
    assert main(["generate", "--out", str(tmp_path / "a"), "--episodes", "6", "--seed", "9", "--workers", "2"]) == 0
    assert main(["generate", "--out", str(tmp_path / "b"), "--episodes", "6", "--seed", "9", "--workers", "1"]) == 0
    da, db = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    assert len(da) == 12 and da == db
    main(["generate", "--out", str(tmp_path / "c"), "--episodes", "6", "--seed", "10", "--workers", "1"])
    assert _digest(tmp_path / "c") != da
    capsys.readouterr()
    assert main(["info", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "episodes     6" in out and "rightHand" in out


def test_generate_rejects_bad_arguments(tmp_path, capsys):
    """A bad value comes back as exit status 2 and one line "tkjepa <command>: <problem>" on stderr."""
    for argv, phrase in ((["generate", "--out", str(tmp_path), "--episodes", "0"], "episodes"),
                         (["generate", "--out", str(tmp_path), "--episodes", "2", "--size", "63"], "even number"),
                         (["info", str(tmp_path / "missing")], "not an .hdf5 file or a folder")):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"tkjepa {argv[0]}: ") and phrase in err[0], (argv, err)
    with pytest.raises(SystemExit) as info:  # not one of the choices: argparse's own usage error
        main(["generate", "--out", str(tmp_path), "--episodes", "2", "--family", "juggle"])
    assert info.value.code == 2 and "invalid choice: 'juggle'" in capsys.readouterr().err


def test_episode_family_is_the_generated_episodes_task():
    from tkjepa.world.generate import episode_family

    for s in range(6):
        assert episode_family(s) == generate_episode(s).task
    assert episode_family(3, WorldConfig(family="push")) == "push"
