"""AtelierAestheticMix (training-free VMix value mixing) and AtelierSplitPrompt."""
from __future__ import annotations

from comfy_api.latest import io

from .common import search_aliases

from ..attention import models
from ..attention.dispatch import dispatcher
from ..attention.aesthetic_mix import AestheticMixControl, relative_to_empty_prompt
from ..attention.core.errors import AtelierError
from ..attention.prompt_split import AESTHETIC_VOCABULARY, parse_vocabulary, split_prompt
from .common import CATEGORY, layers_input, make_layers, make_window, model_input, model_output, window_inputs
from .input_guard import guarded, tokenize

MIX = "AtelierAestheticMix"
SPLIT = "AtelierSplitPrompt"


def encode(clip, text: str):
    return clip.encode_from_tokens(tokenize(clip, text, MIX, "aesthetic"), return_dict=True)["cond"]


def aesthetic_embedding(clip, text: str, relative_to_empty: bool):
    """e = E(text) - E("") (or E(text)); see :func:`relative_to_empty_prompt` for unequal lengths."""
    embedding = encode(clip, text)
    if relative_to_empty:
        embedding = relative_to_empty_prompt(embedding, encode(clip, ""))
    return embedding.float().cpu()


def check_context_width(model, embedding):
    diffusion_model = dispatcher.require_supported(model, MIX)
    expected = models.family_of(diffusion_model).context_width(diffusion_model)
    if embedding.shape[-1] != expected:
        raise AtelierError(MIX, "clip", f"the text encoder gives {embedding.shape[-1]}-wide embeddings but the "
                                        f"model's cross-attention takes {expected}.",
                           "wire the CLIP of the same checkpoint (after the same LoRA) as the model.")


class AtelierAestheticMix(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=MIX,
            **search_aliases("Atelier aesthetic mix", "Atelier VMix aesthetic values"),
            display_name="Aesthetic Mix (VMix value mixing)",
            category=f"{CATEGORY}/aesthetic",
            description=(
                "Training-free approximation of VMix (arXiv 2412.20800; the paper trains zero-initialised "
                "layers, no weights were released). In the selected cross-attention layers the content "
                "prompt keeps its attention map and the aesthetic text is mixed into the values: "
                "out = softmax(Q K_c^T / sqrt(d)) (V_c + s * to_v(e)) with K_c = to_k(c), V_c = to_v(c), "
                "s = strength and e = E(aesthetic) - E(\"\") (or E(aesthetic)), token-aligned to the content. "
                "Only cond rows are mixed (uncond rows unchanged), so cfg amplifies it like a prompt term. "
                "Strength 0 or an empty aesthetic text leaves the model exactly as it was."),
            inputs=[
                model_input(AestheticMixControl),
                io.Clip.Input("clip", tooltip="The text encoder of the same checkpoint, used to encode the "
                                              "aesthetic text (wire the LoRA-patched CLIP if you use a LoRA)."),
                io.String.Input("aesthetic", multiline=True, default="golden hour, soft light, vibrant colours",
                                tooltip="The aesthetic description (colour, lighting, composition, medium, "
                                        "camera, quality), e.g. AtelierSplitPrompt's aesthetic output. Keep it "
                                        "out of the content prompt. Empty: no effect."),
                io.Float.Input("strength", default=0.5, min=-2.0, max=4.0, step=0.01,
                               tooltip="s in V_c + s * to_v(e): 0 is off, 0.3-1 is typical, negative steers away "
                                       "from the aesthetic."),
                io.Boolean.Input("relative_to_empty_prompt", default=True,
                                 tooltip="Mix e = E(aesthetic) - E(\"\") (only what the aesthetic text adds; the "
                                         "start token, shared by every prompt, is not amplified). Off: e = "
                                         "E(aesthetic) as written in the VMix formula."),
                layers_input(),
                *window_inputs(),
            ],
            outputs=[model_output()],
        )

    @classmethod
    @guarded
    def execute(cls, model, clip, aesthetic, strength, relative_to_empty_prompt, layers, start_percent,
                end_percent) -> io.NodeOutput:
        window = make_window(MIX, start_percent, end_percent)
        selection = make_layers(MIX, layers, model=model)
        controls = []
        if strength != 0.0 and (aesthetic or "").strip():
            dispatcher.require_supported(model, MIX, features=(AestheticMixControl.feature,))  # the family first
            if clip is None:
                raise AtelierError(MIX, "clip", "the checkpoint has no text encoder.",
                                   "load a checkpoint with CLIP or use a CLIPLoader.")
            embedding = aesthetic_embedding(clip, aesthetic, relative_to_empty_prompt)
            check_context_width(model, embedding)
            controls.append(AestheticMixControl(aesthetic=embedding, strength=float(strength), layers=selection,
                                                window=window))
        return io.NodeOutput(dispatcher.attach(model, *controls, node=MIX))


def vocabulary_help() -> str:
    return "; ".join(f"{name}: {', '.join(terms[:4])}, ..." for name, terms in AESTHETIC_VOCABULARY.items())


class AtelierSplitPrompt(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=SPLIT,
            **search_aliases("Atelier split prompt", "Atelier aesthetic words"),
            display_name="Split Prompt (content / aesthetic)",
            category=f"{CATEGORY}/aesthetic",
            description=(
                "Splits one prompt into a content part and an aesthetic part for AtelierAestheticMix. The "
                "prompt is cut into phrases at , ; | line breaks and sentence-ending periods (never inside "
                "brackets); a phrase made only of vocabulary terms and filler words ('with', 'very', 'in the "
                "style of') is aesthetic, every other phrase is content. Wire content to CLIPTextEncode and "
                "aesthetic to AtelierAestheticMix. Built-in vocabulary (" + vocabulary_help() + ")."),
            inputs=[
                io.String.Input("prompt", multiline=True,
                                default="a fox in a meadow, golden hour, soft light, oil painting, highly detailed",
                                tooltip="The whole prompt, phrases separated by commas."),
                io.Boolean.Input("use_builtin_vocabulary", default=True,
                                 tooltip="Start from the built-in aesthetic terms (colour, lighting, "
                                         "composition, medium, camera, quality). Off: only your terms count."),
                io.String.Input("vocabulary", multiline=True, default="", optional=True,
                                tooltip="Your aesthetic terms, one per line or comma-separated; '-term' removes "
                                        "a built-in term (e.g. '-neon' keeps 'neon' in the content)."),
            ],
            outputs=[
                io.String.Output(display_name="content",
                                 tooltip="The content phrases, in order, joined with ', ' (may be empty)."),
                io.String.Output(display_name="aesthetic",
                                 tooltip="The aesthetic phrases, in order, joined with ', ' (may be empty)."),
            ],
        )

    @classmethod
    @guarded
    def execute(cls, prompt, use_builtin_vocabulary, vocabulary="") -> io.NodeOutput:
        content, aesthetic = split_prompt(prompt, parse_vocabulary(vocabulary, use_builtin_vocabulary))
        return io.NodeOutput(content, aesthetic)


NODES = [AtelierAestheticMix, AtelierSplitPrompt]
CONTROLS = (AestheticMixControl,)  # what its nodes make (README support table)
