"""StyleAligned step time and peak memory vs unpatched ComfyUI (same batch, same run).

    .venv/bin/python scripts/bench_style_aligned.py                     # tiny SD1.5, 256 px, CPU
    python scripts/bench_style_aligned.py --device cuda --full --model sdxl   # GPU, full-size fp16
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scripts.bench_common import compare, load_model, parse_args  # noqa: E402
from tests.pack import pack_module  # noqa: E402  (before ComfyUI's own tests/ is on sys.path)


def main():
    args = parse_args(__doc__)
    node = pack_module("nodes.style_aligned").AtelierStyleAligned
    model, positive, negative = load_model(args)

    def patched(**kw):
        settings = dict(share_attention=True, adain_queries=True, adain_keys=True, adain_values=False,
                        share_group_norm=False, shared_score_scale=1.0, shared_score_shift=0.0, layers="all",
                        unshared_fraction=0.0, start_percent=0.0, end_percent=1.0)
        settings.update(kw)
        return node.execute(model, **settings).args[0]

    compare({"vanilla": model,
             "style_aligned (defaults)": patched(),
             "style_aligned + shift + group norm": patched(shared_score_shift=0.693, share_group_norm=True)},
            positive, negative, args)


if __name__ == "__main__":
    main()
