"""The rollout viewer through its HTTP API: every api_name, called with gradio_client on a live server.

The numbers must be the benchmark's (an episode's ADE here is `tkjepa evaluate`'s for the same model and episode),
ablating a read thinker layer must move the forecast and an unread one must not, bad uploads must come back as a
message while the app keeps serving, and 50 concurrent requests must all succeed.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gradio as gr
import h5py
import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from PIL import Image

from tkjepa.backbones import load_backbones
from tkjepa.egodex import find_episodes, load_episode
from tkjepa.forecast.data import ForecastConfig
from tkjepa.forecast.store import folder_data
from tkjepa.forecast.evaluate import predict
from tkjepa.forecast.model import load_forecaster
from tkjepa.metrics import trajectory_scores
from tkjepa.paths import ENCODER, EPISODES, FORECASTERS, THINKER

DATA = EPISODES
ROOT = Path(__file__).resolve().parents[1]
ALL = ["thinkjepa", "jepa_only", "vlm_only", "oracle", "const_velocity"]


def rollout(client: Client, key: str, models=("thinkjepa",), horizon: int = 8, mode: str = "recursive",
            injection: str = "crossattn", subset: str = "all layers", ablate=()) -> tuple:
    return client.predict(key, list(models), horizon, mode, injection, subset, list(ablate), api_name="/rollout")


def _array(v) -> np.ndarray:
    """A plotly JSON array: a list, or {"dtype", "bdata": base64} (plotly's binary encoding)."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
    return np.asarray(v)


def traces(plot: dict) -> dict[str, dict]:
    """A figure from the client -> {trace name: {"type", "x", "y", "z"}} with decoded arrays. The rollout's
    figures come as plotly JSON (the page draws them itself), the attribution chart as a gr.Plot value."""
    fig = json.loads(plot["plot"]) if "plot" in plot else plot
    return {t.get("name"): {"type": t["type"], **{a: _array(t[a]) for a in "xyz" if a in t}} for t in fig["data"]}


@pytest.fixture(scope="module")
def client(viewer_url) -> Client:
    return Client(viewer_url, verbose=False)


@pytest.fixture(scope="module")
def paths() -> list[Path]:
    return find_episodes(DATA)


def key_of(path: Path) -> str:
    return str(path.relative_to(DATA).with_suffix(""))


@pytest.fixture(scope="module")
def bench_rows():
    """The first two sample episodes as `tkjepa evaluate` computes them."""
    torch.set_num_threads(1)
    data, _, _ = folder_data(DATA, load_backbones(ENCODER, THINKER), ForecastConfig(), max_episodes=2,
                             progress=False)
    return data


def test_demo_is_blocks_and_every_event_is_named(viewer_module, client):
    assert isinstance(viewer_module.demo, gr.Blocks)
    deps = viewer_module.demo.config["dependencies"]
    names = [d.get("api_name") for d in deps]
    assert all(names), f"events without an api_name: {names}"
    # "draw" runs in the page only: it puts the rollout's figures into their persistent plotly divs
    assert set(names) == {"episode", "rollout", "draw", "attribution", "upload", "plan", "plan_frame"}
    assert set(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == {
        "/episode", "/rollout", "/attribution", "/upload", "/plan", "/plan_frame"}


def test_planning_panel_plays_a_planned_episode_back_with_its_goals_marked(client):
    """An oracle plan: one band per goal on the energy chart, the last frame beside the goal frame, and the slider
    going back to the start shows the first frame beside the first goal."""
    fig, image, text, slider = client.predict(1, "oracle", api_name="/plan")
    fig = json.loads(fig["plot"])
    bands = [s for s in fig["layout"]["shapes"] if s["type"] == "rect"]
    goals = [a["text"] for a in fig["layout"]["annotations"]]
    assert len(bands) == len(goals) >= 1 and all(g.startswith("demonstration frame") for g in goals)
    steps = len(fig["data"][0]["y"])
    assert bands[0]["x0"] == -0.5 and bands[-1]["x1"] == steps - 0.5            # the bands tile the actions
    assert slider["maximum"] == 2 * steps + 1 and slider["value"] == slider["maximum"]
    verdict = "task done" if text.startswith("**task done**") else "not done"
    assert text.startswith(f"**{verdict}** in {steps} actions") and verdict in fig["layout"]["title"]["text"]
    last = np.asarray(Image.open(image).convert("RGB"))
    assert last.shape[1] > 2 * 4 * 64                                              # planned frame | goal frame
    first = np.asarray(Image.open(client.predict(1, "oracle", 0, api_name="/plan_frame")).convert("RGB"))
    assert first.shape == last.shape and not np.array_equal(first, last)
    with pytest.raises(Exception, match="not in the list of choices|cannot plan"):
        client.predict(99, "oracle", api_name="/plan")
    with pytest.raises(Exception, match="not in the list of choices|cannot plan"):
        client.predict(1, "told", api_name="/plan")


def test_episode_shows_frame_strip_instruction_and_thinker_text(client, paths):
    strip, info = client.predict(key_of(paths[5]), api_name="/episode")
    ep = load_episode(paths[5], load_frames=False)
    img = np.asarray(Image.open(strip).convert("RGB"))
    assert img.shape[1] > 800 and img.shape[0] > 200
    # the sampler's colours are in the strip: blue frames (dense), orange and green bars (thinker, targets)
    for colour in ((31, 119, 180), (255, 127, 14), (44, 160, 44)):
        assert (np.abs(img.astype(int) - colour).sum(-1) == 0).sum() > 50, colour
    # thinkjepa's pointer: a red square of one 8 × 8 cell (7 px at 56 px a frame) on the last observed frame
    red = np.argwhere((np.abs(img.astype(int) - (214, 39, 40)).sum(-1) == 0))
    assert len(red) >= 16 and np.ptp(red[:, 0]) <= 9 and np.ptp(red[:, 1]) <= 9
    assert ep.instruction in info and "thinker's text" in info and "forecast start s = 32" in info


@pytest.mark.parametrize("mode", ["recursive", "one_shot"])
def test_rollout_ade_is_the_benchmarks(client, paths, bench_rows, mode):
    for i in range(2):
        _, _, table, numbers = rollout(client, key_of(paths[i]), ALL, 32, mode)
        assert set(numbers["models"]) == set(ALL)
        if mode == "recursive":
            for name in ("thinkjepa", "jepa_only", "vlm_only", "oracle"):
                pred = predict(load_forecaster(FORECASTERS / name), bench_rows.subset([i]), windows=4)
                expect = trajectory_scores(pred, bench_rows.traj[[i]], bench_rows.valid[[i]], 32)
                assert numbers["models"][name]["ade"] == pytest.approx(expect["ade"], abs=1e-6), name
                assert numbers["models"][name]["fde"] == pytest.approx(expect["fde"], abs=1e-6), name
        assert f"{100 * numbers['models']['thinkjepa']['ade']:.2f}" in table


def test_one_shot_and_recursive_agree_on_the_first_window_only(client, paths):
    key = key_of(paths[3])
    for h, same in ((8, True), (32, False)):
        rec = rollout(client, key, ["thinkjepa", "jepa_only"], h, "recursive")[3]["models"]
        one = rollout(client, key, ["thinkjepa", "jepa_only"], h, "one_shot")[3]["models"]
        for n in rec:
            assert (rec[n]["ade"] == pytest.approx(one[n]["ade"], abs=1e-7)) is same, (n, h)


def test_horizon_and_model_toggles_redraw(client, paths):
    plot3d, curves, _, numbers = rollout(client, key_of(paths[0]), ["jepa_only", "vlm_only"], 12)
    tr = traces(plot3d)
    assert {"observed", "true future", "jepa_only", "vlm_only"} <= set(tr) and "thinkjepa" not in tr
    assert tr["true future"]["type"] == "scatter3d" and len(tr["true future"]["x"]) == 12
    assert len(tr["jepa_only"]["x"]) == 13          # from the last observed frame on
    assert numbers["horizon"] == 12 and set(numbers["models"]) == {"jepa_only", "vlm_only"}
    curve = traces(curves)["jepa_only"]
    assert len(curve["y"]) == 32   # cm per frame; their mean over the horizon is the ADE
    assert np.mean(curve["y"][:12]) == pytest.approx(100 * numbers["models"]["jepa_only"]["ade"], rel=1e-4)


def test_ablating_a_read_layer_moves_the_forecast_and_an_unread_one_does_not(client, paths):
    key = key_of(paths[0])
    full = rollout(client, key)[3]["models"]["thinkjepa"]["ade"]
    plot, _, table, read = rollout(client, key, ablate=[0])
    assert abs(read["thinkjepa_ablated"]["ade"] - full) > 1e-4
    tr = traces(plot)
    moved = np.abs(tr["thinkjepa, ablated [0]"]["x"] - tr["thinkjepa (all layers)"]["x"])
    assert moved.max() > 1e-4 and "layers [0] ablated" in table
    last = rollout(client, key, subset="layers: last")[3]
    unread = rollout(client, key, subset="layers: last", ablate=[1])[3]   # that checkpoint reads row 5 only
    assert unread["checkpoint"] == "thinkjepa_levels_last"
    assert unread["thinkjepa_ablated"]["ade"] == pytest.approx(last["models"]["thinkjepa"]["ade"], abs=1e-7)


def test_attribution_per_layer(client, paths):
    key = key_of(paths[0])
    plot, text, res = client.predict(key, "crossattn", "all layers", api_name="/attribution")
    L = len(res["layers"])
    assert L == 6 and res["used"] == list(range(L)) and "every row is read" in text  # no row unread by construction
    # completeness: the layers' attributions add up to s(input) - s(baseline), up to the convergence delta
    assert sum(res["attribution"]) == pytest.approx(res["s"] - res["s_base"], abs=res["delta"] + 1e-5)
    assert res["delta"] <= 0.01 * abs(res["s"] - res["s_base"]) + 1e-7 and res["n_steps"] in (128, 512)
    # ΔADE of a layer is what ablating it in the rollout view does at the trained horizon
    full = rollout(client, key, horizon=8)[3]["models"]["thinkjepa"]["ade"]
    for r in res["used"][:2]:
        abl = rollout(client, key, horizon=8, ablate=[r])[3]["thinkjepa_ablated"]["ade"]
        assert abl - full == pytest.approx(res["ablation_delta_ade"][r], abs=1e-6)
    bars = [t for t in traces(plot).values() if t["type"] == "bar"]
    assert len(bars) == 2 and all(len(b["y"]) == L for b in bars)
    _, text, res = client.predict(key, "crossattn", "layers: last", api_name="/attribution")  # reads row 5 only
    assert res["used"] == [5] and "rows [0, 1, 2, 3, 4] are not read" in text
    assert all(res["attribution"][r] == 0 and res["ablation_delta_ade"][r] == 0 for r in range(5))


def test_injection_selector_loads_that_checkpoint(client, paths):
    key = key_of(paths[1])
    default = rollout(client, key, horizon=32)[3]
    assert default["checkpoint"] == "thinkjepa"
    for injection in ("film", "adaln"):
        n = rollout(client, key, horizon=32, injection=injection)[3]
        assert n["checkpoint"] == f"thinkjepa_{injection}" and not n["note"]
        assert abs(n["models"]["thinkjepa"]["ade"] - default["models"]["thinkjepa"]["ade"]) > 1e-6
    official = rollout(client, key, horizon=32, injection="film", subset="all layers, streams: both")[3]
    assert official["checkpoint"] == "thinkjepa_official" and not official["note"]


def test_layer_subset_selector_loads_that_checkpoint(client, paths):
    key = key_of(paths[1])
    full = rollout(client, key, horizon=32)[3]
    for levels in ("mid", "last"):
        n = rollout(client, key, horizon=32, subset=f"layers: {levels}")[3]
        assert n["checkpoint"] == f"thinkjepa_levels_{levels}" and not n["note"]
        assert abs(n["models"]["thinkjepa"]["ade"] - full["models"]["thinkjepa"]["ade"]) > 1e-6
    odd = rollout(client, key, horizon=32, injection="adaln", subset="layers: mid")[3]  # never trained together
    assert odd["checkpoint"] == "thinkjepa" and "no shipped thinkjepa checkpoint" in odd["note"]


def _copy_pair(src: Path, dst: Path, stem: str) -> tuple[Path, Path]:
    dst.mkdir(parents=True, exist_ok=True)
    return (Path(shutil.copyfile(src, dst / f"{stem}.hdf5")),
            Path(shutil.copyfile(src.with_suffix(".mp4"), dst / f"{stem}.mp4")))


def _bad_uploads(src: Path, tmp: Path) -> dict[str, tuple[list[Path], str]]:
    """name -> (files, a phrase the message must contain)."""
    h5, mp4 = _copy_pair(src, tmp / "ok", "ep")
    not_h5 = tmp / "text" / "ep.hdf5"
    not_h5.parent.mkdir()
    not_h5.write_text("this is not HDF5")
    no_keys = tmp / "nokeys" / "ep.hdf5"
    no_keys.parent.mkdir()
    with h5py.File(no_keys, "w") as f:
        f.attrs["llm_description"] = "no poses here"
    short_h5, _ = _copy_pair(src, tmp / "short", "ep")
    with h5py.File(short_h5, "a") as f:  # 60 poses for a 64-frame video
        for name in list(f["transforms"]):
            data = f["transforms"][name][:60]
            del f["transforms"][name]
            f["transforms"].create_dataset(name, data=data)
        for name in list(f["confidences"]):
            data = f["confidences"][name][:60]
            del f["confidences"][name]
            f["confidences"].create_dataset(name, data=data)
    no_hand, _ = _copy_pair(src, tmp / "nohand", "ep")
    with h5py.File(no_hand, "a") as f:  # an EgoDex file without the right hand the forecasters predict
        for name in [n for n in f["transforms"] if n.startswith("right")]:
            del f["transforms"][name]
    huge = tmp / "huge" / "ep.hdf5"
    huge.parent.mkdir()
    with open(huge, "wb") as f:
        f.truncate(51 * 2**20)
    return {"not hdf5": ([not_h5, mp4], "not an HDF5 file"),
            "missing keys": ([no_keys, mp4], "missing /transforms"),
            "length mismatch": ([short_h5, mp4], "video has 64 frames but transforms have 60"),
            "no right hand": ([no_hand, mp4], "no transforms for joints"),
            "huge": ([huge, mp4], "the viewer takes files up to 50 MB"),
            "no video": ([h5], "exactly one .hdf5 file and its .mp4")}


def test_bad_uploads_show_a_message_and_the_app_keeps_serving(client, paths, tmp_path):
    for name, (files, phrase) in _bad_uploads(paths[0], tmp_path).items():
        status, _ = client.predict([handle_file(str(f)) for f in files], api_name="/upload")
        assert "Upload rejected" in status and phrase in status, (name, status)
        assert rollout(client, key_of(paths[0]))[3]["models"]["thinkjepa"]["ade"] > 0, name


def test_good_upload_becomes_an_episode(client, paths, tmp_path):
    files = _copy_pair(paths[2], tmp_path, "mine")
    status, picker = client.predict([handle_file(str(f)) for f in files], api_name="/upload")
    key = picker["value"]   # the picker, updated: the new episode listed and selected
    assert key in [value for _, value in picker["choices"]]
    assert status.startswith("**Loaded**") and key.startswith("upload/") and key.endswith("/mine")
    assert load_episode(paths[2], load_frames=False).instruction in status
    mine = rollout(client, key, ALL, 32)[3]["models"]
    ref = rollout(client, key_of(paths[2]), ALL, 32)[3]["models"]
    for n in ALL:  # the same episode: the same forecasts (thinker padding may differ in the last bits)
        assert mine[n]["ade"] == pytest.approx(ref[n]["ade"], abs=1e-5), n
    with pytest.raises(Exception, match="unknown episode"):
        rollout(client, "upload/nothing/here")


def test_fifty_concurrent_requests_all_succeed(client, paths):
    keys = [key_of(p) for p in paths[:4]]
    expected = {k: rollout(client, k, ALL, 32)[3]["models"]["thinkjepa"]["ade"] for k in keys}

    def call(i: int):
        k = keys[i % 4]
        if i % 5 == 4:
            return k, client.predict(k, "crossattn", "all layers", api_name="/attribution")[2]
        return k, rollout(client, k, ALL, 32)[3]

    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(call, range(50)))
    assert len(results) == 50
    for i, (k, res) in enumerate(results):
        if i % 5 == 4:
            assert res["episode"] == k and len(res["attribution"]) == 6
        else:
            assert res["models"]["thinkjepa"]["ade"] == pytest.approx(expected[k], abs=1e-7)


def test_cli_serves_a_folder_on_the_given_port_and_prints_the_url(paths, tmp_path):
    from conftest import free_port

    for p in paths[:3]:  # a small EgoDex-format folder of its own
        _copy_pair(p, tmp_path / p.parent.name, p.stem)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tkjepa", "viewer", "--data", str(tmp_path), "--port",
                             str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("rollout viewer: "):
                break
        url = lines[-1].removeprefix("rollout viewer: ").split()[0]
        assert url == f"http://127.0.0.1:{port}/", "".join(lines)
        choices = Client(url, verbose=False).view_api(print_info=False, return_format="dict")
        picker = choices["named_endpoints"]["/episode"]["parameters"][0]["type"]
        assert sorted(picker["enum"]) == sorted(key_of(p) for p in paths[:3])
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_make_demo_runs_the_viewer():
    out = subprocess.run(["make", "-n", "demo", "DEMO_PORT=7999"], cwd=ROOT, capture_output=True, text=True).stdout
    assert "tkjepa viewer --port 7999" in out


def test_upload_names_cannot_escape_the_upload_folder(paths, tmp_path):
    """Whatever an uploaded file is called (dots, a path that climbs, odd characters), it is copied inside a
    fresh folder under the viewer's upload root, under its own stem."""
    from tkjepa.viewer.compute import stage_upload

    root = tmp_path / "uploads"
    root.mkdir()
    for stem in ("..", "...", "a b;rm -rf", "évidence", ".hidden"):
        src = tmp_path / "src" / stem.replace("/", "_")
        src.mkdir(parents=True, exist_ok=True)
        h5, mp4 = _copy_pair(paths[0], src, stem)
        climbing = [src / "deeper" / ".." / h5.name, src / "deeper" / ".." / mp4.name]
        (src / "deeper").mkdir(exist_ok=True)
        staged = stage_upload(climbing, 50, root)
        assert staged.resolve().parent.parent == root.resolve() and staged.exists()
        assert staged.with_suffix(".mp4").exists()


def test_a_damaged_reference_episode_is_not_offered(paths, tmp_path):
    """The picker lists the folder's episodes less those its reference load refused (with a warning)."""
    from tkjepa.viewer.compute import Viewer, ViewerConfig

    folder = tmp_path / "eps" / "pick_place"
    folder.mkdir(parents=True)
    for i, p in enumerate(paths[:3]):
        _copy_pair(p, folder, str(i))
    (folder / "1.hdf5").write_bytes(b"not an episode" * 50)
    with pytest.warns(UserWarning, match="1.hdf5: not an HDF5 file"):
        v = Viewer(ViewerConfig(data=tmp_path / "eps", checkpoints=FORECASTERS, encoder=ENCODER, thinker=THINKER,
                                reference_episodes=3))
    assert v.episode_keys == ["pick_place/0", "pick_place/2"]
    shutil.rmtree(v.upload_root, ignore_errors=True)
