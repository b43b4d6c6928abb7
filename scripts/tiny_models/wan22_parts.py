"""Tiny stand-ins for what ComfyUI's own Wan 2.2 5B template loads besides the diffusion model: its text
encoder UMT5-XXL (``umt5_xxl_fp8_e4m3fn_scaled.safetensors``, CLIPLoader type wan) and its VAE
(``wan2.2_vae.safetensors``, VAELoader).

Text encoder: ComfyUI's CLIPLoader builds ``comfy.text_encoders.wan``'s ``WanTEModel`` (UMT5-XXL: 4096 wide,
24 layers, a 256,384-token vocabulary) from a fixed full-size config, which these machines cannot hold. The
stand-in keeps everything else real: ComfyUI's ``WanT5Model`` / ``UMT5XXlModel`` (its T5 encoder class with
UMT5's per-layer relative attention bias, the padding mask and the zeroed padding), its ``WanT5Tokenizer``
(SentencePiece read from the file's own ``spiece_model`` tensor, as the real file carries it, padded to 512
tokens) and ``comfy.sd.CLIP`` loading the file with ``load_sd``. Only the sizes are tiny: width 32 (= the tiny
Wan's text width), 2 layers, and a 400-piece SentencePiece model trained here, seeded by its fixed corpus, with
UMT5's special ids (pad 0, eos 1, unk 2) and byte fallback (any text encodes, the Chinese negative prompt of
ComfyUI's Wan templates too). The test-bed node ``TestBedCLIPLoader`` builds it (type wan).

VAE: ComfyUI's VAELoader builds the Wan 2.2 VAE at its full width whatever the file holds (``dim`` 160, a
704 M-parameter model), so the stand-in is ComfyUI's other Wan 2.2 autoencoder, the tiny TAEHV (``taew2_2``:
48 latent channels, 16x in space, 4x in time, decoding the same latents), which VAELoader itself detects
from the file's keys on both test beds: no test-bed loader. Its widths are ComfyUI's constants (11.4 M
parameters, stored in fp16: 23 MB).
"""
from __future__ import annotations

import io
from pathlib import Path

import torch

from .files import check_keys, save_tiny
from .fill import SeededFiller

UMT5_TEXT = "atelier_tiny_umt5_xxl.safetensors"
WAN22_VAE = "atelier_tiny_wan22_vae.safetensors"
SEEDS = {UMT5_TEXT: 2231, WAN22_VAE: 2232}
WIDTH = 32  # = the tiny Wan's text_dim (tiny_models/wan.py TEXT_WIDTH)
VOCAB = 400
# ComfyUI's umt5_config_xxl.json at width 32, 2 layers and the tiny vocabulary
TINY_UMT5 = {
    "d_ff": 64, "d_kv": 8, "d_model": WIDTH, "decoder_start_token_id": 0, "dropout_rate": 0.1, "eos_token_id": 1,
    "dense_act_fn": "gelu_pytorch_tanh", "initializer_factor": 1.0, "is_encoder_decoder": True,
    "is_gated_act": True, "layer_norm_epsilon": 1e-06, "model_type": "umt5", "num_decoder_layers": 2,
    "num_heads": 4, "num_layers": 2, "output_past": True, "pad_token_id": 0,
    "relative_attention_num_buckets": 32, "tie_word_embeddings": False, "vocab_size": VOCAB,
}
# what the tiny tokenizer is trained on (fixed: the same pieces every build)
CORPUS = """a calm lake at sunrise, a small red sailboat glides across the water from left to right
mist drifts over the water, pine covered hills, soft golden light, cinematic, smooth camera motion
an orange sun rises in a hazy sky above the far shore, gentle waves, reflections
a lighthouse on a cliff, a fishing boat in a harbour, a red tram in a city street, a mountain cabin at dusk
hand painted animation, watercolor, ink, risograph print, two inks, grainy paper texture, film grain""".splitlines()
TAEHV_CHANNELS = 48  # the Wan 2.2 latent


def train_tokenizer() -> bytes:
    """The tiny SentencePiece model (serialized), with UMT5's special ids."""
    import sentencepiece
    out = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 20), model_writer=out, vocab_size=VOCAB, model_type="bpe", pad_id=0,
        eos_id=1, unk_id=2, bos_id=-1, byte_fallback=True, hard_vocab_limit=False, num_threads=1,
        character_coverage=1.0, minloglevel=2)
    return out.getvalue()


def tiny_wan_text_encoder_class():
    """ComfyUI's Wan text encoder (WanT5Model over UMT5XXlModel) with UMT5 at the tiny size."""
    import comfy.sd1_clip as sd1_clip
    import comfy.text_encoders.t5
    from comfy.text_encoders import wan

    class TinyUMT5Model(wan.UMT5XXlModel):
        def __init__(self, device="cpu", layer="last", layer_idx=None, dtype=None, model_options={}):
            sd1_clip.SDClipModel.__init__(self, device=device, layer=layer, layer_idx=layer_idx,
                                          textmodel_json_config=dict(TINY_UMT5), dtype=dtype,
                                          special_tokens={"end": 1, "pad": 0}, model_class=comfy.text_encoders.t5.T5,
                                          enable_attention_masks=True, zero_out_masked=True, model_options=model_options)

    class TinyWanTextEncoder(wan.WanT5Model):
        def __init__(self, device="cpu", dtype=None, model_options={}):
            sd1_clip.SD1ClipModel.__init__(self, device=device, dtype=dtype, model_options=model_options,
                                           name="umt5xxl", clip_model=TinyUMT5Model)

    return TinyWanTextEncoder


def _meta_state_dict(name: str) -> dict:
    with torch.device("meta"):
        if name == UMT5_TEXT:
            encoder = tiny_wan_text_encoder_class()(device=torch.device("meta"), dtype=torch.float32)
            return encoder.umt5xxl.transformer.state_dict()
        import comfy.taesd.taehv
        return comfy.taesd.taehv.TAEHV(latent_channels=TAEHV_CHANNELS).state_dict()


def build_wan22_part(path, name: str | None = None) -> dict:
    name = name or Path(path).name
    if name == UMT5_TEXT:
        sd = SeededFiller(SEEDS[name], torch.float32).fill(_meta_state_dict(name))
        sd["spiece_model"] = torch.frombuffer(bytearray(train_tokenizer()), dtype=torch.uint8)
    else:
        sd = SeededFiller(SEEDS[name], torch.float16).fill(_meta_state_dict(name))
    return save_tiny(path, sd, name)


def verify_wan22_part(path, full: bool = False) -> dict:
    import comfy.utils
    path = Path(path)
    sd = comfy.utils.load_torch_file(str(path), safe_load=True)
    check_keys(path, sd, _meta_state_dict(path.name), "tiny Wan 2.2 part")
    if path.name == UMT5_TEXT and "spiece_model" not in sd:
        raise ValueError(f"{path}: no spiece_model (the tokenizer the real file carries)")
    if full and path.name == WAN22_VAE:
        import comfy.sd
        vae = comfy.sd.VAE(sd=sd)
        if vae.latent_channels != TAEHV_CHANNELS or vae.latent_dim != 3:
            raise ValueError(f"{path}: ComfyUI's VAE sees {vae.latent_channels} channels, {vae.latent_dim}D latents")
    return {"kind": path.name}


def load_tiny_wan_clip(path, embedding_directory=None):
    """comfy.sd.CLIP of the tiny UMT5, as CLIPLoader (type wan) builds it: the tokenizer from the file's
    ``spiece_model``, the weights with ``load_sd``."""
    import comfy.sd
    import comfy.utils
    from comfy.text_encoders.wan import WanT5Tokenizer
    sd = comfy.utils.load_torch_file(str(path), safe_load=True)

    class Target:
        clip = tiny_wan_text_encoder_class()
        tokenizer = WanT5Tokenizer
        params = {}

    clip = comfy.sd.CLIP(Target, embedding_directory=embedding_directory, tokenizer_data={"spiece_model": sd["spiece_model"]},
                         parameters=comfy.utils.calculate_parameters(sd))
    missing, _ = clip.load_sd(sd)
    if missing:
        raise ValueError(f"tiny UMT5 text encoder: missing weights {missing[:5]}")
    return clip


def wan22_part_artifacts() -> dict:
    """ARTIFACTS entries (subfolder, builder, verifier) of the tiny UMT5 text encoder and Wan 2.2 VAE."""
    return {UMT5_TEXT: ("text_encoders", build_wan22_part, verify_wan22_part),
            WAN22_VAE: ("vae", build_wan22_part, verify_wan22_part)}
