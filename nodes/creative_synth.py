"""CreativeSynth nodes: IP-Adapter files, decoupled image prompts and ArtBN statistics alignment."""
from __future__ import annotations

import logging
import os

import folder_paths
import torch
from comfy_api.latest import io

from .common import search_aliases

from ..attention.art_bn import ArtBNAttentionControl, ArtBNNormControl
from ..attention.core.errors import AtelierError
from ..attention.dispatch import dispatcher
from ..attention.ip_adapter import ImagePromptControl, map_adapter_layers
from ..attention.ip_adapter_file import load_adapter
from .common import CATEGORY, layers_input, make_layers, make_window, model_input, model_output, window_inputs
from .input_guard import guarded

log = logging.getLogger("attention_atelier")

LOADER = "AtelierIPAdapterLoader"
IMAGE_PROMPT = "AtelierImagePrompt"
ART_BN = "AtelierArtBN"
FOLDER = "ipadapter"
IPAdapter = io.Custom("ATELIER_IPADAPTER")
APPLY_TO = ("both", "attention", "group_norm")
CLIP_WIDTHS = ("ViT-L/14: image_embeds 768, hidden states 1024; ViT-H/14: 1024, 1280; "
               "ViT-bigG/14: 1280, 1664")


def register_ipadapter_folder():
    """models/ipadapter, unless ComfyUI or another pack (e.g. IPAdapter_plus) already registered it."""
    if FOLDER not in folder_paths.folder_names_and_paths:
        folder_paths.folder_names_and_paths[FOLDER] = ([os.path.join(folder_paths.models_dir, FOLDER)],
                                                       {".safetensors"})


register_ipadapter_folder()


def adapter_files() -> list[str]:
    return [name for name in folder_paths.get_filename_list(FOLDER) if name.lower().endswith(".safetensors")]


class AtelierIPAdapterLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=LOADER,
            **search_aliases("Atelier IP-Adapter loader", "Atelier load IPAdapter"),
            display_name="Load IP-Adapter (Atelier)",
            category=f"{CATEGORY}/creative_synth",
            description=(
                "Loads a standard IP-Adapter .safetensors from models/ipadapter for AtelierImagePrompt. "
                "Reads SD1.5 and SDXL files of the base kind (linear image projection: 4 tokens from "
                "CLIP image_embeds) and the plus kind (Resampler: 16 tokens from the penultimate CLIP "
                "hidden states); the kind and model family are detected from the keys. FaceID, full-face "
                "and other files are refused with a message naming what they contain."),
            inputs=[io.Combo.Input("ipadapter_name", options=adapter_files(),
                                   tooltip="An IP-Adapter file in models/ipadapter (.safetensors only).")],
            outputs=[IPAdapter.Output(display_name="ipadapter",
                                      tooltip="The loaded adapter: image projection + per-layer image "
                                              "key/value projections. Wire it to AtelierImagePrompt.")],
        )

    @classmethod
    @guarded
    def execute(cls, ipadapter_name) -> io.NodeOutput:
        path = folder_paths.get_full_path(FOLDER, ipadapter_name)
        if path is None:
            raise AtelierError(LOADER, "ipadapter_name", f"'{ipadapter_name}' is not in models/{FOLDER}.",
                               f"put the file in models/{FOLDER} and refresh the node list (press R).")
        adapter = load_adapter(path, ipadapter_name, LOADER)
        log.info("loaded %s: %s", ipadapter_name, adapter.describe())
        return io.NodeOutput(adapter)


def zero_image_features(adapter, clip_vision, node: str):
    """The CLIP features of an all-zero pixel_values image (after normalisation, before the encoder),
    which the original IP-Adapter plus projects for its unconditional tokens."""
    import comfy.model_management
    comfy.model_management.load_model_gpu(clip_vision.patcher)
    size = getattr(clip_vision, "image_size", 224)
    pixel_values = torch.zeros(1, 3, size, size, device=clip_vision.load_device)
    with torch.no_grad():
        out = clip_vision.model(pixel_values=pixel_values, intermediate_output=-2)
    features = {"last_hidden_state": out[0], "penultimate_hidden_states": out[1], "image_embeds": out[2]}
    found = features.get(adapter.feature)
    if found is None or found.shape[-1] != adapter.feature_dim:
        width = None if found is None else found.shape[-1]
        raise AtelierError(node, "clip_vision", f"this CLIP vision model gives {adapter.feature} of width {width} "
                           f"but '{adapter.name}' expects {adapter.feature_dim} ({CLIP_WIDTHS}).",
                           "load the CLIP vision model this IP-Adapter was trained with (the one you encode "
                           "the image with).")
    return found.float().cpu()


def clip_features(adapter, clip_vision_output, node: str):
    features = getattr(clip_vision_output, adapter.feature, None)
    if features is None:
        raise AtelierError(node, "clip_vision_output", f"it has no {adapter.feature}, which this {adapter.variant} "
                           "adapter reads.", "encode the image with core CLIPVisionEncode from a CLIP vision model.")
    if features.shape[-1] != adapter.feature_dim:
        raise AtelierError(node, "clip_vision_output",
                           f"its {adapter.feature} have width {features.shape[-1]} but '{adapter.name}' expects "
                           f"{adapter.feature_dim} ({CLIP_WIDTHS}).",
                           "load the CLIP vision model this IP-Adapter was trained with.")
    return features


class AtelierImagePrompt(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=IMAGE_PROMPT,
            **search_aliases("Atelier image prompt", "Atelier IP-Adapter", "Atelier CreativeSynth"),
            display_name="Image Prompt (decoupled cross-attention)",
            category=f"{CATEGORY}/creative_synth",
            description=(
                "IP-Adapter's decoupled cross-attention, CreativeSynth's image branch: at each selected "
                "cross-attention layer Z = Attn(Q, K_text, V_text) + weight * Attn(Q, K_img, V_img), "
                "where K_img/V_img are the adapter's to_k_ip/to_v_ip applied to the image tokens "
                "(the adapter's projection of the CLIP vision output). Uncond rows use the adapter's "
                "negative: the projection of all-zero CLIP features (plus adapters with clip_vision wired: of the "
                "CLIP hidden states of an all-zero pixel image, as the original). One image conditions every row; N "
                "images with N latent rows give row i image i; otherwise all images' tokens are joined. "
                "Composes with the pack's other nodes and with other packs' attention patches. In "
                "reference-image mode the artwork row gets no image branch."),
            inputs=[
                model_input(ImagePromptControl),
                IPAdapter.Input("ipadapter", tooltip="From AtelierIPAdapterLoader; must match the model family "
                                                     "(SD1.5 or SDXL)."),
                io.ClipVisionOutput.Input("clip_vision_output",
                                          tooltip="Core CLIPVisionEncode of the content image, with the CLIP "
                                                  "vision model the adapter was trained with."),
                io.Float.Input("weight", default=1.0, min=-1.0, max=5.0, step=0.01,
                               tooltip="Scale of the image branch; 0 leaves the model exactly as it was."),
                layers_input(),
                *window_inputs(),
                io.ClipVision.Input("clip_vision", optional=True,
                                    tooltip="Optional, plus adapters: the CLIP vision model of the encode. Wired: "
                                            "the negative image tokens are the original IP-Adapter's (the "
                                            "Resampler of the CLIP hidden states of an all-zero pixel image). "
                                            "Not wired: the Resampler of all-zero hidden states (the pack's "
                                            "earlier behaviour). Base adapters use zero image_embeds either "
                                            "way, as the original does."),
            ],
            outputs=[model_output()],
        )

    @classmethod
    @guarded
    def execute(cls, model, ipadapter, clip_vision_output, weight, layers, start_percent,
                end_percent, clip_vision=None) -> io.NodeOutput:
        window = make_window(IMAGE_PROMPT, start_percent, end_percent)
        selection = make_layers(IMAGE_PROMPT, layers, model=model)
        diffusion_model = dispatcher.require_unet(model, IMAGE_PROMPT)
        layer_index = map_adapter_layers(ipadapter, dispatcher.attention_modules(diffusion_model, "attn2"),
                                         IMAGE_PROMPT)
        features = clip_features(ipadapter, clip_vision_output, IMAGE_PROMPT)
        if weight == 0.0:
            return io.NodeOutput(dispatcher.attach(model, node=IMAGE_PROMPT))
        zero_features = None
        if clip_vision is not None and ipadapter.variant == "plus":
            zero_features = zero_image_features(ipadapter, clip_vision, IMAGE_PROMPT)
        control = ImagePromptControl(adapter=ipadapter, cond_tokens=ipadapter.image_tokens(features),
                                     uncond_tokens=ipadapter.negative_tokens(features, zero_features),
                                     layer_index=layer_index,
                                     weight=weight, layers=selection, window=window)
        return io.NodeOutput(dispatcher.attach(model, control, node=IMAGE_PROMPT))


class AtelierArtBN(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=ART_BN,
            **search_aliases("Atelier ArtBN", "Atelier artwork normalization"),
            display_name="ArtBN (artwork statistics)",
            category=f"{CATEGORY}/creative_synth",
            description=(
                "CreativeSynth's ArtBN: generated rows take the per-channel statistics of the reference "
                "row (row 0 of every chunk: the artwork in AtelierStyleAligned's reference mode, else the "
                "first image of the batch). For features X of a generated row and X_a of the reference: "
                "X <- X + strength * (sigma(X_a) (X - mu(X)) / sigma(X) + mu(X_a) - X), mu/sigma per "
                "channel. 'attention': queries and keys of self-attention in the selected layers (stats "
                "over tokens); 'group_norm': the input of every GroupNorm of the UNet (stats over "
                "height x width); 'both'. The reference row never changes; strength 0 changes nothing. "
                "Works before or after AtelierStyleAligned in the model chain."),
            inputs=[
                model_input(ArtBNAttentionControl, ArtBNNormControl),
                io.Float.Input("strength", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="0 = unchanged, 1 = exactly the reference's channel mean and variance."),
                io.Combo.Input("apply_to", options=list(APPLY_TO), default="both",
                               tooltip="Where statistics are aligned: self-attention queries/keys, GroupNorm "
                                       "inputs (ResBlocks and transformer blocks), or both."),
                layers_input(),
                *window_inputs(),
            ],
            outputs=[model_output()],
        )

    @classmethod
    @guarded
    def execute(cls, model, strength, apply_to, layers, start_percent, end_percent) -> io.NodeOutput:
        window = make_window(ART_BN, start_percent, end_percent)
        selection = make_layers(ART_BN, layers, model=model)
        if apply_to not in APPLY_TO:
            raise AtelierError(ART_BN, "apply_to", f"'{apply_to}' is not one of {', '.join(APPLY_TO)}.",
                               "pick one from the list.")
        controls = []
        if strength != 0.0 and apply_to in ("both", "attention"):
            controls.append(ArtBNAttentionControl(strength=strength, layers=selection, window=window))
        if strength != 0.0 and apply_to in ("both", "group_norm"):
            controls.append(ArtBNNormControl(strength=strength, window=window))
        return io.NodeOutput(dispatcher.attach(model, *controls, node=ART_BN))


NODES = [AtelierIPAdapterLoader, AtelierImagePrompt, AtelierArtBN]
CONTROLS = (ArtBNAttentionControl, ArtBNNormControl, ImagePromptControl)  # what its nodes make (README support table)
