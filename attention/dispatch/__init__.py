"""The dispatch floor: where controls meet a model (above ``core`` and ``models``; knows no method).

``dispatcher``: nodes attach controls to a model; per model evaluation one keyed APPLY_MODEL wrapper
installs a UNet attention replace per selected layer or a DiT attention override. ``dit_override``:
that override. ``prompt_count``: checks when sampling starts. ``support``: the README's family x method
table, from the families' and controls' own attributes.
"""
