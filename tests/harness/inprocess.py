"""ComfyUI imported into the test process (CPU): tiny checkpoints, text encoding, sampling, graphs.

Use the session fixture ``comfy`` (an instance of :class:`ComfyHarness`); see its methods.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .paths import BASE_DIR, COMFY_DIR, PACK_DIR, SD15, SD15_KLVAE, SD15_LORA, SDXL, TEST_BED_NODES_DIR


class GraphError(AssertionError):
    """A graph failed validation (``node_errors``) or execution (``message``)."""

    def __init__(self, message, node_errors=None, messages=None):
        super().__init__(message)
        self.node_errors, self.messages = node_errors or {}, messages or []


@dataclass
class Checkpoint:
    model: object  # comfy.model_patcher.ModelPatcher
    clip: object   # comfy.sd.CLIP
    vae: object    # comfy.sd.VAE
    name: str = ""


@dataclass
class GraphResult:
    outputs: dict             # node_id -> list of output values (one per output slot)
    ui: dict                  # node_id -> UI output (what /history shows, e.g. {"images": [...]})
    messages: list = field(default_factory=list)  # (event, data) sent to the stand-in server

    def output(self, node_id, slot: int = 0):
        return self.outputs[str(node_id)][slot]


class _WarningCapture(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


class StandInServer:
    """What PromptExecutor needs from PromptServer: records every message it would send."""

    def __init__(self):
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.sockets_metadata = {}
        self.messages: list[tuple[str, object]] = []

        try:  # 0.33+: core extensions register node replacements with PromptServer.instance at load
            from app.node_replace_manager import NodeReplaceManager
            self.node_replace_manager = NodeReplaceManager()
        except ImportError:
            pass

    def send_sync(self, event, data, sid=None):
        self.messages.append((event, data))

    def send_progress_text(self, text, node_id, sid=None):
        self.messages.append(("progress_text", {"text": text, "node_id": node_id}))

    def queue_updated(self):
        pass


class ComfyHarness:
    def __init__(self, comfy_dir=COMFY_DIR, base_dir=BASE_DIR):
        from tiny_models.env import bootstrap, ensure_base_dirs
        ensure_base_dirs(base_dir)
        self.args = bootstrap(comfy_dir, base_dir)
        self.comfy_dir, self.base_dir = Path(comfy_dir), Path(base_dir)
        self._ckpts: dict[str, Checkpoint] = {}
        self._loads: dict[tuple, tuple] = {}  # checkpoint file loads shared by checkpoint() and graphs' loaders
        self._pack = None

    # ---- nodes -------------------------------------------------------------------------------
    def load_nodes(self):
        """Load core + comfy_extras nodes, our pack (from BASE/custom_nodes, as ComfyUI does) and the
        test-bed loaders (scripts/test_bed_nodes).

        Returns the pack module ComfyUI loaded. Raises if the pack fails to import.
        """
        if self._pack is None:
            import sys
            # ComfyUI's utils package first, as main.py does: nodes.py puts comfy/ (with comfy/utils.py)
            # first on sys.path, and server.py then imports utils.install_util
            stale = sys.modules.get("utils")
            if stale is not None and not hasattr(stale, "__path__"):  # comfy/utils.py imported as "utils" first
                del sys.modules["utils"]
            if str(self.comfy_dir) in sys.path:
                sys.path.remove(str(self.comfy_dir))
            sys.path.insert(0, str(self.comfy_dir))
            import utils  # noqa: F401
            import nodes
            import server
            if getattr(server.PromptServer, "instance", None) is None:  # no real server in this process
                server.PromptServer.instance = StandInServer()
            asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
            cap = _WarningCapture()
            logging.getLogger().addHandler(cap)
            try:
                ok = asyncio.run(nodes.load_custom_node(str(PACK_DIR)))
            finally:
                logging.getLogger().removeHandler(cap)
            if not ok:
                raise RuntimeError(f"ComfyUI could not load the pack from {PACK_DIR}:\n" + "\n".join(cap.messages))
            if not asyncio.run(nodes.load_custom_node(str(TEST_BED_NODES_DIR))):  # tiny Flux loaders
                raise RuntimeError(f"ComfyUI could not load the test-bed nodes from {TEST_BED_NODES_DIR}")
            self._pack = sys.modules[str(PACK_DIR).replace(".", "_x_")]
            self._share_checkpoint_loads()
        return self._pack

    def _share_checkpoint_loads(self):
        """Every plain checkpoint load in this process (``checkpoint()``, CheckpointLoaderSimple in a graph)
        returns the one load of that file, as a server's cache hands one loader output to every prompt,
        until :meth:`release` (a tiny SDXL is ~2.7 GB in memory and takes ~15 s to load on 2 cores)."""
        import comfy.sd
        load = comfy.sd.load_checkpoint_guess_config
        if getattr(load, "_atelier_shared", False):
            return
        harness = self

        def shared_load(ckpt_path, output_vae=True, output_clip=True, output_clipvision=False,
                        embedding_directory=None, output_model=True, model_options={}, te_model_options={}, **kw):
            if model_options or te_model_options or kw:  # anything unusual loads afresh
                return load(ckpt_path, output_vae, output_clip, output_clipvision, embedding_directory, output_model,
                            model_options, te_model_options, **kw)
            key = (str(Path(ckpt_path).resolve()), output_vae, output_clip, output_clipvision, output_model)
            if key not in harness._loads:
                harness._loads[key] = load(ckpt_path, output_vae=output_vae, output_clip=output_clip,
                                           output_clipvision=output_clipvision,
                                           embedding_directory=embedding_directory, output_model=output_model)
            return harness._loads[key]

        shared_load._atelier_shared = True
        comfy.sd.load_checkpoint_guess_config = shared_load

    @property
    def pack(self):
        """The pack module as ComfyUI loaded it (its classes are the ones the nodes use)."""
        return self.load_nodes()

    def pack_node_ids(self) -> list[str]:
        import nodes
        self.load_nodes()
        return sorted(k for k, v in nodes.NODE_CLASS_MAPPINGS.items()
                      if getattr(v, "RELATIVE_PYTHON_MODULE", "") == f"custom_nodes.{PACK_DIR.name}")

    def node_class(self, class_type: str):
        import nodes
        self.load_nodes()
        return nodes.NODE_CLASS_MAPPINGS[class_type]

    # ---- models ------------------------------------------------------------------------------
    def checkpoint(self, name: str = SD15) -> Checkpoint:
        """(model, clip, vae) of a checkpoint in BASE/models/checkpoints, loaded once (SD1.5 per session,
        others per test file: see :meth:`release`); graphs' CheckpointLoaderSimple returns the same objects.

        Never patch these in place: ``.model.clone()`` first (as nodes do).
        """
        if name not in self._ckpts:
            import comfy.sd
            import folder_paths
            self._share_checkpoint_loads()
            path = folder_paths.get_full_path_or_raise("checkpoints", name)
            model, clip, vae = comfy.sd.load_checkpoint_guess_config(
                path, output_vae=True, output_clip=True, embedding_directory=folder_paths.get_folder_paths("embeddings"))[:3]
            self._ckpts[name] = Checkpoint(model, clip, vae, name)
        return self._ckpts[name]

    def release(self, keep=(SD15,)):
        """Free every checkpoint load but ``keep`` (SD1.5: nearly every test file uses it), then collect,
        unload ComfyUI's models and hand freed heap back to the system. Called after each test file."""
        import gc
        self._ckpts = {name: c for name, c in self._ckpts.items() if name in keep}
        self._loads = {key: out for key, out in self._loads.items() if Path(key[0]).name in keep}
        gc.collect()
        import comfy.model_management as mm
        mm.unload_all_models()
        mm.soft_empty_cache()
        gc.collect()
        trim_heap()

    @property
    def sd15(self) -> Checkpoint:
        return self.checkpoint(SD15)

    @property
    def sd15_klvae(self) -> Checkpoint:
        return self.checkpoint(SD15_KLVAE)

    @property
    def sdxl(self) -> Checkpoint:
        return self.checkpoint(SDXL)

    def lora(self, model, clip, name: str = SD15_LORA, strength_model: float = 1.0, strength_clip: float = 1.0):
        """Core LoraLoader's path: returns (patched model clone, patched clip clone)."""
        import comfy.sd
        import comfy.utils
        import folder_paths
        lora = comfy.utils.load_torch_file(folder_paths.get_full_path_or_raise("loras", name), safe_load=True)
        return comfy.sd.load_lora_for_models(model, clip, lora, strength_model, strength_clip)

    # ---- conditioning / sampling --------------------------------------------------------------
    def encode(self, clip, text: str):
        """CLIPTextEncode: returns CONDITIONING ([[cond, {"pooled_output": ...}]])."""
        tokens = clip.tokenize(text)
        return clip.encode_from_tokens_scheduled(tokens)

    def empty_latent(self, width: int = 256, height: int = 256, batch: int = 1) -> dict:
        import torch
        return {"samples": torch.zeros([batch, 4, height // 8, width // 8])}

    def sample(self, model, positive, negative, latent: dict | None = None, seed: int = 0, steps: int = 4,
               cfg: float = 7.0, sampler_name: str = "euler", scheduler: str = "normal", denoise: float = 1.0,
               width: int = 256, height: int = 256, batch: int = 1, add_noise: bool = True):
        """KSampler semantics (comfy.sample.sample); returns the output latent tensor [B,4,H/8,W/8]."""
        import torch
        import comfy.sample
        latent = latent or self.empty_latent(width, height, batch)
        samples = comfy.sample.fix_empty_latent_channels(model, latent["samples"])
        if add_noise:
            noise = comfy.sample.prepare_noise(samples, seed, latent.get("batch_index"))
        else:
            noise = torch.zeros(samples.size(), dtype=samples.dtype, layout=samples.layout, device="cpu")
        return comfy.sample.sample(model, noise, steps, cfg, sampler_name, scheduler, positive, negative, samples,
                                   denoise=denoise, noise_mask=latent.get("noise_mask"), disable_pbar=True, seed=seed)

    def txt2img(self, ckpt: str = SD15, prompt: str = "a watercolor fox", negative: str = "", model=None, clip=None,
                **sample_kw):
        """Encode with the checkpoint's CLIP and sample with ``model`` (default: the checkpoint's). Returns latents."""
        c = self.checkpoint(ckpt)
        clip = clip or c.clip
        return self.sample(model or c.model, self.encode(clip, prompt), self.encode(clip, negative), **sample_kw)

    def decode(self, vae, samples):
        """VAEDecode: latent tensor -> IMAGE [B,H,W,3] in 0..1."""
        return vae.decode(samples)

    # ---- whole graphs -------------------------------------------------------------------------
    def validate(self, prompt: dict):
        import execution
        self.load_nodes()
        return asyncio.run(execution.validate_prompt(uuid.uuid4().hex, prompt, None))

    def run_graph(self, prompt: dict, executor=None) -> GraphResult:
        """Validate and execute an API-format graph like the server's prompt worker does.

        Raises GraphError with ComfyUI's node_errors / execution error. Pass ``executor`` (from
        :meth:`new_executor`) to keep ComfyUI's output cache between runs; default is a fresh one.
        """
        import execution
        valid, err, outputs, node_errors = self.validate(prompt)
        if not valid:
            raise GraphError(f"invalid prompt: {err}\nnode_errors: {node_errors}", node_errors)
        ex = executor or self.new_executor()
        ex.server.messages.clear()
        pid = uuid.uuid4().hex
        ex.execute(prompt, pid, {"client_id": "harness"}, outputs)
        if not ex.success:
            errs = [d for e, d in ex.status_messages if e in ("execution_error", "execution_interrupted")]
            msg = "; ".join(f"{d.get('node_type')} (node {d.get('node_id')}): {d.get('exception_type', '')}: "
                            f"{d.get('exception_message', 'interrupted')}\n{''.join(d.get('traceback') or [])}" for d in errs)
            raise GraphError(f"execution failed: {msg}", messages=list(ex.server.messages))
        outs = {}
        for node_id in prompt:
            entry = ex.caches.outputs.get(node_id)
            if inspect.isawaitable(entry):  # 0.33's caches are async
                entry = asyncio.run(entry)
            if entry is not None:
                outs[node_id] = [slot[0] if isinstance(slot, list) and len(slot) == 1 else slot for slot in entry.outputs]
        return GraphResult(outs, dict(ex.history_result.get("outputs", {})), list(ex.server.messages))

    def new_executor(self):
        import execution
        # Every key either version reads (0.33 added "ram_inactive"); each ignores the ones it does not know.
        return execution.PromptExecutor(StandInServer(), cache_type=False,
                                         cache_args={"lru": 0, "ram": 0, "ram_inactive": 0})


def trim_heap():
    """Return freed heap to the system (glibc keeps freed small and mid-sized tensors in its arenas,
    which a long test process would otherwise carry as resident memory)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


_HARNESS: ComfyHarness | None = None


def get_harness() -> ComfyHarness:
    """The process-wide harness (ComfyUI keeps global state, so there is only one)."""
    global _HARNESS
    if _HARNESS is None:
        _HARNESS = ComfyHarness()
    return _HARNESS


def declared_pack_node_ids() -> list[str]:
    """Node ids the pack declares (comfy_entrypoint -> get_node_list), loaded like ComfyUI does."""
    return get_harness().pack_node_ids()
