"""Planning: CEM on known energies, MPC with a perfect model in the env, the subgoal head's targets, the
world model's action layout and causality, and `tkjepa plan` (keys, determinism, argument errors)."""

import json

import numpy as np
import pytest
import torch

from tkjepa import cli
from tkjepa.planning import PLANNER, CEMConfig, cem, energy, env_action
from tkjepa.world.env import MAX_STEP, TabletopEnv
from tkjepa.world.expert import grasp_pose


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: small tensors run fastest on one thread


@pytest.fixture(scope="module")
def encoder():
    from tkjepa.bench import ENCODER
    from tkjepa.encoder import load_encoder

    return load_encoder(ENCODER)


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


def test_energy_kinds():
    goal = torch.zeros(4, 3)
    pred = torch.stack([torch.zeros(4, 3), torch.ones(4, 3), torch.tensor([[1.0] * 3, [-1.0] * 3] * 2)])
    assert energy(pred, goal, "l1").tolist() == [0.0, 1.0, 1.0]
    assert energy(pred, goal, "l2").tolist() == [0.0, 1.0, 1.0]
    assert energy(pred, goal, "pooled").tolist() == [0.0, 1.0, 0.0]  # pooling cancels where things are
    with pytest.raises(ValueError, match="energy"):
        energy(pred, goal, "cosine")


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


def test_env_action_maps_the_box_to_the_env():
    np.testing.assert_allclose(env_action([1, -1, 0.5, -1]), [MAX_STEP, -MAX_STEP, MAX_STEP / 2, 0.0])
    np.testing.assert_allclose(env_action([0, 0, 0, 1])[3], 1.0)


def test_action_pairs_layout():
    from tkjepa.worldmodel import action_pairs

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
    from tkjepa.worldmodel import frame_latents, tubelet_states

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
    from tkjepa.worldmodel import WorldModel, WorldModelConfig

    model = WorldModel(WorldModelConfig(dim=32, depth=1, latent_dim=8, tokens=4, context=2, horizon=2))
    for p in model.predictor.proj.parameters():
        torch.nn.init.zeros_(p)
    ctx = torch.randn(3, 2, 4, 8)
    out = model(ctx, torch.randn(3, 2, 11))  # 8 action values + 3 of wrist state per future tubelet
    assert out.shape == (3, 2, 4, 8)
    assert torch.allclose(out, torch.nn.functional.layer_norm(ctx[:, -1:], (8,)).expand_as(out), atol=1e-5)


def test_world_model_windows_repeat_the_first_tubelet():
    from tkjepa.worldmodel import WorldModelConfig, windows

    z = torch.arange(2 * 6, dtype=torch.float32).view(2, 6, 1, 1).expand(2, 6, 2, 3)
    data = {"z": z, "actions": torch.arange(2 * 6, dtype=torch.float32).view(2, 6, 1).expand(2, 6, 8),
            "wrist": -torch.arange(2 * 6, dtype=torch.float32).view(2, 6, 1).expand(2, 6, 3)}
    cfg = WorldModelConfig(context=2, horizon=2, proprio=False)
    ctx, act, tgt = windows(data, torch.tensor([1, 0]), torch.tensor([0, 3]), cfg)
    assert ctx[:, :, 0, 0].tolist() == [[6, 6], [2, 3]] and act.shape[-1] == 8
    assert act[:, :, 0].tolist() == [[7, 8], [4, 5]] and tgt[:, :, 0, 0].tolist() == [[7, 8], [4, 5]]
    _, act, _ = windows(data, torch.tensor([1, 0]), torch.tensor([0, 3]), WorldModelConfig(context=2, horizon=2))
    assert act.shape[-1] == 11 and act[:, :, 8].tolist() == [[-7, -8], [-4, -5]]  # the future tubelets' wrists


def test_wrist_path_follows_the_env():
    """The planner's proprioception: where a bounded action sequence takes the wrist is where the env puts it."""
    from tkjepa.planning import keep_in_workspace, wrist_path
    from tkjepa.worldmodel import WORKSPACE, play_episode, wrist_features

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


def test_subgoal_target_is_the_latent_of_the_next_boundary_frame(encoder, monkeypatch):
    from tkjepa.subgoal import clip_indices, next_boundary
    from tkjepa.world.generate import WorldConfig, generate_episode
    from tkjepa.worldmodel import frame_latents

    ep = generate_episode(5, WorldConfig(family="pick_place"))
    ends = [int(e) for e in ep.extras["subgoal_end"]]
    assert next_boundary(ep, 2) == ends[0]
    assert next_boundary(ep, ends[0]) == ends[0]          # frame ends[0] not yet observed
    assert next_boundary(ep, ends[0] + 1) == ends[1]      # the grasp is seen: next is the place
    assert next_boundary(ep, ends[1] + 1) == ep.num_frames - 1
    held = np.asarray(ep.extras["held"])
    assert held[ends[0]] == ep.extras["subgoal_objects"][0] and held[ends[0] - 3] < 0  # the grasp frame
    assert clip_indices(20).max() == 19 and len(clip_indices(4)) == 8
    # head_data's query at t: input the latent of frame t−1, target the latent of the boundary frame
    import tkjepa.subgoal as sg
    from tkjepa.thinker.tokenizer import build_tokenizer
    from tkjepa.world.generate import episode_seed

    # the thinker's thoughts do not enter the targets: a stand-in that records which frames it was shown
    shown, told = [], []
    monkeypatch.setattr(sg, "think", lambda model, tok, eps, ts, said=None: (
        shown.extend(ts), told.append(said),
        torch.zeros(len(ts), 4), [torch.zeros(3, 4)] * len(ts), ["holding nothing . next red cube"] * len(ts))[2:])
    tokenizer = build_tokenizer()
    data = sg.head_data(sg.SubgoalConfig(query_every=5, ask_at_start=True), encoder, (None, tokenizer), seed=0,
                        episodes=1, progress=False)
    assert shown == data["t"].tolist() and told == [None]  # the thinker speaks for itself
    assert data["t"][0] == 2 and (data["t"].diff()[1:] == 10).all()  # asked at the start, then every 5th tubelet
    said = tokenizer("holding nothing . next red cube")["input_ids"]
    assert data["words"].shape[1] == 16 and (data["words"][:, :len(said)] == torch.tensor(said)).all()
    assert (data["words"][:, len(said):] == -1).all()
    ep = generate_episode(episode_seed(0, 0), WorldConfig(family="pick_place"))
    sg.head_data(sg.SubgoalConfig(query_every=5, ask_at_start=True, told_text=True), encoder, (None, tokenizer),
                 seed=0, episodes=1, progress=False)
    from tkjepa.thinker.think import thinking_target

    assert told[1] == [thinking_target(ep, t) for t in data["t"].tolist()]  # --told-text: the demo's true words
    Z = frame_latents(encoder, ep.frames)
    wrist = ep.positions(["rightHand"])[:, 0]
    for t, b, z, target, w, grip in zip(data["t"], data["target_frame"], data["z"], data["target"],
                                        data["target_wrist"], data["target_grip"]):
        assert b == next_boundary(ep, int(t)) and b >= t - 1
        assert torch.allclose(z, Z[t - 1], atol=1e-5) and torch.allclose(target, Z[b], atol=1e-5)
        assert np.allclose(w.numpy(), wrist[b], atol=1e-6) and grip == pytest.approx(ep.extras["grip"][b])
    assert np.allclose(data["wrist"].numpy(), wrist[data["t"] - 1], atol=1e-6)
    fine = sg.head_data(sg.SubgoalConfig.placed(fine=True, query_every=5, vocab=0), encoder, (None, tokenizer),
                        seed=0, episodes=1, progress=False)       # a fine pointer's data: frame t − 1 unpooled
    assert "zf" not in data and torch.equal(fine["z"], data["z"])
    Zf = frame_latents(encoder, ep.frames, (fine["t"] - 1).tolist(), pool=False)
    assert fine["zf"].dtype == torch.float16 and torch.allclose(fine["zf"].float(), Zf, atol=1e-2)


def test_place_units_round_trip_and_span_the_workspace():
    from tkjepa.subgoal import place_metres, place_units
    from tkjepa.worldmodel import WORKSPACE

    lo, hi = (torch.tensor(b, dtype=torch.float32) for b in WORKSPACE)
    p = place_units(torch.stack([lo, hi]), torch.tensor([0.0, 1.0]))
    assert torch.allclose(p, torch.tensor([[0.0, 0, 0, 0], [1, 1, 1, 1]]))
    wrist, grip = place_metres(torch.tensor([[0.25, 0.5, 0.75, 0.3]]))
    assert torch.allclose(place_units(wrist, grip), torch.tensor([[0.25, 0.5, 0.75, 0.3]]), atol=1e-6)


def _marked_token_data(n: int, seed: int) -> dict:
    """Toy queries: one of 16 latent tokens is marked; the boundary's wrist is over that token's cell of a
    4 × 4 grid of the workspace (rows running against y, as the camera sees it), the grip is closed iff the
    thought's first value is positive, and the boundary latent is the current one (only the place is to learn)."""
    from tkjepa.worldmodel import WORKSPACE

    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 16, 8, generator=g)
    mark = torch.randint(0, 16, (n,), generator=g)
    z[torch.arange(n), mark, 0] = 6.0
    z = torch.nn.functional.layer_norm(z, (8,))
    lo, hi = (torch.tensor(b, dtype=torch.float32) for b in WORKSPACE)
    cell = torch.stack([(mark % 4 + 0.5) / 4, 1 - (mark // 4 + 0.5) / 4, torch.full((n,), 0.5)], -1)
    thought = torch.randn(n, 8, generator=g)
    return {"thought": thought, "kv": torch.randn(n, 3, 8, generator=g), "kv_mask": torch.ones(n, 3, dtype=torch.bool),
            "z": z, "target": z.clone(), "target_wrist": lo + cell * (hi - lo),
            "target_grip": (thought[:, 0] > 0).float(), "words": torch.full((n, 4), -1),
            "wrist": (lo + hi) / 2 + torch.zeros(n, 3)}


def test_place_head_learns_to_point_at_the_place_and_decodes_from_it():
    """The place-first head's pointer finds the marked token (held out: within 2 cm, where always answering the
    mean place would be ~10 cm off), reads the grip from the thought, and its z* is decode(z, where(...))."""
    from tkjepa.subgoal import SubgoalConfig, SubgoalHead, evaluate_head, head_loss, train_head

    cfg = SubgoalConfig(thought_dim=8, vlm_dim=8, latent_dim=8, dim=32, depth=1, num_heads=2, steps=400,
                        batch_size=32, lr=3e-3, place=True)
    head, history = train_head(cfg, _marked_token_data(512, 0), progress=False)
    val = _marked_token_data(200, 1)
    m = evaluate_head(head, val)
    mean_xy = (val["target_wrist"][:, :2] - val["target_wrist"][:, :2].mean(0)).norm(dim=-1).median()
    assert m["val_place_xy_cm"] < 2.0 < 0.5 * 100 * float(mean_xy)
    assert m["val_grip_abs_error"] < 0.25 and m["val_place_within_5cm"] > 0.9
    assert set(history[-1]) == {"step", "loss", "latent", "place"}
    x = (val["thought"][:4], val["kv"][:4], val["kv_mask"][:4], val["z"][:4], val["words"][:4])
    with torch.no_grad():
        assert torch.allclose(head(*x), head.decode(x[3], head.where(*x)))
    # teacher forcing: the latent term decodes from the *true* place, so only the place term trains the pointer
    from tkjepa.subgoal import place_units

    fresh, idx = SubgoalHead(cfg), torch.arange(8)
    loss, parts = head_loss(fresh, val, idx)
    grad_total = torch.autograd.grad(loss, fresh.score.weight)[0]
    true = place_units(val["target_wrist"][idx], val["target_grip"][idx])
    per_query = (fresh.where(*[val[k][idx] for k in ("thought", "kv", "kv_mask", "z")]) - true).abs().mean(-1)
    travel = (val["target_wrist"][idx] - val["wrist"][idx]).norm(dim=-1)   # far queries weigh more, up to 4×
    weight = (travel / cfg.travel_scale).clamp(0.5, 4.0)
    assert weight.max() > weight.min()
    place = (weight * per_query).sum() / weight.sum()
    assert parts["place"] == pytest.approx(place.item())
    assert torch.allclose(grad_total, cfg.place_weight * torch.autograd.grad(place, fresh.score.weight)[0])


def test_fine_pointer_finds_what_pooling_blurs():
    """The mark is in one of 64 fine tokens and the pooled tokens are noise: a `fine` head finds the place (as
    closely as the 16-token head finds a 4 × 4 mark), a head pointing over the pooled tokens cannot."""
    from tkjepa.subgoal import SubgoalConfig, SubgoalHead, evaluate_head, train_head
    from tkjepa.worldmodel import WORKSPACE

    def data(n, seed):
        g = torch.Generator().manual_seed(seed)
        d = _marked_token_data(n, seed)
        zf = torch.randn(n, 64, 8, generator=g)
        mark = torch.randint(0, 64, (n,), generator=g)
        zf[torch.arange(n), mark, 0] = 6.0
        lo, hi = (torch.tensor(b, dtype=torch.float32) for b in WORKSPACE)
        cell = torch.stack([(mark % 8 + 0.5) / 8, 1 - (mark // 8 + 0.5) / 8, torch.full((n,), 0.5)], -1)
        d.update(zf=torch.nn.functional.layer_norm(zf, (8,)).half(), target_wrist=lo + cell * (hi - lo),
                 z=torch.nn.functional.layer_norm(torch.randn(n, 16, 8, generator=g), (8,)))
        d["target"] = d["z"].clone()
        return d

    kw = dict(thought_dim=8, vlm_dim=8, latent_dim=8, dim=32, depth=1, num_heads=2, steps=400, batch_size=32,
              lr=3e-3, place=True)
    train, val = data(1024, 0), data(200, 1)
    fine, _ = train_head(SubgoalConfig(fine=True, **kw), train, progress=False)
    pooled, _ = train_head(SubgoalConfig(**kw), train, progress=False)
    m_fine, m_pooled = evaluate_head(fine, val), evaluate_head(pooled, val)
    mean_xy = 100 * float((val["target_wrist"][:, :2] - val["target_wrist"][:, :2].mean(0)).norm(dim=-1).median())
    assert m_fine["val_place_xy_cm"] < 2.0 and m_pooled["val_place_xy_cm"] > 0.5 * mean_xy
    x = [val[k][:2] for k in ("thought", "kv", "kv_mask", "z", "words")]
    with pytest.raises(ValueError, match="pass zf"):
        fine.where(*x)
    with pytest.raises(ValueError, match="place=True"):
        SubgoalConfig(fine=True)
    with torch.no_grad():
        assert torch.allclose(fine(*x, val["zf"][:2].float()), fine.decode(x[3], fine.where(*x, val["zf"][:2].float())))


def test_named_ids_read_the_object_after_next():
    from tkjepa.subgoal import named_ids

    w = torch.tensor([[45, 46, 55, 47, 10, 16, -1, -1],   # holding nothing . next red cube
                      [45, 10, 16, 55, 47, 12, 19, -1],   # holding red cube . next blue bowl
                      [1, -1, -1, -1, -1, -1, -1, -1],    # no "next"
                      [45, 46, 55, 47, 10, -1, -1, -1],   # cut short
                      [1, 2, 3, 4, 5, 6, 7, 47]])         # "next" is the last word
    assert named_ids(w, 47, 2).tolist() == [[10, 16], [12, 19], [-1, -1], [10, -1], [-1, -1]]


def test_named_states_are_the_new_stream_at_the_named_words():
    from types import SimpleNamespace

    from tkjepa.subgoal import named_states

    L, Dv = 3, 4
    new = torch.arange(L * 7 * Dv, dtype=torch.float32).view(L, 7, Dv)       # 6 words + EOS
    f = SimpleNamespace(new=new, new_mask=torch.ones(7, dtype=torch.bool))
    words = torch.tensor([45, 46, 55, 47, 10, 16, -1, -1])                  # holding nothing . next red cube
    torch.testing.assert_close(named_states(f, words, 47, 2), new[:, 4:6])
    assert not named_states(f, torch.tensor([45, 46, 55, 10, -1]), 47, 2).any()    # no "next": nothing named
    cut = named_states(f, torch.tensor([45, 46, 55, 47, 10, -1]), 47, 2)            # the text ends after "red"
    torch.testing.assert_close(cut[:, 0], new[:, 4])
    assert not cut[:, 1].any()


@pytest.mark.parametrize("named_pointer, name_states", [(False, False), (True, False), (True, True)])
def test_a_head_told_the_name_points_at_that_object(named_pointer, name_states):
    """Three marked tokens of three colours; the words name one ("next <colour> cube"): a head reading the name
    (`name_words`) points at the named one's cell, and without the words its pointer is far off. The
    `named_pointer` trunk reads nothing of the thinker but the name. With `name_states` the name comes as the
    thinker's states at the named words, two layers of which only the second says the colour: the head learns
    to weigh that layer."""
    from tkjepa.subgoal import SubgoalConfig, evaluate_head, named_ids, train_head
    from tkjepa.worldmodel import WORKSPACE

    def data(n, seed):
        g = torch.Generator().manual_seed(seed)
        d = _marked_token_data(n, seed)
        z = torch.randn(n, 16, 8, generator=g)
        where = torch.stack([torch.randperm(16, generator=g)[:3] for _ in range(n)])   # token of colour 0, 1, 2
        for c in range(3):
            z[torch.arange(n), where[:, c], 1 + c] = 6.0
        named = torch.randint(0, 3, (n,), generator=g)
        mark = where[torch.arange(n), named]
        lo, hi = (torch.tensor(b, dtype=torch.float32) for b in WORKSPACE)
        cell = torch.stack([(mark % 4 + 0.5) / 4, 1 - (mark // 4 + 0.5) / 4, torch.full((n,), 0.5)], -1)
        words = torch.full((n, 6), -1)
        words[:, :4] = torch.stack([torch.full((n,), 47), 10 + named, torch.full((n,), 16), torch.full((n,), 3)], 1)
        z = torch.nn.functional.layer_norm(z, (8,))
        d.update(z=z, target=z.clone(), target_wrist=lo + cell * (hi - lo), words=words)
        if name_states:   # layer 0: noise; layer 1: the word's own vector (a fixed table), as a thinker's state
            said = named_ids(words, 47, 2).clamp(min=0)                                    # [n, 2]
            d["names"] = torch.stack([torch.randn(n, 2, 8, generator=g), table[said]], 1)    # [n, L=2, 2, 8]
        return d

    table = torch.randn(64, 8, generator=torch.Generator().manual_seed(7))
    kw = dict(thought_dim=32 if name_states else 8, vlm_dim=8, latent_dim=8, dim=32, depth=1, num_heads=2,
              steps=1500, batch_size=32, lr=3e-3, place=True, vocab=64)   # (at 400 steps: ~12 cm off)
    train, val = data(1024, 0), data(200, 1)
    named, _ = train_head(SubgoalConfig(name_words=2, next_id=47, named_pointer=named_pointer,
                                        name_states=name_states, **kw), train, progress=False)
    m = evaluate_head(named, val)
    unnamed = evaluate_head(named, {**val, "words": torch.full_like(val["words"], -1)})
    assert m["val_place_xy_cm"] < 2.5 and unnamed["val_place_xy_cm"] > 5.0
    if name_states:
        w = named.name_layer.softmax(0)
        assert w[1] > w[0]                                  # the layer that carries the name
        with pytest.raises(ValueError, match="named words"):
            named.where(*[val[k] for k in ("thought", "kv", "kv_mask", "z", "words")])
        with pytest.raises(ValueError, match="name_words > 0"):
            SubgoalConfig(name_states=True)
        return
    other = {**val, "thought": torch.randn_like(val["thought"]), "kv": torch.randn_like(val["kv"])}
    with torch.no_grad():
        moved = (named.where(*[other[k] for k in ("thought", "kv", "kv_mask", "z", "words")])
                 - named.where(*[val[k] for k in ("thought", "kv", "kv_mask", "z", "words")])).abs().max()
    assert (moved == 0) == named_pointer
    with pytest.raises(ValueError, match="name_words > 0"):
        SubgoalConfig(named_pointer=True, place=True)
    with pytest.raises(ValueError, match="vocab must not be 0"):
        SubgoalConfig(name_words=2, vocab=0)


needs_planner = pytest.mark.skipif(not (PLANNER / "world_model.safetensors").exists(),
                                   reason="no shipped planner (tkjepa train-planner --out data_samples/planner)")


@needs_planner
def test_plan_command_json_and_determinism(tmp_path):
    args = ["plan", "--episodes", "2", "--mode", "thinker", "--max-steps", "2", "--samples", "8", "--topk", "2",
            "--iters", "1", "--quiet"]
    runs = []
    for k in range(2):
        out = tmp_path / f"plan{k}.json"
        assert cli.main(args + ["--out", str(out)]) == 0
        runs.append(json.loads(out.read_text()))
    for key in ("success_rate", "episodes", "mean_steps", "seconds_per_action"):
        assert key in runs[0]
    assert runs[0]["episodes"] == 2 and 0 <= runs[0]["success_rate"] <= 1
    strip = lambda r: [{k: v for k, v in e.items() if k != "seconds"} for e in r["per_episode"]]  # noqa: E731
    assert strip(runs[0]) == strip(runs[1])
    assert [e["family"] for e in runs[0]["per_episode"]] == ["pick_place", "touch_sequence"]


@pytest.mark.parametrize("extra, msg", [(["--episodes", "0"], "episodes"), (["--samples", "4", "--topk", "8"], "topk"),
                                        (["--world-seed", "1000"], "training"), (["--horizon", "9"], "horizon"),
                                        (["--iters", "0"], "iters")])
def test_plan_command_rejects_bad_arguments(extra, msg, capsys):
    if "--horizon" in extra and not (PLANNER / "world_model.safetensors").exists():
        pytest.skip("the horizon check needs the shipped world model")
    with pytest.raises(SystemExit, match=msg):
        cli.main(["plan", "--quiet"] + extra)


def test_plan_command_rejects_an_unknown_mode():
    with pytest.raises(SystemExit):
        cli.main(["plan", "--mode", "greedy"])


def test_oracle_boundary_follows_the_true_progress():
    from tkjepa.planning import demonstration, oracle_boundary

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


@needs_planner
def test_plan_warns_when_the_encoder_changed_since_training(tmp_path, capsys):
    import shutil

    from tkjepa.planning import load_planner

    folder = tmp_path / "planner"
    shutil.copytree(PLANNER, folder)
    metrics = json.loads((folder / "metrics.json").read_text())
    load_planner(folder, need_head=False)
    assert "warning" not in capsys.readouterr().out
    (folder / "metrics.json").write_text(json.dumps({**metrics, "encoder_sha256": "0" * 64}))
    load_planner(folder, need_head=False)
    assert "another encoder" in capsys.readouterr().out


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


def test_oracle_waypoints_go_above_then_around_then_grip():
    from tkjepa.planning import demonstration, oracle_boundary, oracle_waypoint, waypoint_frames

    demo, env = demonstration(11, "pick_place")
    wrist, ends = demo.positions(["rightHand"])[:, 0], [int(e) for e in demo.extras["subgoal_end"]]
    (hover, _, _), (around, _, _), (grip, _, done) = waypoint_frames(demo)[:3]
    assert done and grip == ends[0] and hover < around < grip
    assert wrist[hover][2] - wrist[around][2] > 0.08 and np.linalg.norm(wrist[hover][:2] - wrist[around][:2]) < 0.01
    reached = set()
    assert oracle_waypoint(env, demo, reached) == hover           # far from everything: the hover above the cube
    env.state.wrist = wrist[around].copy()
    assert oracle_waypoint(env, demo, reached) == hover           # not there yet: waypoints come in order
    env.state.wrist = wrist[hover].copy()
    assert oracle_waypoint(env, demo, reached) == around and reached == {hover}
    env.state.wrist = wrist[around].copy()
    assert oracle_waypoint(env, demo, reached) == grip == oracle_boundary(env, demo)
    env.state.wrist = wrist[hover].copy()
    assert oracle_waypoint(env, demo, reached) == grip            # reached waypoints stay reached
    env.state.held = env.task.subgoals[0][1]
    carry = [f for f, sub, done in waypoint_frames(demo) if sub == 1 and not done][0]
    assert oracle_waypoint(env, demo, reached) == carry           # holding the cube: over the bowl next


def test_planner_reads_the_thinker_it_was_trained_with(tmp_path):
    from tkjepa.bench import THINKER
    from tkjepa.worldmodel import planner_thinker

    assert planner_thinker(tmp_path) == THINKER                   # no copy: the shipped thinker
    (tmp_path / "thinker").mkdir()
    assert planner_thinker(tmp_path) == THINKER                   # an empty folder is not a thinker
    (tmp_path / "thinker" / "model.safetensors").write_bytes(b"")
    assert planner_thinker(tmp_path) == tmp_path / "thinker"


def test_told_text_reads_the_env_truth():
    from tkjepa.planning import demonstration, told_text
    from tkjepa.thinker.think import thinking_target

    demo, env = demonstration(11, "pick_place")
    assert told_text(env, demo) == thinking_target(demo, 2)          # the demo's own words at its start
    env.state.held = env.task.subgoals[0][1]
    assert told_text(env, demo) == thinking_target(demo, int(demo.extras["subgoal_end"][0]) + 2)
    demo, env = demonstration(12, "touch_sequence")
    names = [o.name for o in env.state.objects]
    env.state.touched = [env.task.subgoals[0][1]]
    assert told_text(env, demo) == f"holding nothing . next {names[env.task.subgoals[1][1]]}"


@needs_planner
def test_train_planner_keeps_the_thinker_its_head_reads(tmp_path, monkeypatch):
    """--thinker copies a non-shipped thinker into the folder (where `plan` loads it from); retraining with the
    shipped one removes the copy; --reuse-world-model keeps the world model's weights and its command."""
    import argparse
    import dataclasses
    import shutil

    from tkjepa import subgoal, worldmodel
    from tkjepa.bench import THINKER, checkpoint_digest

    from tkjepa.thinker.model import load_thinker

    folder, other = tmp_path / "planner", tmp_path / "other_thinker"
    shutil.copytree(PLANNER, folder)
    model, tok = load_thinker(THINKER)
    with torch.no_grad():
        model.lm_head.weight.add_(0.01)  # another thinker: other weights
    model.save_pretrained(other)
    tok.save_pretrained(other)
    seen = []

    configs = []

    def fast_head(cfg, encoder, thinker, progress=True):  # the head's training is not what is tested here
        seen.append(float(thinker[0].lm_head.weight.detach().sum()))
        configs.append(cfg)
        if cfg.vocab is None:  # as train_from_scratch sets it
            cfg = dataclasses.replace(cfg, vocab=len(thinker[1]), next_id=0)
        return subgoal.SubgoalHead(cfg), {"val_l1": 0.0, "val_l1_copy_current": 0.0}

    monkeypatch.setattr(subgoal, "train_from_scratch", fast_head)
    p = argparse.ArgumentParser()
    worldmodel.add_arguments(p)
    wm_before = (folder / "world_model.safetensors").read_bytes()
    def run(*extra):
        return worldmodel.run(p.parse_args(["--out", str(folder), "--reuse-world-model", "--quiet", *extra]))

    assert run("--thinker", str(other)) == 0
    metrics = json.loads((folder / "metrics.json").read_text())
    assert (folder / "thinker" / "model.safetensors").exists() and metrics["thinker"] == "thinker"
    assert metrics["thinker_sha256"] == checkpoint_digest(other) and "--thinker" in metrics["command"]
    assert metrics["world_model_command"] == "tkjepa train-planner --out data_samples/planner"
    assert (folder / "world_model.safetensors").read_bytes() == wm_before
    assert worldmodel.planner_thinker(folder) == folder / "thinker"
    assert run() == 0                                                 # back to the shipped thinker
    assert not (folder / "thinker").exists() and worldmodel.planner_thinker(folder) == THINKER
    assert len(seen) == 2 and seen[0] == pytest.approx(float(model.lm_head.weight.detach().sum()))  # its own thinker
    assert seen[1] != pytest.approx(seen[0]) and metrics["thinker_sha256"] != checkpoint_digest(THINKER)
    with pytest.raises(SystemExit, match="no thinker"):
        run("--thinker", str(tmp_path / "nowhere"))
    assert run("--place-head", "--fine-pointer", "--named-pointer") == 0   # the place-first head's options
    c = configs[-1]
    assert c.place and c.fine and c.named_pointer and c.name_words == 2 and c.episodes == 2000
    assert json.loads((folder / "metrics.json").read_text())["command"].endswith(
        "--place-head --fine-pointer --named-pointer --reuse-world-model")
    assert run("--place-head", "--fine-pointer", "--named-pointer", "--name-states") == 0
    assert configs[-1].name_states and configs[-1].name_words == 2 and configs[-1].named_pointer
    with pytest.raises(SystemExit, match="--read-name: options of the place-first head"):
        run("--read-name")


def test_which_heads_plan_in_which_mode():
    """A head that reads the thinker's states plans only with the texts it was trained on; a named pointer trained
    on the true words plans with the thinker's too (it reads only the object they name)."""
    from tkjepa.planning import head_mode_problem
    from tkjepa.subgoal import SubgoalConfig

    reads_states, told_states = SubgoalConfig(), SubgoalConfig(told_text=True)
    pointer = SubgoalConfig.placed(fine=True, name_words=2, named_pointer=True, vocab=10, next_id=1)
    told_pointer = SubgoalConfig.placed(fine=True, name_words=2, named_pointer=True, vocab=10, next_id=1,
                                        told_text=True)
    assert head_mode_problem(reads_states, "thinker") is None and head_mode_problem(told_states, "told") is None
    assert "--told-text" in head_mode_problem(reads_states, "told")
    assert "use --mode told" in head_mode_problem(told_states, "thinker")
    assert "--told-text" in head_mode_problem(pointer, "told")
    assert head_mode_problem(told_pointer, "thinker") is None and head_mode_problem(told_pointer, "told") is None


@needs_planner
def test_told_mode_needs_a_head_trained_on_told_texts(tmp_path):
    import shutil

    folder = tmp_path / "planner"
    shutil.copytree(PLANNER, folder)
    cfg = json.loads((folder / "subgoal_head.json").read_text())
    (folder / "subgoal_head.json").write_text(json.dumps({**cfg, "told_text": False}))
    with pytest.raises(SystemExit, match="--told-text"):        # a head that read the thinker's own words
        cli.main(["plan", "--mode", "told", "--episodes", "1", "--quiet", "--planner", str(folder)])
    (folder / "subgoal_head.json").write_text(json.dumps({**cfg, "told_text": True}))
    out = tmp_path / "told.json"
    assert cli.main(["plan", "--mode", "told", "--episodes", "1", "--max-steps", "2", "--samples", "8", "--topk", "2",
                     "--iters", "1", "--quiet", "--planner", str(folder), "--out", str(out)]) == 0
    from tkjepa.planning import demonstration, episode_seeds, told_text

    demo, env = demonstration(*episode_seeds(2000, 1)[0])
    texts = json.loads(out.read_text())["per_episode"][0]["subgoal_texts"]
    assert texts[0] == [0, told_text(env, demo)] and texts[0][1].startswith("holding nothing . next ")  # the truth


def test_grid_latents_render_the_hand_at_each_place_and_leave_the_env_alone(encoder):
    from tkjepa.planning import demonstration, energy_landscape, grid_latents
    from tkjepa.worldmodel import frame_latents

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


def test_heads_saved_before_the_place_head_load_as_residual_heads(tmp_path):
    from tkjepa.subgoal import SubgoalConfig, SubgoalHead, load_head, save_head

    cfg = SubgoalConfig(thought_dim=8, vlm_dim=8, latent_dim=8, dim=32, depth=1, num_heads=2, place=False)
    torch.manual_seed(0)
    head = SubgoalHead(cfg).eval()
    save_head(head, cfg, tmp_path)
    fields = json.loads((tmp_path / "subgoal_head.json").read_text())
    for k in ("place", "place_weight", "place_freqs"):  # a file written before these fields existed
        del fields[k]
    (tmp_path / "subgoal_head.json").write_text(json.dumps(fields))
    old = load_head(tmp_path)
    x = _marked_token_data(4, 2)
    assert not old.cfg.place and not hasattr(old, "anchor")
    inputs = (x["thought"], x["kv"], x["kv_mask"], x["z"])
    with torch.no_grad():
        assert torch.equal(old(*inputs), head(*inputs))
    placed = SubgoalConfig.placed(thought_dim=8, vlm_dim=8, latent_dim=8, dim=32, depth=1, num_heads=2, vocab=5)
    save_head(SubgoalHead(placed), placed, tmp_path)
    new = load_head(tmp_path)  # new files say what they are
    assert new.cfg.place and new.cfg.vocab == 5 and new.word_emb.num_embeddings == 5
    assert SubgoalConfig().place is False and SubgoalConfig().vocab == 0  # the shipped head is the residual one


@needs_planner
def test_true_place_mode_draws_the_hand_at_the_oracle_boundary(tmp_path):
    import shutil

    from tkjepa.planning import demonstration, episode_seeds, oracle_boundary, true_place_goal
    from tkjepa.subgoal import SubgoalConfig, SubgoalHead, place_units, save_head

    folder = tmp_path / "planner"
    shutil.copytree(PLANNER, folder)
    residual = SubgoalConfig()
    save_head(SubgoalHead(residual), residual, folder)
    with pytest.raises(SystemExit, match="--place-head"):      # a residual head has no place to draw from
        cli.main(["plan", "--mode", "true-place", "--episodes", "1", "--quiet", "--planner", str(folder)])
    cfg = SubgoalConfig.placed(vocab=5)
    torch.manual_seed(0)
    head = SubgoalHead(cfg).eval()
    save_head(head, cfg, folder)
    demo, env = demonstration(*episode_seeds(2000, 1)[0])
    b, z = oracle_boundary(env, demo), torch.randn(16, 96)
    place = place_units(torch.tensor(demo.positions(["rightHand"])[b, 0], dtype=torch.float32)[None],
                        torch.tensor([float(demo.extras["grip"][b])]))
    assert b == int(demo.extras["subgoal_end"][0])                     # at the start: the first boundary
    with torch.no_grad():
        assert torch.allclose(true_place_goal(head, demo, b, z), head.decode(z[None], place)[0])
    out = tmp_path / "tp.json"
    assert cli.main(["plan", "--mode", "true-place", "--episodes", "1", "--max-steps", "2", "--samples", "8",
                     "--topk", "2", "--iters", "1", "--quiet", "--planner", str(folder), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["mode"] == "true-place"


@needs_planner
@pytest.mark.parametrize("told, states", [(False, False), (True, False), (True, True)])
def test_a_fine_named_pointer_plans_through_the_cli(tmp_path, told, states):
    """`tkjepa plan --mode thinker` with a place-first head that points over the fine tokens: the planner hands
    the encoder to `thinker_goal`, and the place it records is the head's place for the planner's first view.
    A named pointer reads only the object the words name, so one trained on the true words (`--told-text`) plans
    with the thinker's words too."""
    import shutil

    from tkjepa.bench import load_models
    from tkjepa.planning import demonstration, episode_seeds, felt, thinker_goal
    from tkjepa.subgoal import SubgoalConfig, SubgoalHead, save_head
    from tkjepa.worldmodel import frame_latents, planner_thinker

    folder = tmp_path / "planner"
    shutil.copytree(PLANNER, folder)
    encoder, thinker = load_models(thinker=planner_thinker(folder))   # the thinker `plan` will load
    cfg = SubgoalConfig.placed(fine=True, name_words=2, named_pointer=True, vocab=len(thinker[1]),
                               next_id=thinker[1].convert_tokens_to_ids("next"), depth=1, told_text=told,
                               name_states=states)
    torch.manual_seed(0)
    head = SubgoalHead(cfg).eval()
    save_head(head, cfg, folder)
    out = tmp_path / "plan.json"
    assert cli.main(["plan", "--mode", "thinker", "--episodes", "1", "--max-steps", "2", "--samples", "8", "--topk",
                     "2", "--iters", "1", "--quiet", "--planner", str(folder), "--out", str(out)]) == 0
    places = json.loads(out.read_text())["per_episode"][0]["subgoal_places"]
    assert [p[0] for p in places] == [0]                        # asked once, at the first action
    demo, env = demonstration(*episode_seeds(2000, 1)[0])
    start, hand = [env.render()], [felt(env)]
    start.append(env.step([0.0, 0.0, 0.0, 0.0]))
    hand.append(felt(env))
    start = np.stack(start)
    z_last = frame_latents(encoder, start, [len(start) - 1])[0]
    with torch.no_grad():
        _, _, place = thinker_goal(head, thinker, demo, start, z_last, encoder=encoder, hand=hand)
        np.testing.assert_allclose(places[0][1], place, atol=2e-4)
        with pytest.raises(ValueError, match="pass the encoder"):
            thinker_goal(head, thinker, demo, start, z_last, hand=hand)


def test_a_proprio_thinker_plans_with_the_hand_it_feels(tmp_path):
    """A thinker that reads proprioception (`pretrain-thinker --proprio`) gets the env hand's pose at every observed
    frame from `tkjepa plan`: the place the planner records is the one `thinker_goal` gives for those poses, and
    another hand gives another place."""
    import shutil

    from tkjepa.bench import THINKER, load_models
    from tkjepa.planning import demonstration, episode_seeds, felt, thinker_goal
    from tkjepa.subgoal import SubgoalConfig, SubgoalHead, save_head
    from tkjepa.thinker.model import load_thinker
    from tkjepa.worldmodel import frame_latents

    folder = tmp_path / "planner"
    shutil.copytree(PLANNER, folder)
    model, tok = load_thinker(THINKER)
    model.config.tkjepa_proprio = True                         # the shipped weights, now reading the hand too
    model.save_pretrained(folder / "thinker")
    tok.save_pretrained(folder / "thinker")
    encoder, _ = load_models()
    cfg = SubgoalConfig.placed(vocab=len(tok), next_id=tok.convert_tokens_to_ids("next"), depth=1)
    torch.manual_seed(0)
    head = SubgoalHead(cfg).eval()
    with torch.no_grad():                                      # no zero-initialised gate hides the thinker
        for p in head.parameters():
            p.add_(0.2 * torch.randn_like(p))
    save_head(head, cfg, folder)
    out = tmp_path / "plan.json"
    assert cli.main(["plan", "--mode", "thinker", "--episodes", "1", "--max-steps", "2", "--samples", "8", "--topk",
                     "2", "--iters", "1", "--quiet", "--planner", str(folder), "--out", str(out)]) == 0
    places = json.loads(out.read_text())["per_episode"][0]["subgoal_places"]
    thinker = load_thinker(folder / "thinker")
    demo, env = demonstration(*episode_seeds(2000, 1)[0])
    start, hand = [env.render()], [felt(env)]
    start.append(env.step([0.0, 0.0, 0.0, 0.0]))
    hand.append(felt(env))
    assert hand[-1]["held"] == -1 and hand[-1]["touches"] == 0
    start = np.stack(start)
    z_last = frame_latents(encoder, start, [len(start) - 1])[0]
    higher = [{**h, "joints": {k: v + np.array([0.0, 0.0, 0.06]) for k, v in h["joints"].items()}} for h in hand]
    touched = [h if i == 0 else {**h, "touches": 1} for i, h in enumerate(hand)]
    with torch.no_grad():
        _, _, place = thinker_goal(head, thinker, demo, start, z_last, hand=hand)
        _, _, other = thinker_goal(head, thinker, demo, start, z_last, hand=higher)
        _, _, after = thinker_goal(head, thinker, demo, start, z_last, hand=touched)
        np.testing.assert_allclose(places[0][1], place, atol=2e-4)
        assert np.abs(other - place).max() > 1e-3 and np.abs(after - place).max() > 1e-3
        with pytest.raises(ValueError, match="proprioception"):
            thinker_goal(head, thinker, demo, start, z_last)
        with pytest.raises(ValueError, match="1 hand poses for 2 frames"):
            thinker_goal(head, thinker, demo, start, z_last, hand=hand[:1])
