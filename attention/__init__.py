"""Attention controls as pure torch; comfy imports are guarded so the maths loads without ComfyUI."""
