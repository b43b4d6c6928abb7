"""The video templates' part of scripts/template_specs.py (Wan 2.2 5B): the public files as ComfyUI's own
Wan 2.2 5B template declares them (Comfy-Org/workflow_templates templates/video_wan2_2_5B_ti2v.json), the
notes and the layouts. template_specs.py merges them into MODELS and SPECS."""
from __future__ import annotations


def video_specs(hf: str, missing: str) -> tuple[dict, dict]:
    """(MODELS entries, SPECS entries); ``hf`` the Hugging Face prefix, ``missing`` the missing-models line."""
    models = {
        "wan2.2_ti2v_5B_fp16.safetensors": {
            "url": hf + "Comfy-Org/Wan_2.2_ComfyUI_Repackaged/resolve/main/split_files/diffusion_models/wan2.2_ti2v_5B_fp16.safetensors",
            "directory": "diffusion_models"},
        "umt5_xxl_fp8_e4m3fn_scaled.safetensors": {
            "url": hf + "Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files/text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors",
            "directory": "text_encoders"},
        "wan2.2_vae.safetensors": {
            "url": hf + "Comfy-Org/Wan_2.2_ComfyUI_Repackaged/resolve/main/split_files/vae/wan2.2_vae.safetensors",
            "directory": "vae"},
    }
    wan_models = f"""**Models** ({missing})
- **wan2.2_ti2v_5B_fp16.safetensors** in **models/diffusion_models** (Wan 2.2 TI2V 5B)
- **umt5_xxl_fp8_e4m3fn_scaled.safetensors** in **models/text_encoders** (UMT5-XXL, loaded with type wan)
- **wan2.2_vae.safetensors** in **models/vae** (the Wan 2.2 VAE)"""
    sampling = """Sampling as ComfyUI's own Wan 2.2 5B template: 20 steps, cfg 5 with Wan's negative prompt, uni_pc /
simple, ModelSamplingSD3 shift 8, 1280 x 704, 24 fps; text to video (no start image)."""
    specs = {
        "wan_regional_layout": {
            "note": f"""
## Regional layout over a clip (Wan 2.2 5B)
Each region puts its local prompt in its place in every frame: in Wan's cross-attention the video tokens
in a region's box also attend to its local prompt, with the region's weight over the steps. *Region: boat*
moves: its **keyframes** say where the box is later, one "at: x, y, width, height" per place (at 1 = the
last frame; linear in between): the boat sails to the right. *Region: sun* stays.

**Change first:** the scene prompt, the local prompts, the boxes and the boat's **keyframes**.

**Must match:** boxes are fractions of the frame (any size); let the scene prompt describe the motion the
keyframes draw.

{sampling} 121 frames: 5 s.

{wan_models}
""",
            "note_height": 560,
            "heights": {"16": 300},  # Save Video: room for the preview a run adds
            "columns": [
                {"width": 380, "groups": [("Models", ["1", "2", "3", "4"])]},  # the note: 1.32 Nodes 2.0 type
                {"width": 380, "groups": [("Prompts (change first)", ["5", "6"]), ("Video size and length", ["12"])]},
                {"width": 400, "groups": [("Region: boat, moving", ["7", "8"])]},
                {"width": 400, "groups": [("Region: sun", ["9", "10"]), ("Atelier: regional attention", ["11"])]},
                {"groups": [("Sample and save the video", ["13", "14", "15", "16"])]},
            ],
        },
        "wan_style_aligned_clips": {
            "note": f"""
## StyleAligned clips (Wan 2.2 5B)
One clip per line of *Batch Prompts*, all in the first clip's style: in Wan's self-attention each clip's
tokens also attend to clip 0's (the style reference) after AdaIN gives their queries/keys its statistics,
over all frames, so the style holds across clips and time.

**Change first:** the prompts (one clip per line) and the **style** words appended to every line.

**Must match:** nothing: *One clip per prompt* repeats the empty clip once per line (the latent node's
**batch_size** acts only with a start image). The clips play one after another in the saved video.

{sampling} 49 frames (2 s) per clip; 121 for 5 s where memory allows.

{wan_models}
""",
            "note_height": 570,
            "heights": {"6": 280, "13": 300},  # the prompts a longer text box; Save Video room for its preview
            "columns": [
                {"width": 380, "groups": [("Models", ["1", "2", "3", "4"])]},  # the note: 1.32 Nodes 2.0 type
                {"width": 380, "groups": [("Prompts (change first)", ["6", "7"])]},
                {"groups": [("Atelier: StyleAligned", ["5"]), ("Clip size, one per prompt", ["8", "9"])]},
                {"groups": [("Sample and save the video", ["10", "11", "12", "13"])]},
            ],
        },
    }
    return models, specs
