"""The node search finds every node by "Atelier" plus its function: on a ComfyUI whose V3 Schema has
``search_aliases`` (0.33+) every node declares aliases that start with "Atelier "; on one without it
(0.3.75) the pack passes nothing (feature-detected, no version compare). Display names stay plain."""
import pytest

from tests.harness.inprocess import declared_pack_node_ids

# the searches a user types (issue: "Atelier DDIM" and "Atelier inversion" found nothing) -> the node they want
SEARCHES = {"Atelier DDIM": "AtelierInvert", "Atelier inversion": "AtelierInvert",
            "Atelier StyleAligned": "AtelierStyleAligned", "Atelier IP-Adapter": "AtelierImagePrompt",
            "Atelier region editor": "AtelierBoxRegions", "Atelier regional attention": "AtelierRegionalAttention",
            "Atelier aesthetic mix": "AtelierAestheticMix", "Atelier ArtBN": "AtelierArtBN",
            "Atelier batch prompts": "AtelierBatchPrompts", "Atelier split prompt": "AtelierSplitPrompt"}


def supported(comfy) -> bool:
    """Whether this ComfyUI's V3 Schema has the field (comfy_api is importable once the harness is up)."""
    from comfy_api.latest import io
    return "search_aliases" in getattr(io.Schema, "__dataclass_fields__", {})


def schemas(comfy) -> dict:
    return {node_id: comfy.node_class(node_id).define_schema() for node_id in declared_pack_node_ids()}


def test_every_node_has_atelier_aliases_where_comfyui_supports_them(comfy):
    for node_id, schema in schemas(comfy).items():
        assert not schema.display_name.startswith("Atelier"), (node_id, schema.display_name)
        aliases = getattr(schema, "search_aliases", None)
        if supported(comfy):
            assert aliases and all(a.startswith("Atelier ") and len(a) > len("Atelier ") for a in aliases), (node_id, aliases)
        else:
            assert aliases is None, (node_id, aliases)


def test_the_searches_users_type_find_their_node(comfy):
    if not supported(comfy):
        pytest.skip("this ComfyUI's V3 Schema has no search_aliases")
    found = {node_id: " | ".join(schema.search_aliases).lower() for node_id, schema in schemas(comfy).items()}
    for query, node_id in SEARCHES.items():
        assert query.lower() in found[node_id], (query, node_id, found[node_id])
    served = {node_id: comfy.node_class(node_id).GET_NODE_INFO_V1().get("search_aliases") for node_id in found}
    assert all(served.values()), served  # what /object_info sends the frontend for a V3 node
