"""Option keys that reference-image mode (inversion/reference*.py) and the attention controls share.

The inversion package imports the attention package, never the other way round; what both need to
agree on lives here.
"""

# the keyed APPLY_MODEL / OUTER_SAMPLE wrappers that replay a trajectory as row 0
REFERENCE_KEY = "attention_atelier.reference"
# set in a model call's transformer_options while its chunks start with an inserted reference row
REFERENCE_INSERTED_KEY = "attention_atelier.reference_inserted"
RECORD_KEY = "attention_atelier.reference_record"  # a StepRecorder: layers record row 0 into it
REPLAY_KEY = "attention_atelier.reference_replay"  # a StepReplay: layers read row 0 from it
# in one layer call's options: row 0 is replayed from the cache and its output is dropped
REPLAYED_ROW_KEY = "attention_atelier.reference_replayed"
