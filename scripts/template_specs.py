"""What scripts/build_templates.py writes into each UI template: the public model files (how a user
gets them), the groups each node sits in (one list of groups per column, left to right) and the note."""
from __future__ import annotations

HF = "https://huggingface.co/"
MODELS = {  # file name as the loader shows it -> where ComfyUI's missing-models dialog downloads it
    "v1-5-pruned-emaonly-fp16.safetensors": {
        "url": HF + "Comfy-Org/stable-diffusion-v1-5-archive/resolve/main/v1-5-pruned-emaonly-fp16.safetensors",
        "directory": "checkpoints"},
    "sd_xl_base_1.0.safetensors": {
        "url": HF + "stabilityai/stable-diffusion-xl-base-1.0/resolve/main/sd_xl_base_1.0.safetensors",
        "directory": "checkpoints"},
    "lcm-lora-sdv1-5.safetensors": {
        "url": HF + "latent-consistency/lcm-lora-sdv1-5/resolve/main/pytorch_lora_weights.safetensors",
        "directory": "loras"},
    "clip_vision_h.safetensors": {
        "url": HF + "Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files/clip_vision/clip_vision_h.safetensors",
        "directory": "clip_vision"},
    "ip-adapter_sd15.safetensors": {
        "url": HF + "h94/IP-Adapter/resolve/main/models/ip-adapter_sd15.safetensors", "directory": "ipadapter"},
    "ip-adapter_sdxl_vit-h.safetensors": {
        "url": HF + "h94/IP-Adapter/resolve/main/sdxl_models/ip-adapter_sdxl_vit-h.safetensors",
        "directory": "ipadapter"},
    "control_v11f1e_sd15_tile_fp16.safetensors": {
        "url": HF + "comfyanonymous/ControlNet-v1-1_fp16_safetensors/resolve/main/control_v11f1e_sd15_tile_fp16.safetensors",
        "directory": "controlnet"},
    "flux1-dev.safetensors": {  # Comfy-Org's public copy of black-forest-labs/FLUX.1-dev (non-commercial licence)
        "url": HF + "Comfy-Org/flux1-dev/resolve/main/flux1-dev.safetensors", "directory": "diffusion_models"},
    "clip_l.safetensors": {
        "url": HF + "comfyanonymous/flux_text_encoders/resolve/main/clip_l.safetensors", "directory": "text_encoders"},
    "t5xxl_fp8_e4m3fn.safetensors": {
        "url": HF + "comfyanonymous/flux_text_encoders/resolve/main/t5xxl_fp8_e4m3fn.safetensors",
        "directory": "text_encoders"},
    "z_image_turbo_bf16.safetensors": {
        "url": HF + "Comfy-Org/z_image_turbo/resolve/main/split_files/diffusion_models/z_image_turbo_bf16.safetensors",
        "directory": "diffusion_models"},
    "qwen_3_4b.safetensors": {
        "url": HF + "Comfy-Org/z_image_turbo/resolve/main/split_files/text_encoders/qwen_3_4b.safetensors",
        "directory": "text_encoders"},
    "ae.safetensors": {
        "url": HF + "Comfy-Org/Lumina_Image_2.0_Repackaged/resolve/main/split_files/vae/ae.safetensors",
        "directory": "vae"},
    # as ComfyUI's own Qwen-Image template (Comfy-Org/workflow_templates templates/image_qwen_image.json)
    "qwen_image_fp8_e4m3fn.safetensors": {
        "url": HF + "Comfy-Org/Qwen-Image_ComfyUI/resolve/main/split_files/diffusion_models/qwen_image_fp8_e4m3fn.safetensors",
        "directory": "diffusion_models"},
    "qwen_2.5_vl_7b_fp8_scaled.safetensors": {
        "url": HF + "Comfy-Org/Qwen-Image_ComfyUI/resolve/main/split_files/text_encoders/qwen_2.5_vl_7b_fp8_scaled.safetensors",
        "directory": "text_encoders"},
    "qwen_image_vae.safetensors": {
        "url": HF + "Comfy-Org/Qwen-Image_ComfyUI/resolve/main/split_files/vae/qwen_image_vae.safetensors",
        "directory": "vae"},
    # as ComfyUI's own Krea 2 Turbo template (templates/image_krea2_turbo_t2i.json)
    "krea2_turbo_fp8_scaled.safetensors": {
        "url": HF + "Comfy-Org/Krea-2/resolve/main/diffusion_models/krea2_turbo_fp8_scaled.safetensors",
        "directory": "diffusion_models"},
    "qwen3vl_4b_fp8_scaled.safetensors": {
        "url": HF + "Comfy-Org/Krea-2/resolve/main/text_encoders/qwen3vl_4b_fp8_scaled.safetensors",
        "directory": "text_encoders"},
    # as ComfyUI's own FLUX.2 klein template (templates/image_flux2_klein_text_to_image.json)
    "flux-2-klein-4b.safetensors": {
        "url": HF + "Comfy-Org/flux2-klein/resolve/main/split_files/diffusion_models/flux-2-klein-4b.safetensors",
        "directory": "diffusion_models"},
    "flux2-vae.safetensors": {
        "url": HF + "Comfy-Org/flux2-dev/resolve/main/split_files/vae/flux2-vae.safetensors", "directory": "vae"},
}
# a template's own download of a file another template names too (its SPECS entry's "models")
KLEIN_QWEN3 = {"qwen_3_4b.safetensors": {
    "url": HF + "Comfy-Org/flux2-klein/resolve/main/split_files/text_encoders/qwen_3_4b.safetensors",
    "directory": "text_encoders"}}
KREA2_VAE = {"qwen_image_vae.safetensors": {  # Krea 2's template downloads the Wan 2.1 VAE from its own repository
    "url": HF + "Comfy-Org/Krea-2/resolve/main/vae/qwen_image_vae.safetensors", "directory": "vae"}}

SDXL_MODEL = "- **sd_xl_base_1.0.safetensors** in **models/checkpoints**"
SD15_MODEL = "- **v1-5-pruned-emaonly-fp16.safetensors** in **models/checkpoints**"
MISSING = "ComfyUI offers the download of a missing file when the workflow opens."
FLUX_MODELS = """- **flux1-dev.safetensors** in **models/diffusion_models** (FLUX.1 dev; any Flux.1 dev/schnell fine-tune
  works; on a 12-16 GB card set *Load Diffusion Model* **weight_dtype** to fp8_e4m3fn)
- **clip_l.safetensors** and **t5xxl_fp8_e4m3fn.safetensors** in **models/text_encoders**
- **ae.safetensors** in **models/vae**"""
FLUX_SAMPLING = """Flux dev is guidance-distilled: the strength is *Flux guidance* (3.5), KSampler stays at cfg 1
(the negative is unused), euler / simple, about 20 steps. For FLUX.1 schnell: 4 steps, no FluxGuidance
needed."""

Z_IMAGE_MODELS = """- **z_image_turbo_bf16.safetensors** in **models/diffusion_models** (Z-Image Turbo)
- **qwen_3_4b.safetensors** in **models/text_encoders** (Qwen3-4B, loaded with type lumina2)
- **ae.safetensors** in **models/vae** (the Flux.1 autoencoder)"""

QWEN_IMAGE_MODELS = """- **qwen_image_fp8_e4m3fn.safetensors** in **models/diffusion_models** (Qwen-Image)
- **qwen_2.5_vl_7b_fp8_scaled.safetensors** in **models/text_encoders** (Qwen2.5-VL 7B, loaded with type qwen_image)
- **qwen_image_vae.safetensors** in **models/vae**"""

KLEIN_MODELS = """- **flux-2-klein-4b.safetensors** in **models/diffusion_models** (FLUX.2 klein 4B, distilled)
- **qwen_3_4b.safetensors** in **models/text_encoders** (Qwen3-4B, loaded with type flux2)
- **flux2-vae.safetensors** in **models/vae** (the FLUX.2 autoencoder)"""

KREA2_MODELS = """- **krea2_turbo_fp8_scaled.safetensors** in **models/diffusion_models** (Krea 2 Turbo)
- **qwen3vl_4b_fp8_scaled.safetensors** in **models/text_encoders** (Qwen3-VL 4B, loaded with type krea2)
- **qwen_image_vae.safetensors** in **models/vae** (the Wan 2.1 autoencoder)"""

SPECS = {
    "aesthetic_mix": {
        "note": f"""
## Aesthetic mix (SDXL)
One prompt is split into **content** (what is in the picture) and **aesthetic** words (light, colour,
medium). The content is the prompt; the aesthetic words are mixed into the attention *values* only, so
they change the look without moving objects.

**Change first:** the prompt in *One prompt -> content + aesthetic*; **strength** of the mix (0.3-0.8).

**Models** ({MISSING})
{SDXL_MODEL}

For SD1.5 load **v1-5-pruned-emaonly-fp16.safetensors** and set the latent to 512x512.
""",
        "columns": [
            {"groups": [("Model", ["1"])]},
            {"width": 380, "groups": [("Prompt (change first)", ["2", "3", "4"])]},
            {"groups": [("Atelier: aesthetic mix", ["5"]), ("Image size", ["6"])]},
            {"groups": [("Sample and save", ["7", "8", "9"])]},
        ],
    },
    "style_aligned_set": {
        "note": f"""
## StyleAligned set (SDXL)
One image per line of *Batch Prompts*, all in one style: every image shares attention with the first
one (row 0 is the style reference) and its queries/keys are AdaIN-normalised to it.

**Change first:** the prompts (one per line) and the **style** words appended to every line.

**Must match:** nothing; the batch size follows the number of lines.

**Models** ({MISSING})
{SDXL_MODEL}
""",
        "columns": [
            {"groups": [("Model", ["1"])]},
            {"width": 380, "groups": [("Prompts (change first)", ["3", "4"]), ("Image size", ["5"])]},
            {"groups": [("Atelier: StyleAligned", ["2"])]},
            {"groups": [("Sample and save", ["6", "7", "8"])]},
        ],
    },
    "style_from_image": {
        "note": f"""
## Style from your image (SDXL)
Your picture is DDIM-inverted once; StyleAligned then shares attention with its trajectory, so every
prompt of *Batch Prompts* comes out in that picture's style. The inversion is cached: change prompts or
seed and only the sampler runs again.

**Change first:** load your picture in *Load your style reference*; describe it in *What the
reference shows*; write the prompts (one image per line).

**Must match:** *Empty Latent* width/height = *Scale reference* width/height (another size is refused);
the same checkpoint for inversion and sampling.

**Models** ({MISSING})
{SDXL_MODEL}
""",
        "columns": [
            {"groups": [("Model", ["1"])]},
            {"width": 380, "groups": [("Your reference (change first)", ["2", "13", "3", "4"])]},
            {"width": 380, "groups": [("Atelier: invert + share style", ["5", "6"])]},
            {"width": 380, "groups": [("Prompts and size", ["7", "8", "9"])]},
            {"groups": [("Sample and save", ["10", "11", "12"])]},
        ],
    },
    "regional_layout": {
        "note": f"""
## Regional layout (SDXL)
Boxes put each local prompt in its place: draw them in the *Regions* editor (drag on empty space to
add a box, drag a box to move it, its corner to resize, Delete removes the selected box). Each box has
a weight that can change over the steps (curve plot under the fields). *Region: cloud* shows the same
thing as a single node with a step curve, chained into the editor's regions.

**Change first:** the full prompt, the boxes and their prompts.

**Must match:** the editor's aspect (**width**/**height** in its JSON) = the latent's aspect; the button
*Use latent size* copies it from a connected latent.

**Models** ({MISSING})
{SDXL_MODEL}
""",
        "columns": [
            {"groups": [("Model", ["1"])]},
            {"width": 380, "groups": [("Prompts (change first)", ["2", "3", "4"]), ("Image size", ["8"])]},
            {"width": 420, "groups": [("Atelier: regions", ["5", "6", "7"])]},
            {"groups": [("Sample and save", ["9", "10", "11"])]},
        ],
    },
    "invert_and_reconstruct": {
        "note": f"""
## DDIM inversion and reconstruction (SD1.5)
Your picture is inverted to its starting noise x_T, then sampled back with noise off: the picture
comes back. Use it to check an inversion before editing with it.

**Change first:** load your picture in *Load your image*; describe it in *What the image shows*.

**Must match** between *Invert* and *Regenerate*: **steps**, **scheduler** and **cfg**; Regenerate keeps
**add_noise** disabled and sampler **ddim**.

**Models** ({MISSING})
{SD15_MODEL}
""",
        "columns": [
            {"groups": [("Model", ["1"])]},
            {"width": 380, "groups": [("Your image (change first)", ["2", "10", "3", "4", "5"])]},
            {"width": 380, "groups": [("Atelier: invert + regenerate", ["6", "7"])]},
            {"groups": [("Decode and save", ["8", "9"])]},
        ],
    },
    "artistic_synthesis": {
        "note": f"""
## Artistic synthesis (SDXL, CreativeSynth)
The content of one image painted in the style of an artwork: the artwork is inverted and shared as the
attention reference (StyleAligned + ArtBN); the content image enters as an image prompt (IP-Adapter).

**Change first:** load your artwork and your content image; describe the artwork; write the prompt.

**Must match:** *Empty Latent* size = *Scale artwork* size; IP-Adapter and CLIP vision from the same
family (SDXL ViT-H adapter with the ViT-H encoder).

**Models** ({MISSING})
{SDXL_MODEL}
- **ip-adapter_sdxl_vit-h.safetensors** in **models/ipadapter**
- **clip_vision_h.safetensors** in **models/clip_vision**
""",
        "note_height": 470,
        "columns": [
            {"groups": [("Model", ["1"])]},
            {"width": 380, "groups": [("Your artwork (change first)", ["2", "19", "3", "4"])]},
            {"width": 380, "groups": [("Content image (change first)", ["9", "8", "10", "11"])]},
            {"groups": [("Atelier: style + content", ["5", "6", "7", "12"])]},
            {"width": 380, "groups": [("Prompt and size", ["13", "14", "15"])]},
            {"groups": [("Sample and save", ["16", "17", "18"])]},
        ],
    },
    "artistic_editing": {
        "note": f"""
## Artistic editing (SDXL, CreativeSynth)
An artwork edited by text: it is inverted to x_T, then regenerated from x_T with the edit prompt while
sharing attention with its own trajectory (StyleAligned) and ArtBN keeps its colour statistics.

**Change first:** load your artwork; describe it (source prompt); write the edit prompt.

**Must match** between *Invert* and *Regenerate*: **steps** and **scheduler**; Regenerate keeps
**add_noise** disabled and sampler **ddim**. Raise Regenerate's cfg for a stronger edit.

**Models** ({MISSING})
{SDXL_MODEL}
""",
        "columns": [
            {"groups": [("Model", ["1"])]},
            {"width": 380, "groups": [("Your artwork (change first)", ["2", "13", "3", "4"])]},
            {"width": 380, "groups": [("Atelier: invert, ArtBN, style", ["5", "6", "7"])]},
            {"width": 380, "groups": [("Edit prompt (change first)", ["8", "9"])]},
            {"groups": [("Regenerate and save", ["10", "11", "12"])]},
        ],
    },
    "all_in_one": {
        "note": f"""
## Everything in one graph (SD1.5)
A LoRA, a ControlNet, StyleAligned from your reference picture, an image prompt, regional prompts and
the aesthetic mix all act in one KSampler run.

**Change first:** load your style reference and your content image; the prompt; the boxes.

**Must match:** *Invert reference* steps = KSampler steps; *Empty Latent* = *Scale reference* size.
The LCM-LoRA wants sampler **lcm**, 8 steps, cfg 1-2; with another LoRA use euler, 25 steps, cfg 6 (and
25 inversion steps).

**Models** ({MISSING})
{SD15_MODEL}
- **lcm-lora-sdv1-5.safetensors** in **models/loras** (the LCM-LoRA's **pytorch_lora_weights.safetensors**,
  renamed)
- **control_v11f1e_sd15_tile_fp16.safetensors** in **models/controlnet**
- **ip-adapter_sd15.safetensors** in **models/ipadapter**
- **clip_vision_h.safetensors** in **models/clip_vision**
""",
        "note_height": 560,
        "columns": [
            {"groups": [("Model and LoRA", ["1", "2"])]},
            {"width": 380, "groups": [("Prompt (change first)", ["3", "4", "5"])]},
            {"width": 380, "groups": [("Style reference (change first)", ["6", "25", "7", "8", "9"])]},
            {"width": 380, "groups": [("Content image (change first)", ["12", "11", "13", "14", "19"])]},
            {"width": 420, "groups": [("Atelier: style, image, regions", ["10", "15", "16"])]},
            {"groups": [("Atelier: regions, aesthetic", ["17", "18"]), ("ControlNet", ["20"])]},
            {"groups": [("Sample and save", ["21", "22", "23", "24"])]},
        ],
    },
    "flux_style_aligned_set": {
        "note": f"""
## StyleAligned set (FLUX.1)
One image per line of *Batch Prompts*, all in one style: in every joint attention block the image tokens
of each image also attend to the first image's image tokens (row 0 is the style reference), after
AdaIN gives their queries/keys row 0's statistics. Text tokens are untouched.

**Change first:** the prompts (one per line) and the **style** words appended to every line.

{FLUX_SAMPLING}

**Not on Flux:** **share_group_norm** (Flux has no GroupNorm; refused with a message).

**Models** ({MISSING})
{FLUX_MODELS}
""",
        "note_height": 520,
        "columns": [
            {"groups": [("Models", ["1", "2", "3"])]},
            {"width": 380, "groups": [("Prompts (change first)", ["5", "6", "7"]), ("Image size", ["8"])]},
            {"groups": [("Atelier: StyleAligned", ["4"])]},
            {"groups": [("Sample and save", ["9", "10", "11"])]},
        ],
    },
    "flux_regional_layout": {
        "note": f"""
## Regional layout (FLUX.1)
Boxes put each local prompt in its place: in Flux's joint attention the image tokens inside a box also
attend to that box's prompt tokens, with the box's weight curve over the steps. Draw the boxes in the
*Regions* editor (drag on empty space to add, drag to move, the corner to resize, Delete removes).
*Region: cloud* is the same as one node with a step curve.

**Change first:** the full prompt, the boxes and their prompts.

**Must match:** the editor's aspect (**width**/**height** in its JSON) = the latent's aspect.

{FLUX_SAMPLING}

**Models** ({MISSING})
{FLUX_MODELS}
""",
        "note_height": 520,
        "columns": [
            {"groups": [("Models", ["1", "2", "3"])]},
            {"width": 380, "groups": [("Prompts (change first)", ["4", "5", "6", "7"]), ("Image size", ["11"])]},
            {"width": 420, "groups": [("Atelier: regions", ["8", "9", "10"])]},
            {"groups": [("Sample and save", ["12", "13", "14"])]},
        ],
    },
    "z_image_style_aligned_set": {
        "note": f"""
## StyleAligned set (Z-Image Turbo)
One image per line of *Batch Prompts*, all in one style: in every main joint attention layer the image
tokens of each image also attend to the first image's image tokens (row 0 is the style reference), after
AdaIN gives their queries/keys row 0's statistics. Caption tokens and the refiner blocks are untouched.

**Change first:** the prompts (one per line) and the **style** words appended to every line.

Z-Image Turbo is distilled: 8 steps, cfg 1 (the negative is unused), res_multistep / simple,
ModelSamplingAuraFlow shift 3, as ComfyUI's own Z-Image Turbo template.

**Not on Z-Image:** **share_group_norm** (a transformer has no GroupNorm; refused with a message).

**Models** ({MISSING})
{Z_IMAGE_MODELS}
""",
        "note_height": 520,
        "columns": [
            {"groups": [("Models", ["1", "2", "3", "4"])]},
            {"width": 380, "groups": [("Prompts (change first)", ["6", "7"]), ("Image size", ["8"])]},
            {"groups": [("Atelier: StyleAligned", ["5"])]},
            {"groups": [("Sample and save", ["9", "10", "11"])]},
        ],
    },
    "qwen_image_regional_layout": {
        "note": f"""
## Regional layout (Qwen-Image)
Boxes put each local prompt in its place: in Qwen-Image's joint attention the image tokens inside a box
also attend to that box's prompt tokens, with the box's weight curve over the steps. Draw the boxes in
the *Regions* editor (drag on empty space to add, drag to move, the corner to resize, Delete removes).
*Region: cloud* is the same as one node with a step curve.

**Change first:** the full prompt, the boxes and their prompts.

**Must match:** the editor's aspect (**width**/**height** in its JSON) = the latent's aspect.

Sampling as ComfyUI's own Qwen-Image template: 20 steps, cfg 4 with a negative prompt, euler / simple,
ModelSamplingAuraFlow shift 3.5, 1328 x 1328.

**Models** ({MISSING})
{QWEN_IMAGE_MODELS}
""",
        "note_height": 560,
        "columns": [
            {"groups": [("Models", ["1", "2", "3", "4"])]},
            {"width": 380, "groups": [("Prompts (change first)", ["5", "6", "7"]), ("Image size", ["11"])]},
            {"width": 420, "groups": [("Atelier: regions", ["8", "9", "10"])]},
            {"groups": [("Sample and save", ["12", "13", "14"])]},
        ],
    },
    "krea2_regional_layout": {
        "note": f"""
## Regional layout (Krea 2 Turbo)
Four boxes put each local prompt in its place: in Krea 2's single-stream attention the image tokens inside a
box also attend to that box's prompt tokens, with the box's weight curve over the steps (cosine, linear, step
and a list of one weight per step here). Draw the boxes in the *Regions* editor (drag on empty space to add,
drag to move, the corner to resize, Delete removes). Needs ComfyUI with Krea 2 (0.24 or later).

**Change first:** the full prompt, the boxes and their prompts.

**Must match:** the editor's aspect (**width**/**height** in its JSON) = the latent's aspect; the box prompts
are encoded by the same text encoder (type krea2).

Sampling as ComfyUI's own Krea 2 Turbo template: 8 steps, cfg 1 (the negative is unused), euler / simple,
1024 x 1024.

**Models** ({MISSING})
{KREA2_MODELS}
""",
        "note_height": 520,
        "models": KREA2_VAE,
        "columns": [
            {"groups": [("Models", ["1", "2", "3"])]},
            {"width": 380, "groups": [("Prompts (change first)", ["4", "5"]), ("Image size", ["8"])]},
            {"width": 420, "groups": [("Atelier: regions", ["6", "7"])]},
            {"groups": [("Sample and save", ["9", "10", "11"])]},
        ],
    },
    "flux2_klein_style_aligned_set": {
        "note": f"""
## StyleAligned set (FLUX.2 klein)
One image per line of *Batch Prompts*, all in one style: in every joint attention block the image tokens
of each image also attend to the first image's image tokens (row 0 is the style reference), after AdaIN
gives their queries/keys row 0's statistics. Text tokens are untouched. Needs ComfyUI with FLUX.2 klein.

**Change first:** the prompts (one per line) and the **style** words appended to every line.

**Must match:** *Flux2Scheduler*'s **width**/**height** = the latent's (the schedule's shift follows the size).

Sampling as ComfyUI's own FLUX.2 klein template (distilled 4B): 4 steps, CFGGuider cfg 1 (the negative
is unused), euler, Flux2Scheduler. For klein base 4B: 20 steps, cfg 5.

**Not on FLUX.2:** **share_group_norm** (a transformer has no GroupNorm; refused with a message).

**Models** ({MISSING})
{KLEIN_MODELS}
""",
        "note_height": 560,
        "models": KLEIN_QWEN3,
        "columns": [
            {"groups": [("Models", ["1", "2", "3"])]},
            {"width": 380, "groups": [("Prompts (change first)", ["5", "6"]), ("Image size", ["7"])]},
            {"groups": [("Atelier: StyleAligned", ["4"])]},
            {"groups": [("Sampler", ["8", "9", "10", "11"])]},
            {"groups": [("Sample and save", ["12", "13", "14"])]},
        ],
    },
    "z_image_invert_and_reconstruct": {
        "note": f"""
## DDIM inversion and reconstruction (Z-Image Turbo)
Your picture is inverted to the noise x_T it would be sampled from, then sampled back from x_T: the
picture comes back. Check an inversion here before using it (StyleAligned's reference, editing from x_T).

**Change first:** your picture in *Load your image*; what it shows in *What the image shows*.

**Must match:** *Reconstruct* runs on the inversion's **sigmas** (wired), sampler **euler**, **cfg 1**;
*Inverted noise* starts it at x_T.

**Steps:** 20, 2 refinements, up to 20 model calls a step. Unconverged steps are named in ComfyUI's log.

**Models** ({MISSING})
{Z_IMAGE_MODELS}
""",
        "note_height": 560,
        "columns": [
            {"groups": [("Models", ["1", "2", "3", "4"])]},
            {"width": 380, "groups": [("Your image (change first)", ["5", "6", "7", "8", "9"])]},
            {"width": 380, "groups": [("Atelier: invert", ["10", "11"])]},
            {"groups": [("Reconstruct", ["12", "13", "14"])]},
            {"groups": [("Decode and save", ["15", "16"])]},
        ],
    },
}

# the video templates (Wan 2.2 5B): their files, notes and layouts live in scripts/template_specs_video.py
from template_specs_video import video_specs  # noqa: E402

_VIDEO_MODELS, _VIDEO_SPECS = video_specs(HF, MISSING)
MODELS.update(_VIDEO_MODELS)
SPECS.update(_VIDEO_SPECS)
