"""AtelierStyleAligned called as ComfyUI calls it, with every widget at its default unless overridden;
shared by the UNet and DiT tests."""
NODE = "AtelierStyleAligned"
DEFAULTS = dict(share_attention=True, adain_queries=True, adain_keys=True, adain_values=False,
                share_group_norm=False, shared_score_scale=1.0, shared_score_shift=0.0, layers="all",
                unshared_fraction=0.0, start_percent=0.0, end_percent=1.0)
NEUTRAL = dict(DEFAULTS, share_attention=False, adain_queries=False, adain_keys=False)


def style_aligned(comfy, model, **settings):
    """The patched MODEL the node returns for ``model``."""
    return comfy.node_class(NODE).execute(model, **dict(DEFAULTS, **settings)).args[0]
