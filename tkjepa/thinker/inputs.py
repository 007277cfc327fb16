"""Thinker inputs: the prompt from an episode's metadata, Qwen3-VL's video token layout, pixel packing.

ThinkJEPA asks the VLM a general summarisation request populated with the clip's metadata (task name,
scene description). The video enters as Qwen3-VL lays it out: for each temporal group of
`temporal_patch` frames, a timestamp text, then `<|vision_start|> <|video_pad|>×(gh·gw/merge²)
<|vision_end|>`. Each `<|video_pad|>` is later replaced by one merged visual token, so the pad count must
match `pixel_values_videos` exactly. Qwen3VLVideoProcessor needs torchvision (unusable with CPU torch
here), so the packing is reproduced by hand (`pack_video`, checked against Qwen2VLImageProcessor in tests).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from tkjepa.episode import WRIST, Episode
from tkjepa.thinker.tokenizer import normalize_text

TEXT, IMAGE, VIDEO = 0, 1, 2  # mm_token_type_ids values (transformers 5 requires them)


@dataclass
class VideoConfig:
    """How the thinker clip becomes pixels and tokens."""

    size: int = 64               # frame side fed to the vision tower (pixels); a multiple of patch·merge
    patch: int = 16              # vision patch side (Qwen3-VL: 16): a 64-px frame is 4×4 patches, 2×2 tokens
    temporal_patch: int = 2      # frames per temporal group (Qwen3-VL: 2)
    merge: int = 2               # spatial merge: merge×merge patches -> one LLM token (Qwen3-VL: 2)
    mean: float = 0.5            # pixel normalisation, (x/255 - mean)/std, Qwen3-VL's image_mean/std
    std: float = 0.5
    proprio: bool = False        # the prompt also carries the hand's proprioception over the clip (`proprio_text`)
    instruction: bool = True     # the prompt carries the episode's instruction; False: frames (and task, scene)
                                 # only, so whatever the thinker knows of the target comes from what it sees
    chat_prompt: str | None = None  # a real Qwen3-VL: this request (the official "Describe this video.") through the
                                    # model's own chat template, frames resized bicubic as its image processor;
                                    # None: the tiny thinker's word-level prompt from the episode's metadata

    @classmethod
    def tiny(cls) -> VideoConfig:
        return cls()

    def tokens_per_group(self) -> int:
        g = self.size // self.patch
        return (g // self.merge) ** 2


def build_prompt(ep: Episode, proprio_indices=None, instruction: bool = True) -> str:
    """The paper's "Describe this video." populated with the clip's metadata, normalised to the vocabulary;
    with `proprio_indices` (the clip's frame indices) also the hand's proprioception over them (`proprio_text`);
    `instruction` False leaves the instruction out (the frames-only thinker)."""
    task = ep.task.replace("_", " ")
    text = f"describe this video. task {task}. scene {ep.environment}."
    if instruction:
        text += f" instruction {ep.instruction}."
    if proprio_indices is not None:
        text += f" {proprio_text(ep, proprio_indices)} ."
    return normalize_text(text)


PROPRIO_JOINTS = (WRIST, "rightThumbTip", "rightIndexFingerTip")


def contacts_felt(held, touches) -> np.ndarray:
    """[T] how many contacts the hand has felt by each frame: grasps (`held` [T] going from −1 to an object)
    plus touches (`touches` [T], the env's running count). A gripper knows when it closes on something and a
    fingertip when it meets a surface; which object it was, only the eyes can tell."""
    held, touches = np.asarray(held, np.int64), np.asarray(touches, np.int64)
    if held.shape != touches.shape or held.ndim != 1:
        raise ValueError(f"held and touches must be two [T] arrays, got {held.shape} and {touches.shape}")
    grasps = (held >= 0) & (np.concatenate([[-1], held[:-1]]) < 0)   # a grasp starts at this frame
    return np.cumsum(grasps) + touches


def proprio_text(ep: Episode, frame_indices) -> str:
    """The hand's proprioception over a clip, read from the frames up to the clip's last.

    One "height aperture contacts" triple per clip frame k, in the vocabulary's numbers: the lowest wrist height
    (world z, whole cm clipped to 0 … 30) over the frames since clip frame k−1 — so a brief dip to touch or
    grasp between two sampled frames is not lost — the thumb-to-index aperture at frame k (cm; the tabletop
    hand: 6 open, 2 shut), and the contacts felt by frame k (`contacts_felt`: grasps and touches so far).
    Example: "hand : 17.0 6.0 0.0 , 7.0 6.0 1.0 , 9.0 2.0 1.0". No frame after the clip's last is read.
    A planner's thinker cannot tell the phase of a task from the clock (it is asked at any moment), and the tiny
    one cannot see a grasp in 2×2 visual tokens; what its own hand did and felt, a robot always knows. Height
    and aperture alone are not enough: a planner's hand dips and closes on nothing, which a demonstration's
    never does. The joint transforms and `extras["held"]`, `extras["touches"]` (the tabletop's record,
    `tkjepa generate`) are read.
    """
    idx = np.asarray(frame_indices, np.int64)
    if idx.ndim != 1 or len(idx) == 0 or idx.min() < 0:
        raise ValueError(f"frame indices must be a non-empty 1-D list of frames, got {frame_indices!r}")
    missing = [j for j in PROPRIO_JOINTS if j not in ep.transforms]
    missing += [f"extras[{k!r}]" for k in ("held", "touches") if k not in ep.extras]
    if missing:
        raise ValueError(f"{ep.path or 'episode'}: the thinker reads proprioception and needs {missing}; this "
                         f"episode has the transforms {sorted(ep.transforms)} and extras {sorted(ep.extras)} "
                         "(tabletop episodes from `tkjepa generate` carry them all)")
    pos = np.stack([ep.transforms[j][:idx.max() + 1, :3, 3] for j in PROPRIO_JOINTS], axis=1)  # [t, 3, 3]
    z, aperture = pos[:, 0, 2], np.linalg.norm(pos[:, 1] - pos[:, 2], axis=-1)
    felt = contacts_felt(ep.extras["held"][:idx.max() + 1], ep.extras["touches"][:idx.max() + 1])
    starts = np.concatenate([[0], idx[:-1] + 1])
    num = lambda v: f"{np.clip(np.round(v), 0, 30):.1f}"  # noqa: E731
    triples = [f"{num(100 * z[min(a, b):b + 1].min())} {num(100 * aperture[b])} {num(felt[b])}"
               for a, b in zip(starts, idx)]
    return "hand : " + " , ".join(triples)


def pack_video(frames: np.ndarray, cfg: VideoConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """frames [T, H, W, 3] uint8 -> (pixel_values_videos [(T/tp)·gh·gw, 3·tp·p·p], video_grid_thw [3]).

    Patch order is Qwen's merge-friendly one: within a temporal group, patches go merge-block by
    merge-block, so each run of merge² consecutive rows becomes one LLM token.
    """
    T = frames.shape[0]
    tp, p, m = cfg.temporal_patch, cfg.patch, cfg.merge
    if T % tp:
        raise ValueError(f"{T} frames do not split into temporal groups of {tp}")
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()  # [T, 3, H, W]
    if x.shape[-1] != cfg.size or x.shape[-2] != cfg.size:
        mode = "bicubic" if cfg.chat_prompt is not None else "bilinear"  # Qwen's image processor resamples bicubic
        x = F.interpolate(x, size=(cfg.size, cfg.size), mode=mode, align_corners=False, antialias=True)
        x = x.clamp(0, 255) if mode == "bicubic" else x
    x = (x / 255.0 - cfg.mean) / cfg.std
    gt, gh, gw = T // tp, cfg.size // p, cfg.size // p
    x = x.reshape(gt, tp, 3, gh // m, m, p, gw // m, m, p)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)  # (gt, gh/m, gw/m, m, m, C, tp, p, p)
    pixels = x.reshape(gt * gh * gw, 3 * tp * p * p)
    return pixels, torch.tensor([gt, gh, gw])


def video_layout(frame_indices, fps: float, cfg: VideoConfig) -> str:
    """Qwen3-VL's video text: per temporal group "<t seconds>" + vision_start + pads + vision_end.

    The timestamp is the mean time of the group's frames, as Qwen3-VL's processor writes it.
    """
    idx = np.asarray(frame_indices, float)
    parts = []
    for g in range(len(idx) // cfg.temporal_patch):
        t = idx[g * cfg.temporal_patch:(g + 1) * cfg.temporal_patch].mean() / fps
        parts.append(f"<{t:.1f} seconds><|vision_start|>" + "<|video_pad|>" * cfg.tokens_per_group()
                     + "<|vision_end|>")
    return "".join(parts)


def chat_text(prompt: str, layout: str) -> str:
    """The user turn with the video before the request, then the assistant turn the thinker continues."""
    return f"<|im_start|> user {layout} {prompt} <|im_end|> <|im_start|> assistant"


VIDEO_PLACEHOLDER = "<|vision_start|><|video_pad|><|vision_end|>"  # what Qwen's chat template writes for a video


def template_text(tokenizer, prompt: str, layout: str) -> str:
    """A real Qwen3-VL's prompt: its own chat template (`apply_chat_template`: the user turn with a video then
    the request, and the generation prompt with whatever the model opens its answer with, e.g. a thinking
    model's "<think>"), the one video placeholder expanded to the clip's layout as Qwen's processor does."""
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": prompt}]}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if text.count(VIDEO_PLACEHOLDER) != 1:
        raise ValueError(f"the thinker's chat template wrote {text.count(VIDEO_PLACEHOLDER)} video placeholders "
                         f"({VIDEO_PLACEHOLDER}) for one video; is it a Qwen3-VL template?")
    return text.replace(VIDEO_PLACEHOLDER, layout)


def thinker_prompt(ep: Episode, frame_indices, cfg: VideoConfig) -> str:
    """The request the thinker reads for this clip: a real model's fixed one, or the tiny one's from metadata."""
    if cfg.chat_prompt is not None:
        return cfg.chat_prompt
    return build_prompt(ep, frame_indices if cfg.proprio else None, instruction=cfg.instruction)


def encode(tokenizer, ep: Episode, frame_indices, cfg: VideoConfig, target: str | None = None,
           stamps=None) -> dict:
    """One episode -> unpadded pieces: ids (prompt), target ids, pixels, grid (see `collate`). `stamps`: frame
    indices to write the timestamps from instead of `frame_indices` (training augmentation: a thinker that
    must not read the phase of a task off the clock)."""
    stamps = frame_indices if stamps is None else stamps
    prompt, layout = thinker_prompt(ep, frame_indices, cfg), video_layout(stamps, ep.fps, cfg)
    if cfg.chat_prompt is not None:
        ids = tokenizer(template_text(tokenizer, prompt, layout), add_special_tokens=False)["input_ids"]
    else:
        ids = tokenizer(chat_text(prompt, layout))["input_ids"]
    tgt = tokenizer(normalize_text(target) + " <|im_end|>")["input_ids"] if target is not None else []
    pixels, grid = pack_video(ep.frames[np.asarray(frame_indices)], cfg)
    return {"ids": ids, "target": tgt, "pixels": pixels, "grid": grid}


def collate(tokenizer, items: list[dict]) -> dict[str, torch.Tensor]:
    """Encoded episodes -> Qwen3VLForConditionalGeneration kwargs, left-padded.

    Returns input_ids / attention_mask / mm_token_type_ids [B, L], pixel_values_videos [B·N_vis, 3·tp·p·p],
    video_grid_thw [B, 3]; when the items carry targets (training), the target + <|im_end|> follows the
    prompt and `labels` [B, L] is -100 everywhere except on those target tokens.
    """
    video_id = tokenizer.convert_tokens_to_ids("<|video_pad|>")
    B, L = len(items), max(len(it["ids"]) + len(it["target"]) for it in items)
    input_ids = torch.full((B, L), tokenizer.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((B, L), dtype=torch.long)
    labels = torch.full((B, L), -100, dtype=torch.long)
    for i, it in enumerate(items):
        seq = torch.tensor(it["ids"] + it["target"])
        input_ids[i, L - len(seq):] = seq
        attention_mask[i, L - len(seq):] = 1
        if it["target"]:
            labels[i, L - len(it["target"]):] = torch.tensor(it["target"])
    out = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "mm_token_type_ids": (input_ids == video_id).long() * VIDEO,
        "pixel_values_videos": torch.cat([it["pixels"] for it in items]),
        "video_grid_thw": torch.stack([it["grid"] for it in items]),
    }
    if any(it["target"] for it in items):
        out["labels"] = labels
    return out


def build_inputs(tokenizer, episodes: list[Episode], frame_indices: list, cfg: VideoConfig,
                 targets: list[str] | None = None) -> dict[str, torch.Tensor]:
    """A batch of B episodes (and their thinker clip indices) -> model kwargs; see `collate`."""
    targets = targets if targets is not None else [None] * len(episodes)
    return collate(tokenizer, [encode(tokenizer, ep, idx, cfg, t)
                               for ep, idx, t in zip(episodes, frame_indices, targets)])
