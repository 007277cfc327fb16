"""Planning: CEM on known energies, MPC with a perfect model in the env, the world model's action layout and
causality, the subgoal head (its data, its pointer, its decoder), the goal sources, and the commands that train
the planner's parts and plan (keys, determinism, argument errors, nothing deleted)."""

import json
import shutil
import warnings

import numpy as np
import pytest
import torch

from tkjepa import cli, paths
from tkjepa.planning.cem import CEMConfig, cem, energy
from tkjepa.planning.state import env_action
from tkjepa.world.env import MAX_STEP, TabletopEnv
from tkjepa.world.expert import grasp_pose

PLANNER = paths.PLANNER

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: small tensors run fastest on one thread


@pytest.fixture(scope="module")
def encoder():
    from tkjepa.encoder import load_encoder

    return load_encoder(paths.ENCODER).eval()


def test_cem_finds_the_minimum_of_a_quadratic():
    target = torch.tensor([[0.3, -0.5, 0.8, -0.2], [-0.7, 0.1, 0.0, 0.6]])
    cfg = CEMConfig(samples=64, topk=8, iters=12, horizon=2, init_std=0.8)
    mean, hist = cem(lambda u: ((u - target) ** 2).sum((1, 2)), cfg, generator=torch.Generator().manual_seed(0))
    assert mean.shape == (2, 4)
    assert (mean - target).abs().max() < 0.05
    assert hist[-1]["elite_energy"] < hist[0]["elite_energy"]
    assert len(hist) == 12 and hist[0]["samples"].shape == (64, 2, 4)


def test_cem_respects_the_action_box():
    """The minimum outside [−1, 1] is found on the box's edge, never beyond it."""
    mean, hist = cem(lambda u: ((u - 3.0) ** 2).sum((1, 2)), CEMConfig(samples=32, topk=4, iters=6, horizon=1),
                     generator=torch.Generator().manual_seed(1))
    assert all(h["samples"].abs().max() <= 1 for h in hist)
    assert mean.min() > 0.9


@pytest.mark.parametrize("kw", [{"samples": 1}, {"samples": 8, "topk": 9}, {"topk": 0}, {"iters": 0},
                                {"horizon": 0}, {"momentum": 1.0}, {"init_std": 0.0}])
def test_cem_config_rejects_bad_values(kw):
    with pytest.raises(ValueError):
        CEMConfig(**kw)


def test_energy_is_the_mean_l1_distance():
    goal = torch.zeros(4, 3)
    pred = torch.stack([torch.zeros(4, 3), torch.ones(4, 3), torch.tensor([[1.0] * 3, [-1.0] * 3] * 2),
                        torch.full((4, 3), 0.5)])
    assert energy(pred, goal).tolist() == [0.0, 1.0, 1.0, 0.5]


def test_mpc_with_a_perfect_model_grasps_the_cube():
    """CEM + MPC with the env's own kinematics as the model: hover over the cube, descend, close, hold it."""
    env = TabletopEnv(family="pick_place")
    env.reset(3)
    cube = env.task.subgoals[0][1]
    g = torch.Generator().manual_seed(0)
    for _ in range(16):
        grasp = grasp_pose(env.state.objects[cube])
        wrist = torch.as_tensor(env.state.wrist, dtype=torch.float32)
        above = np.linalg.norm(env.state.wrist[:2] - grasp[:2]) > 0.015  # first hover, so the hand pushes nothing
        goal = torch.as_tensor(grasp + np.array([0.0, 0.0, 0.08]) * above, dtype=torch.float32)
        want = 1.0 if float((wrist - torch.as_tensor(grasp, dtype=torch.float32)).norm()) < 0.02 else -1.0

        def oracle_energy(u):  # [S, H, 4] -> [S]: distance along the path (2 frames per tubelet), grip as wanted
            path = wrist + 2 * MAX_STEP * torch.cumsum(u[..., :3], 1)          # [S, H, 3]
            return (path - goal).norm(dim=-1).mean(1) + 0.01 * (u[:, 0, 3] - want).abs()

        mean, _ = cem(oracle_energy, CEMConfig(samples=64, topk=8, iters=6, horizon=2), generator=g)
        for _ in range(2):
            env.step(env_action(mean[0]))
        if env.state.held == cube:
            break
    assert env.state.held == cube
    assert env.state.touched == []  # it never swept into anything on the way


class _WristModel(torch.nn.Module):
    """A world model whose predicted latent is the wrist the actions lead to (its `wrist_features`), on 1 token."""

    class config:  # noqa: N801 - the attributes LatentPlanner reads
        context_tubelets, future_tubelets = 2, 2

    def forward(self, ctx, actions):
        return actions[..., 8:11][:, :, None, :]                                  # [S, H, 1, 3]


@pytest.mark.parametrize("holding", [False, True])
def test_position_first_then_the_goals_grip_when_there(holding):
    """Far from the goal the plan moves toward it and keeps the grip (shut while holding, open otherwise); at the
    goal it stays and takes the goal's grip."""
    from tkjepa.planning.cem import LatentPlanner
    from tkjepa.planning.state import wrist_features

    mpc = LatentPlanner(None, _WristModel(), CEMConfig(samples=128, topk=8, iters=6))
    mpc.latents = [torch.zeros(1, 3)]
    target = np.array([0.1, 0.45, 0.06])
    goal = torch.from_numpy(wrist_features(target))[None]
    keep, want = (1.0, -1.0) if holding else (-1.0, 1.0)
    far = np.array([-0.1, 0.35, 0.15])
    mean, _ = mpc.plan(goal, torch.Generator().manual_seed(0), far, holding=holding, goal_grip=(want + 1) / 2)
    step = 2 * MAX_STEP * mean[0, :3].numpy()
    assert np.linalg.norm(far + step - target) < np.linalg.norm(far - target) - 0.05  # heads for the goal
    assert mean[:, 3].tolist() == [keep, keep]
    mean, hist = mpc.plan(goal, torch.Generator().manual_seed(0), target, holding=holding, goal_grip=(want + 1) / 2)
    assert hist[-1]["arrived"] and mean[:, :3].abs().max() == 0 and mean[:, 3].tolist() == [want, want]


def test_env_action_maps_the_box_to_the_env():
    np.testing.assert_allclose(env_action([1, -1, 0.5, -1]), [MAX_STEP, -MAX_STEP, MAX_STEP / 2, 0.0])
    np.testing.assert_allclose(env_action([0, 0, 0, 1])[3], 1.0)


def test_action_pairs_layout():
    from tkjepa.planning.state import action_pairs

    a = np.zeros((6, 4), np.float32)
    a[:, 0] = np.arange(6) * 0.01  # dx of frame t's action = t cm
    a[:, 3] = 1.0
    pairs = action_pairs(a)
    assert pairs.shape == (3, 8)
    # pair j makes tubelet j = frames (2j, 2j+1): actions a_{2j-1}, a_{2j}; pair 0 starts with a still, open no-op
    np.testing.assert_allclose(pairs[:, 0] * MAX_STEP, [0.0, 0.01, 0.03], atol=1e-6)
    np.testing.assert_allclose(pairs[:, 4] * MAX_STEP, [0.0, 0.02, 0.04], atol=1e-6)
    np.testing.assert_allclose(pairs[:, 3], [-1.0, 1.0, 1.0])


def test_frame_latents_depend_on_their_frame_only(encoder):
    from tkjepa.planning.state import frame_latents, tubelet_states

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (12, 64, 64, 3), dtype=np.uint8)
    z = frame_latents(encoder, frames)
    assert z.shape == (12, 16, encoder.embed_dim)
    changed = frames.copy()
    changed[6:] = 0
    z2 = frame_latents(encoder, changed)
    assert torch.equal(z[:6], z2[:6]) and not torch.allclose(z[6:], z2[6:])
    assert torch.allclose(frame_latents(encoder, frames, [4])[0], z[4], atol=1e-6)
    frames[3] = frames[5]  # the same image gives the same latent, wherever it is in the episode
    z3 = frame_latents(encoder, frames, [3, 5])
    assert torch.allclose(z3[0], z3[1], atol=1e-6)
    assert torch.allclose(tubelet_states(encoder, changed), z2[1::2], atol=1e-6)  # tubelet j: frame 2j+1
    fine = frame_latents(encoder, frames, [3, 5, 7], pool=False)                 # the encoder's own 8 × 8 tokens
    assert fine.shape == (3, 64, encoder.embed_dim) and torch.allclose(fine[0], fine[1], atol=1e-6)
    assert torch.allclose(fine.mean(-1), torch.zeros(3, 64), atol=1e-5)           # layer-normed per token
    assert not torch.allclose(fine[2], frame_latents(encoder, frames, [5], pool=False)[0])


def test_world_model_starts_from_the_last_state():
    """An all-zero change leaves the last context state, layer-normed: the residual reading of the predictor."""
    from tkjepa.planning.world_model import WorldModel, WorldModelConfig

    model = WorldModel(WorldModelConfig(dim=32, depth=1, latent_dim=8, tokens=4, context=2, horizon=2))
    for p in model.predictor.proj.parameters():
        torch.nn.init.zeros_(p)
    ctx = torch.randn(3, 2, 4, 8)
    out = model(ctx, torch.randn(3, 2, 11))  # 8 action values + 3 of wrist state per future tubelet
    assert out.shape == (3, 2, 4, 8)
    assert torch.allclose(out, torch.nn.functional.layer_norm(ctx[:, -1:], (8,)).expand_as(out), atol=1e-5)


def test_rollout_errors_per_step_against_copying():
    """A model that predicts "nothing changes" errs exactly as copying does, at every step of a recursive
    rollout, whatever the actions; copying's error grows with the distance to the last observed state."""
    from tkjepa.planning.world_model import WorldModel, WorldModelConfig, rollout_errors

    cfg = WorldModelConfig(dim=32, depth=1, latent_dim=8, tokens=4, context=2, horizon=2)
    model = WorldModel(cfg).eval()
    for p in model.predictor.proj.parameters():
        torch.nn.init.zeros_(p)
    t = torch.arange(10, dtype=torch.float32).view(1, 10, 1, 1)
    base = torch.nn.functional.layer_norm(torch.randn(3, 1, 4, 8), (8,))
    z = torch.nn.functional.layer_norm(base + 0.1 * t * torch.randn(3, 1, 4, 8), (8,))   # drifts with t
    data = {"z": z, "actions": torch.randn(3, 10, 8), "wrist": torch.randn(3, 10, 3)}
    err = rollout_errors(model, data, steps=5, n=64)
    assert all(len(v) == 5 for v in err.values())
    np.testing.assert_allclose(err["true"], err["copy"], atol=1e-5)
    np.testing.assert_allclose(err["shuffled"], err["copy"], atol=1e-5)
    assert err["copy"][0] < err["copy"][2] < err["copy"][4]
    with pytest.raises(ValueError, match="longer"):
        rollout_errors(model, data, steps=10)


def test_world_model_windows_repeat_the_first_tubelet():
    from tkjepa.planning.world_model import WorldModelConfig, windows

    z = torch.arange(2 * 6, dtype=torch.float32).view(2, 6, 1, 1).expand(2, 6, 2, 3)
    data = {"z": z, "actions": torch.arange(2 * 6, dtype=torch.float32).view(2, 6, 1).expand(2, 6, 8),
            "wrist": -torch.arange(2 * 6, dtype=torch.float32).view(2, 6, 1).expand(2, 6, 3)}
    ctx, act, tgt = windows(data, torch.tensor([1, 0]), torch.tensor([0, 3]), WorldModelConfig(context=2, horizon=2))
    assert ctx[:, :, 0, 0].tolist() == [[6, 6], [2, 3]] and tgt[:, :, 0, 0].tolist() == [[7, 8], [4, 5]]
    assert act.shape[-1] == 11 and act[:, :, 0].tolist() == [[7, 8], [4, 5]]        # the action pairs, then
    assert act[:, :, 8].tolist() == [[-7, -8], [-4, -5]]                               # the future tubelets' wrists


def test_wrist_path_follows_the_env():
    """The planner's proprioception: where a bounded action sequence takes the wrist is where the env puts it."""
    from tkjepa.planning.state import WORKSPACE, keep_in_workspace, wrist_features, wrist_path
    from tkjepa.planning.world_model import play_episode

    env = TabletopEnv(family="pick_place")
    env.reset(3)
    u = keep_in_workspace(torch.rand(1, 5, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1, env.state.wrist)
    path = wrist_path(u, env.state.wrist)[0]
    for k in range(5):
        for _ in range(2):
            env.step(env_action(u[0, k]))
        np.testing.assert_allclose(env.state.wrist, path[k].numpy(), atol=1e-5)
    assert np.all(np.abs(wrist_features(path.numpy())) <= 1 + 1e-6)
    np.testing.assert_allclose(wrist_features(np.stack(WORKSPACE)), [[-1, -1, -1], [1, 1, 1]], atol=1e-6)
    frames, actions, wrists = play_episode(4, "push", num_frames=8)
    assert frames.shape[0] == actions.shape[0] == wrists.shape[0] == 8
    assert np.abs(np.diff(wrists, axis=0)).max() <= MAX_STEP + 1e-6  # one capped step a frame


def test_subgoal_queries_read_the_true_words_and_the_next_boundary(encoder):
    """`head_data`: queried at the start, then every `query_every` tubelets; input the latents of frame t − 1
    (pooled, and unpooled in half precision), the true words' named object, target the latent of the next
    phase boundary and the wrist and grip there. No thinker runs: the words are the demonstration's truth."""
    import tkjepa.planning.subgoal as sg
    from tkjepa.planning.state import frame_latents
    from tkjepa.thinker.think import clip_indices, thinking_target
    from tkjepa.thinker.tokenizer import build_tokenizer
    from tkjepa.world.generate import WorldConfig, episode_seed, generate_episode

    ep = generate_episode(5, WorldConfig(family="pick_place"))
    ends = [int(e) for e in ep.extras["subgoal_end"]]
    assert sg.next_boundary(ep, 2) == ends[0]
    assert sg.next_boundary(ep, ends[0]) == ends[0]          # frame ends[0] not yet observed
    assert sg.next_boundary(ep, ends[0] + 1) == ends[1]      # the grasp is seen: next is the place
    assert sg.next_boundary(ep, ends[1] + 1) == ep.num_frames - 1
    held = np.asarray(ep.extras["held"])
    assert held[ends[0]] == ep.extras["subgoal_objects"][0] and held[ends[0] - 3] < 0  # the grasp frame
    assert clip_indices(20).max() == 19 and len(clip_indices(4)) == 8

    tokenizer = build_tokenizer()
    data = sg.head_data(sg.SubgoalConfig(query_every=5), encoder, tokenizer, seed=0, episodes=1, progress=False)
    assert data["t"][0] == 2 and (data["t"].diff()[1:] == 10).all()  # asked at the start, then every 5th tubelet
    ep = generate_episode(episode_seed(0, 0), WorldConfig(family="pick_place"))
    ts = data["t"].tolist()
    assert torch.equal(data["names"], sg.named_ids(tokenizer, [thinking_target(ep, t) for t in ts], 2))
    Z = frame_latents(encoder, ep.frames)
    wrist = ep.positions(["rightHand"])[:, 0]
    for t, b, z, target, w, grip in zip(data["t"], data["target_frame"], data["z"], data["target"],
                                        data["target_wrist"], data["target_grip"]):
        assert b == sg.next_boundary(ep, int(t)) and b >= t - 1
        assert torch.allclose(z, Z[t - 1], atol=1e-5) and torch.allclose(target, Z[b], atol=1e-5)
        assert np.allclose(w.numpy(), wrist[b], atol=1e-6) and grip == pytest.approx(ep.extras["grip"][b])
    assert np.allclose(data["wrist"].numpy(), wrist[data["t"] - 1], atol=1e-6)
    Zf = frame_latents(encoder, ep.frames, [t - 1 for t in ts], pool=False)
    assert data["zf"].dtype == torch.float16 and torch.allclose(data["zf"].float(), Zf, atol=1e-2)


HEAD = dict(latent_dim=8, dim=32, depth=1, num_heads=2, batch_size=32, lr=3e-3, vocab=64, next_id=47)


def _cells(mark: torch.Tensor, side: int) -> torch.Tensor:
    """The workspace cell [n, 3] (units 0 … 1, mid height) of token `mark` on a side × side grid of the image,
    rows running against y as the camera sees the table."""
    return torch.stack([(mark % side + 0.5) / side, 1 - (mark // side + 0.5) / side, torch.full(mark.shape, 0.5)], -1)


def _marked_fine_data(n: int, seed: int, colours: int = 0) -> dict:
    """Toy queries: one (or, with `colours`, one per colour, channel 1 + c) of 64 fine tokens is marked; the
    boundary's wrist is over the marked (the named) token's cell, the grip is closed iff that token's channel 4
    is positive, and the boundary latent is the current one (only the place is to learn)."""
    from tkjepa.planning.state import WORKSPACE

    g = torch.Generator().manual_seed(seed)
    zf = torch.randn(n, 64, 8, generator=g)
    rows = torch.arange(n)
    if colours:
        where = torch.stack([torch.randperm(64, generator=g)[:colours] for _ in range(n)])
        for c in range(colours):
            zf[rows, where[:, c], 1 + c] = 6.0
        named = torch.randint(0, colours, (n,), generator=g)
        mark = where[rows, named]
        names = torch.stack([10 + named, torch.full((n,), 16)], 1)          # "<colour> cube"
    else:
        mark = torch.randint(0, 64, (n,), generator=g)
        zf[rows, mark, 0] = 6.0
        names = torch.full((n, 2), -1)
    closed = torch.rand(n, generator=g) > 0.5
    zf[rows, mark, 4] = torch.where(closed, 3.0, -3.0)
    z = torch.nn.functional.layer_norm(torch.randn(n, 16, 8, generator=g), (8,))
    lo, hi = (torch.tensor(b, dtype=torch.float32) for b in WORKSPACE)
    return {"names": names, "zf": torch.nn.functional.layer_norm(zf, (8,)).half(), "z": z, "target": z.clone(),
            "target_wrist": lo + _cells(mark, 8) * (hi - lo), "target_grip": closed.float(),
            "wrist": (lo + hi) / 2 + torch.zeros(n, 3)}


def test_the_pointer_finds_the_place_and_the_decoder_draws_from_it():
    """The place-first head's pointer finds the marked fine token (held out: within 2 cm, where always answering
    the mean place would be ~10 cm off) and reads the grip there; z* is decode(z, where(...)); the latent term is
    decoded from the *true* place, so only the place term (far queries weighed more) trains the pointer."""
    from tkjepa.planning.subgoal import SubgoalConfig, SubgoalHead, evaluate_head, head_loss, place_units, train_head

    cfg = SubgoalConfig(steps=600, **HEAD)
    head, history = train_head(cfg, _marked_fine_data(1024, 0), progress=False)
    val = _marked_fine_data(200, 1)
    m = evaluate_head(head, val)
    mean_xy = (val["target_wrist"][:, :2] - val["target_wrist"][:, :2].mean(0)).norm(dim=-1).median()
    assert m["val_place_xy_cm"] < 2.0 < 0.5 * 100 * float(mean_xy)
    assert m["val_grip_abs_error"] < 0.25 and m["val_place_within_5cm"] > 0.85
    assert set(history[-1]) == {"step", "loss", "latent", "place"}
    names, zf, z = val["names"][:4], val["zf"][:4].float(), val["z"][:4]
    with torch.no_grad():
        assert torch.allclose(head(names, zf, z), head.decode(z, head.where(names, zf)))
    with pytest.raises(ValueError, match="unpooled tokens"):
        head.where(names, z)                                                     # the pooled 16 are not enough

    fresh, idx = SubgoalHead(cfg), torch.arange(8)
    loss, parts = head_loss(fresh, val, idx)
    grad_total = torch.autograd.grad(loss, fresh.score.weight)[0]
    true = place_units(val["target_wrist"][idx], val["target_grip"][idx])
    per_query = (fresh.where(val["names"][idx], val["zf"][idx].float()) - true).abs().mean(-1)
    travel = (val["target_wrist"][idx] - val["wrist"][idx]).norm(dim=-1)   # far queries weigh more, up to 4×
    weight = (travel / cfg.travel_scale).clamp(0.5, 4.0)
    assert weight.max() > weight.min()
    place = (weight * per_query).sum() / weight.sum()
    assert parts["place"] == pytest.approx(place.item())
    assert torch.allclose(grad_total, cfg.place_weight * torch.autograd.grad(place, fresh.score.weight)[0])


def test_a_head_told_the_name_points_at_that_object():
    """Three marked fine tokens of three colours; the words name one ("next <colour> cube"): the head points at
    the named one's cell, and without the words its pointer is far off."""
    from tkjepa.planning.subgoal import SubgoalConfig, evaluate_head, train_head

    head, _ = train_head(SubgoalConfig(steps=1500, **HEAD), _marked_fine_data(1024, 0, colours=3), progress=False)
    val = _marked_fine_data(200, 1, colours=3)
    m = evaluate_head(head, val)
    unnamed = evaluate_head(head, {**val, "names": torch.full_like(val["names"], -1)})
    assert m["val_place_xy_cm"] < 2.5 and unnamed["val_place_xy_cm"] > 5.0
    assert m["val_l1_shuffled_names"] >= m["val_l1"]


def test_named_ids_read_the_object_after_next():
    from tkjepa.planning.subgoal import named_ids
    from tkjepa.thinker.tokenizer import build_tokenizer

    tok = build_tokenizer()
    ids = lambda text: tok(text)["input_ids"]  # noqa: E731
    texts = ["holding nothing . next red cube", "holding red cube . next blue bowl", "holding nothing",
             "holding nothing . next red", "holding nothing . next"]
    assert named_ids(tok, texts, 2).tolist() == [ids("red cube"), ids("blue bowl"), [-1, -1],
                                                 [ids("red")[0], -1], [-1, -1]]


def test_the_head_round_trips_and_refuses_a_config_of_another_version(tmp_path):
    from tkjepa.checkpoint import CheckpointError
    from tkjepa.planning.subgoal import SubgoalConfig, SubgoalHead, load_head, save_head

    torch.manual_seed(0)
    head = SubgoalHead(SubgoalConfig(**HEAD)).eval()
    save_head(head, tmp_path)
    x = _marked_fine_data(4, 2)
    with torch.no_grad():
        assert torch.equal(load_head(tmp_path)(x["names"], x["zf"].float(), x["z"]),
                           head(x["names"], x["zf"].float(), x["z"]))
    fields = json.loads((tmp_path / "subgoal_head.json").read_text())
    (tmp_path / "subgoal_head.json").write_text(json.dumps({**fields, "told_text": True}))  # an option now gone
    with pytest.raises(CheckpointError, match="told_text"):
        load_head(tmp_path)
    with pytest.raises(ValueError, match="vocab"):
        SubgoalHead(SubgoalConfig())                                   # training sets the tokenizer's size


def test_place_units_round_trip_and_span_the_workspace():
    from tkjepa.planning.state import WORKSPACE
    from tkjepa.planning.subgoal import place_metres, place_units

    lo, hi = (torch.tensor(b, dtype=torch.float32) for b in WORKSPACE)
    p = place_units(torch.stack([lo, hi]), torch.tensor([0.0, 1.0]))
    assert torch.allclose(p, torch.tensor([[0.0, 0, 0, 0], [1, 1, 1, 1]]))
    wrist, grip = place_metres(torch.tensor([[0.25, 0.5, 0.75, 0.3]]))
    assert torch.allclose(place_units(wrist, grip), torch.tensor([[0.25, 0.5, 0.75, 0.3]]), atol=1e-6)


needs_planner = pytest.mark.skipif(not (PLANNER / "world_model.safetensors").exists(),
                                   reason="no shipped planner (data_samples/README.md: its commands)")
FAST = ["--set", "max_steps=2", "--set", "cem.samples=8", "--set", "cem.topk=2", "--set", "cem.iters=1"]


@needs_planner
def test_plan_command_json_and_determinism(tmp_path):
    args = ["plan", "--episodes", "2", "--mode", "thinker", *FAST, "--quiet"]
    runs = []
    for k in range(2):
        out = tmp_path / f"plan{k}.json"
        assert cli.main(args + ["--out", str(out)]) == 0
        runs.append(json.loads(out.read_text()))
    for key in ("success_rate", "episodes", "mean_steps", "seconds_per_action", "command"):
        assert key in runs[0]
    assert runs[0]["episodes"] == 2 and 0 <= runs[0]["success_rate"] <= 1
    assert runs[0]["config"]["cem"]["samples"] == 8 and runs[0]["config"]["max_steps"] == 2
    strip = lambda r: [{k: v for k, v in e.items() if k != "seconds"} for e in r["per_episode"]]  # noqa: E731
    assert strip(runs[0]) == strip(runs[1])
    assert [e["family"] for e in runs[0]["per_episode"]] == ["pick_place", "touch_sequence"]


@pytest.mark.parametrize("extra, msg", [(["--episodes", "0"], "episodes"),
                                        (["--set", "cem.samples=4"], "topk"),
                                        (["--world-seed", "1000"], "training"),
                                        (["--set", "cem.horizon=9"], "horizon"),
                                        (["--set", "cem.iters=0"], "iters"),
                                        (["--set", "energy=l2"], "no field 'energy'"),
                                        (["--set", "waypoints=true"], "no field 'waypoints'")])
def test_plan_command_rejects_bad_arguments(extra, msg, capsys):
    if "cem.horizon=9" in extra and not (PLANNER / "world_model.safetensors").exists():
        pytest.skip("the horizon check needs the shipped world model")
    assert cli.main(["plan", "--quiet"] + extra) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # (after transformers' loading bar, if any)
    assert err.startswith("tkjepa plan: ") and msg in err


@pytest.mark.parametrize("mode", ["greedy", "true-place"])
def test_plan_command_rejects_an_unknown_mode(mode):
    with pytest.raises(SystemExit):  # argparse's own choice check
        cli.main(["plan", "--mode", mode])


@needs_planner
def test_plan_warns_when_the_encoder_changed_since_training(tmp_path):
    from tkjepa.planning.plan import WORLD_MODEL_METRICS, load_planner

    folder = tmp_path / "planner"
    shutil.copytree(PLANNER, folder)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                              # the shipped parts match the shipped encoder
        load_planner(folder, paths.ENCODER)
    metrics = json.loads((folder / WORLD_MODEL_METRICS).read_text())
    (folder / WORLD_MODEL_METRICS).write_text(json.dumps({**metrics, "encoder_digest": "0" * 64}))
    with pytest.warns(UserWarning, match="another encoder"):
        load_planner(folder, paths.ENCODER, need_head=False)


def test_planner_reads_the_thinker_it_was_trained_with(tmp_path):
    from tkjepa.checkpoint import CheckpointError
    from tkjepa.planning.plan import load_planner, planner_thinker

    assert planner_thinker(tmp_path) is None                      # no copy: none
    (tmp_path / "thinker").mkdir()
    assert planner_thinker(tmp_path) is None                      # an empty folder is not a thinker
    (tmp_path / "thinker" / "model.safetensors").write_bytes(b"")
    assert planner_thinker(tmp_path) == tmp_path / "thinker"
    with pytest.raises(CheckpointError, match="train-world-model"):
        load_planner(tmp_path / "nowhere", paths.ENCODER)


def test_oracle_boundary_follows_the_true_progress():
    from tkjepa.planning.goals import oracle_boundary
    from tkjepa.planning.plan import demonstration

    demo, env = demonstration(11, "pick_place")
    ends = [int(e) for e in demo.extras["subgoal_end"]]
    assert oracle_boundary(env, demo) == ends[0]                 # nothing done: grasp next
    env.state.held = env.task.subgoals[0][1]
    assert oracle_boundary(env, demo) == ends[1]                 # holding the cube: place next
    demo, env = demonstration(12, "touch_sequence")
    ends, order = [int(e) for e in demo.extras["subgoal_end"]], [i for _, i in env.task.subgoals]
    env.state.touched = [order[1]]                               # the second object first does not count
    assert oracle_boundary(env, demo) == ends[0]
    env.state.touched = [order[1], order[0]]
    assert oracle_boundary(env, demo) == ends[1]
    env.state.touched = [order[0], order[1]]
    assert env.success() and oracle_boundary(env, demo) == demo.num_frames - 1


def test_expert_segments_replay_the_demonstration():
    from tkjepa.world import expert
    from tkjepa.world.generate import WorldConfig, expert_segments, generate_episode

    for i, family in enumerate(("pick_place", "touch_sequence", "push", "marked_pick_place") * 2):
        ep = generate_episode(500 + i, WorldConfig(family=family))
        segs = expert_segments(ep)
        _, ends = expert.subgoal_timings(segs, len(ep.extras["subgoal_end"]))
        assert np.array_equal(ends, ep.extras["subgoal_end"])
        t, wrist = 0, ep.positions(["rightHand"])[:, 0]
        for seg in segs:  # each move ends where the expert's wrist is then (up to its tracking noise)
            t += seg.frames
            assert np.linalg.norm(wrist[t] - seg.target) < 0.02
            t += seg.hold


def test_told_text_reads_the_env_truth():
    from tkjepa.planning.goals import told_text
    from tkjepa.planning.plan import demonstration
    from tkjepa.thinker.think import thinking_target

    demo, env = demonstration(11, "pick_place")
    assert told_text(env, demo) == thinking_target(demo, 2)          # the demo's own words at its start
    env.state.held = env.task.subgoals[0][1]
    assert told_text(env, demo) == thinking_target(demo, int(demo.extras["subgoal_end"][0]) + 2)
    demo, env = demonstration(12, "touch_sequence")
    names = [o.name for o in env.state.objects]
    env.state.touched = [env.task.subgoals[0][1]]
    assert told_text(env, demo) == f"holding nothing . next {names[env.task.subgoals[1][1]]}"


def test_grid_latents_render_the_hand_at_each_place_and_leave_the_env_alone(encoder):
    from tkjepa.planning.cem import energy_landscape, grid_latents
    from tkjepa.planning.plan import demonstration
    from tkjepa.planning.state import frame_latents

    _, env = demonstration(11, "pick_place")
    before = env.clone_state()
    xs, ys = np.array([-0.1, 0.0, 0.1]), np.array([0.35, 0.45])
    lat = grid_latents(env, encoder, xs, ys, z=0.12, grip=1.0)
    assert lat.shape[0] == 6 and np.array_equal(env.state.wrist, before.wrist) and env.state.grip == before.grip
    env.state.wrist, env.state.grip = np.array([0.1, 0.35, 0.12]), 1.0        # y-major: row 0, column 2
    assert torch.allclose(lat[2], frame_latents(encoder, env.render()[None])[0], atol=1e-5)
    env.state = before
    e = energy_landscape(env, lat[4], encoder, xs, ys, z=0.12, grip=1.0)       # goal: the hand at (0.0, 0.45)
    assert e.shape == (2, 3) and np.unravel_index(np.argmin(e), e.shape) == (1, 1) and e[1, 1] < 1e-5


def test_training_the_parts_writes_them_and_deletes_nothing(tmp_path, monkeypatch):
    """`train-world-model` and `train-subgoal-head` (tiny settings) write their part, its metrics with the
    backbones' digests and the command, and leave everything else in the folder; the head's thinker is copied
    in when the folder has none, and another one already there is kept (with a warning), never replaced."""
    import tkjepa.planning.world_model as wm
    from tkjepa.backbones import load_backbones
    from tkjepa.planning.plan import SUBGOAL_HEAD_METRICS, WORLD_MODEL_METRICS, load_planner

    real = wm.play_data
    monkeypatch.setattr(wm, "play_data", lambda seed, episodes, encoder, progress=True: real(
        seed, min(episodes, 3), encoder, progress))                      # the validation set too: 3 episodes
    folder = tmp_path / "planner"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    assert cli.main(["train-world-model", "--out", str(folder), "--set", "episodes=3", "--set", "steps=2",
                     "--quiet"]) == 0
    wmm = json.loads((folder / WORLD_MODEL_METRICS).read_text())
    b = load_backbones(paths.ENCODER, paths.PLANNER_THINKER)
    assert wmm["encoder_digest"] == b.digest("encoder") and wmm["config"]["steps"] == 2
    assert wmm["command"].startswith("tkjepa train-world-model --out ") and "val_l1" in wmm["final"]
    head_args = ["train-subgoal-head", "--planner", str(folder), "--set", "episodes=4", "--set", "val_episodes=2",
                 "--set", "steps=2", "--quiet"]
    assert cli.main(head_args) == 0
    hm = json.loads((folder / SUBGOAL_HEAD_METRICS).read_text())
    assert hm["thinker_digest"] == b.digest("thinker") and hm["config"]["steps"] == 2
    assert (folder / "thinker" / "model.safetensors").exists()             # the planner carries its thinker
    assert (folder / "notes.txt").read_text() == "mine"
    planner = load_planner(folder, paths.ENCODER)
    assert planner.head.cfg.vocab == len(b.tokenizer) and planner.world_model.config.future_tubelets == 2

    other = folder / "thinker"                                             # another thinker there now
    from tkjepa.thinker.model import load_thinker

    model, tok = load_thinker(other)
    with torch.no_grad():
        model.lm_head.weight.add_(0.01)
    model.save_pretrained(other)
    before = (other / "model.safetensors").read_bytes()
    with pytest.warns(UserWarning, match="another thinker"):
        assert cli.main(head_args) == 0
    assert (other / "model.safetensors").read_bytes() == before            # kept, not replaced
    assert cli.main(["train-subgoal-head", "--planner", str(folder), "--thinker", str(tmp_path / "nowhere")]) == 2


@needs_planner
def test_told_mode_plans_with_the_true_words(tmp_path):
    from tkjepa.planning.goals import told_text
    from tkjepa.planning.plan import demonstration, episode_seeds

    out = tmp_path / "told.json"
    assert cli.main(["plan", "--mode", "told", "--episodes", "1", *FAST, "--quiet", "--out", str(out)]) == 0
    demo, env = demonstration(*episode_seeds(2000, 1)[0])
    texts = json.loads(out.read_text())["per_episode"][0]["subgoal_texts"]
    assert texts[0] == [0, told_text(env, demo)] and texts[0][1].startswith("holding nothing . next ")  # the truth


def _first_view(seed, family):
    """The planner's first view of a held-out episode: two frames and what the hand felt at each."""
    from tkjepa.planning.goals import felt
    from tkjepa.planning.plan import demonstration

    demo, env = demonstration(seed, family)
    start, hand = [env.render()], [felt(env)]
    start.append(env.step([0.0, 0.0, 0.0, 0.0]))
    hand.append(felt(env))
    return demo, np.stack(start), hand


@needs_planner
def test_the_recorded_place_is_the_heads_for_the_first_view(tmp_path, encoder):
    """`tkjepa plan --mode thinker` asks once per `ask_every` actions; the place it records at the first question
    is the shipped head's for the planner's first view and the thinker's words about it."""
    from tkjepa.planning.goals import head_goal, thinker_words
    from tkjepa.planning.plan import episode_seeds, load_planner
    from tkjepa.planning.state import frame_latents

    out = tmp_path / "plan.json"
    assert cli.main(["plan", "--mode", "thinker", "--episodes", "1", *FAST, "--quiet", "--out", str(out)]) == 0
    row = json.loads(out.read_text())["per_episode"][0]
    assert [p[0] for p in row["subgoal_places"]] == [t[0] for t in row["subgoal_texts"]] == [0]
    planner = load_planner(PLANNER, paths.ENCODER)
    demo, start, hand = _first_view(*episode_seeds(2000, 1)[0])
    said = thinker_words(planner.thinker, planner.tokenizer, demo, start, hand)
    assert row["subgoal_texts"][0][1] == said
    z_last = frame_latents(encoder, start, [len(start) - 1])[0]
    goal, place = head_goal(planner.head, planner.tokenizer, encoder, start, z_last, said)
    np.testing.assert_allclose(row["subgoal_places"][0][1], place, atol=2e-4)
    with torch.no_grad():
        names = planner.head.cfg.name_words
        from tkjepa.planning.subgoal import named_ids

        zf = frame_latents(encoder, start, [len(start) - 1], pool=False)
        assert torch.equal(goal, planner.head(named_ids(planner.tokenizer, [said], names), zf, z_last[None])[0])


@needs_planner
def test_a_proprio_thinker_plans_with_the_hand_it_feels(tmp_path, encoder):
    """A thinker that reads proprioception gets the env hand's pose at every observed frame from `tkjepa plan`:
    its words, and so the place the planner records, are the ones `thinker_words` gives for those poses, and
    another hand gives other words."""
    from tkjepa.planning.goals import head_goal, thinker_words
    from tkjepa.planning.plan import episode_seeds, load_planner
    from tkjepa.planning.state import frame_latents
    from tkjepa.thinker.model import load_thinker

    planner = load_planner(PLANNER, paths.ENCODER)
    assert planner.thinker.config.tkjepa_proprio                       # the shipped planner's thinker feels
    out = tmp_path / "plan.json"
    assert cli.main(["plan", "--mode", "thinker", "--episodes", "1", *FAST, "--quiet", "--out", str(out)]) == 0
    row = json.loads(out.read_text())["per_episode"][0]
    demo, start, hand = _first_view(*episode_seeds(2000, 1)[0])
    assert hand[-1]["held"] == -1 and hand[-1]["touches"] == 0
    said = thinker_words(planner.thinker, planner.tokenizer, demo, start, hand)
    assert row["subgoal_texts"][0][1] == said
    z_last = frame_latents(encoder, start, [len(start) - 1])[0]
    np.testing.assert_allclose(row["subgoal_places"][0][1],
                               head_goal(planner.head, planner.tokenizer, encoder, start, z_last, said)[1], atol=2e-4)
    from tkjepa.planning.goals import seen_episode
    from tkjepa.thinker.inputs import proprio_text
    from tkjepa.thinker.think import clip_indices

    higher = [{**h, "joints": {k: v + np.array([0.0, 0.0, 0.06]) for k, v in h["joints"].items()}} for h in hand]
    clip = clip_indices(len(start))
    assert proprio_text(seen_episode(demo, start, higher), clip) != proprio_text(seen_episode(demo, start, hand), clip)
    model, tok = load_thinker(paths.PLANNER_THINKER)
    with pytest.raises(ValueError, match="proprioception"):
        thinker_words(model, tok, demo, start)
    with pytest.raises(ValueError, match="1 hand poses for 2 frames"):
        thinker_words(model, tok, demo, start, hand[:1])


@pytest.mark.parametrize("mode", ["flat", "thinker", "told", "oracle"])
def test_benchmarks_planning_table_is_the_shipped_runs(mode):
    """BENCHMARKS.md's planning row of each mode is what data_samples/planner/plan_MODE.json holds, and that run
    used the shipped planner's defaults."""
    import re
    from dataclasses import asdict

    from tkjepa.planning.plan import PlanConfig

    run = json.loads((PLANNER / f"plan_{mode}.json").read_text())
    rows = run["per_episode"]
    assert run["config"] == asdict(PlanConfig(mode=mode)) and run["episodes"] == len(rows) == 100
    table = (paths.REPO / "BENCHMARKS.md").read_text().split("## Planning")[1].split("\n## ")[0]
    row = next(line for line in table.splitlines() if re.match(rf"\| (\*\*)?{mode}(\*\*)? \|", line))
    cells = [c.strip("* ") for c in row.split("|")[2:6]]
    done = lambda fam=None: sum(r["success"] for r in rows if fam in (None, r["family"]))  # noqa: E731
    n = lambda fam: sum(r["family"] == fam for r in rows)  # noqa: E731
    assert cells[:3] == [f"{done()}/100", f"{done('pick_place')}/{n('pick_place')}",
                         f"{done('touch_sequence')}/{n('touch_sequence')}"]
    assert cells[3] == f"{sum(r['first_subgoal'] for r in rows)}/100"
