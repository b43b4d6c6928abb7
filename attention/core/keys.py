"""Where the pack's pieces find each other in ComfyUI's options during a model evaluation.

Nodes append controls under :data:`PACK_KEY`; the dispatcher puts the evaluation's :data:`RUN_KEY`
there and sets :data:`CURRENT_OPTIONS` around it (for code that runs where ComfyUI passes no options:
GroupNorms in ResBlocks). Reference-image mode (``inversion/``) and the controls share the reference
keys below; the inversion package imports the attention package, never the other way round.
"""
import contextvars

PACK_KEY = "attention_atelier"  # model_options["transformer_options"][PACK_KEY]: the control stack (a tuple)
RUN_KEY = "attention_atelier.run"  # the RunInfo of the evaluation in progress
OVERRIDE_KEY = "optimized_attention_override"  # ComfyUI's one attention-override slot (DiTs)

# transformer_options of the model evaluation in progress; set and reset around each evaluation
CURRENT_OPTIONS: contextvars.ContextVar = contextvars.ContextVar("attention_atelier_options", default=None)

# the keyed APPLY_MODEL / OUTER_SAMPLE wrappers that replay a trajectory as row 0
REFERENCE_KEY = "attention_atelier.reference"
# set in a model call's transformer_options while its chunks start with an inserted reference row
REFERENCE_INSERTED_KEY = "attention_atelier.reference_inserted"
RECORD_KEY = "attention_atelier.reference_record"  # a StepRecorder: layers record row 0 into it
REPLAY_KEY = "attention_atelier.reference_replay"  # a StepReplay: layers read row 0 from it
# in one layer call's options: row 0 is replayed from the cache and its output is dropped
REPLAYED_ROW_KEY = "attention_atelier.reference_replayed"
