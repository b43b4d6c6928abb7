"""Errors shown to the ComfyUI user. Each names the node, the input and the fix."""


class AtelierError(ValueError):
    """A user-facing error; ComfyUI shows the message in the node's error panel."""

    def __init__(self, node: str, input_name: str, problem: str, fix: str):
        self.node = node
        self.input_name = input_name
        super().__init__(f"{node}: input '{input_name}': {problem} Fix: {fix}")
