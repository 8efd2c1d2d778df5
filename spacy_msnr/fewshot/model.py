"""The LoRA-adapted causal LM as a thinc Model (`spacy_msnr.LoRAInstructionNER.v2`; v1 kept).

The thinc Model holds one `LoRACausalLMShim` (a `PyTorchShim`), so `model.finish_update(sgd)`
hands the LoRA parameters' gradients to the thinc optimizer that `spacy train` passes in; the
base weights are frozen and never reach it. The base model is loaded lazily, in `initialize` or
`from_disk`, so building a pipeline from a config never downloads or loads weights, and neither
building nor loading draws from the global torch random generator (LoRA is initialised from a
local `torch.Generator` seeded with `seed`). What the shim needs to know of the base model (LoRA
targets, dtype, structure) is in `base_model.py`.

`forward(model, chunks, is_train)` computes the training loss of one update batch of
instructions, given as chunks (`train_batch_size`, a memory setting that does not change the
loss): the LM loss, the mean cross-entropy over all answer tokens of the batch, plus `weight` x
InfoNCE over the hidden states of layer round(layer x depth) of every input-text token of the
batch (`contrastive.py`). Its backprop runs the backward pass and, when epsilon > 0, the FGM step
(`adversarial.py`): a second pass on input embeddings perturbed along the gradient of that total
loss (LM + weight x contrastive) with respect to them, whose answer-token cross-entropy (mean
over all answer tokens of the batch) is added. When all instructions of a chunk start with the
same prefix (the chat format's instruction), that prefix runs once, each segment's text once
after it, and each instruction's question and answer after its text (`batching.py`: `collate`,
`forward_chunk`); without FGM the loss and gradients are those of whole rows.
"""
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import srsly
import torch
from spacy.util import registry
from thinc.api import Model, PyTorchShim, get_torch_default_device

from ..precision import check_precision
from .adversarial import fgm_perturbation, mean_embedding_norm, relative_fgm_perturbation
from .base_model import (
    check_causal_lm, contrastive_layer, init_lora, load_adapter, max_positions, num_layers, resolve_dtype,
    split_causal_lm, target_modules_for,
)
from .batching import PARTS, ChunkPass, answer_loss, collate, forward_chunk, rng_state, run_chunk, set_rng_state
from .contrastive import info_nce_loss, pool_spans
from .prompts import Instruction

#: v2: LoRA on every linear layer; v1: on the attention projections (`base_model.TARGET_MODULES`).
LORA_DEFAULTS = {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"}
LORA_DEFAULTS_V1 = dict(LORA_DEFAULTS, target_modules=None)
CONTRASTIVE_DEFAULTS = {"layer": 0.75, "temperature": 0.07, "weight": 0.1, "unit": "token"}
CONTRASTIVE_UNITS = ("token", "span")
#: v2: epsilon relative to the mean token-embedding norm, per token (`relative_fgm_perturbation`).
ADVERSARIAL_DEFAULTS = {"epsilon": 0.01}
#: v1: epsilon an absolute L2 norm per sequence (`fgm_perturbation`).
ADVERSARIAL_DEFAULTS_V1 = {"epsilon": 1.0}
BASE_FILES = ("config.json", "generation_config.json", "model.safetensors.index.json")
FORMAT_VERSION = 1


def _settings(name: str, given: Optional[Dict[str, Any]], defaults: Dict[str, Any]) -> Dict[str, Any]:
    given = dict(given or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"Unknown {name} setting(s) {unknown}; expected some of {sorted(defaults)}.")
    return {**defaults, **given}


@registry.architectures("spacy_msnr.LoRAInstructionNER.v2")
def build_lora_instruction_ner_v2(
    base_model: Optional[str] = None,
    lora: Optional[Dict[str, Any]] = None,
    contrastive: Optional[Dict[str, Any]] = None,
    adversarial: Optional[Dict[str, float]] = None,
    answer_loss: str = "lm",
    dtype: str = "auto",
    store_base: Optional[bool] = None,
    seed: int = 0,
) -> Model:
    """A causal LM (`base_model`: hub id or local directory) with LoRA adapters, trained on
    instruction data with LM + contrastive + adversarial losses.

    lora: r, alpha, dropout, target_modules ("all-linear", the default; null = the attention
    projections of the architecture; or a list of module names).
    contrastive: layer (fraction of depth, in (0, 1]), temperature, weight (0 disables), unit
    ("token": every entity token is an anchor, the paper's reading; "span": the tokens of each gold
    mention are averaged into one anchor, non-entity tokens stay negatives one by one).
    adversarial: epsilon (0 disables), relative to the model's embedding scale: every position t
    after the instruction prefix (the text, the question in the chat format, the answer; the
    instruction itself stays as it is, which lets the training pass run a prefix shared by all
    instructions once; a text shared by its types' instructions in the chat format is moved
    once, along the gradient summed over them) is moved by r_t = epsilon * e * g_t / ||g_t||_2,
    where e is the mean L2 norm of the
    rows of the input-embedding matrix and g_t the loss gradient at t (per-token normalisation, as
    in FreeLB), so epsilon = 0.01 (the default) moves each token embedding by a hundredth of a
    typical embedding's length on any model. Every token moves at once, so this is a strong
    perturbation: at 0.1 the adversarial loss was 2.6x the clean LM loss on SmolLM2-135M and a
    tiny model no longer learned to copy spans (0.15 train F1 after 300 updates against 0.71 at
    0.01 and 0.93 without FGM). answer_loss: "lm" (cross-entropy over the whole vocabulary, as in the
    paper) or "constrained" (cross-entropy over the tokens the span-constrained decoder allows at
    each answer position: the decoder's own choice distribution). dtype: the frozen base's weights:
    "auto" (bf16 on a GPU with bf16, float32 on a CPU, where bf16 cost F1 on the CrossNER episodes;
    decided where the pipeline runs), "float32" (or "fp32"), "bfloat16" (or "bf16": also on a CPU)
    or "float16" (prediction only: training a float16 base without loss scaling is refused); the
    LoRA weights stay float32. store_base: keep a copy of the base weights inside the saved
    pipeline (null = only when base_model is a local directory). seed: LoRA initialisation.
    """
    return _build(_settings("lora", lora, LORA_DEFAULTS), contrastive,
                  _settings("adversarial", adversarial, ADVERSARIAL_DEFAULTS), base_model, answer_loss, dtype,
                  store_base, seed, fgm="token")


@registry.architectures("spacy_msnr.LoRAInstructionNER.v1")
def build_lora_instruction_ner(
    base_model: Optional[str] = None,
    lora: Optional[Dict[str, Any]] = None,
    contrastive: Optional[Dict[str, Any]] = None,
    adversarial: Optional[Dict[str, float]] = None,
    answer_loss: str = "lm",
    dtype: str = "auto",
    store_base: Optional[bool] = None,
    seed: int = 0,
) -> Model:
    """As `spacy_msnr.LoRAInstructionNER.v2`, except that adversarial.epsilon (default 1.0) is an
    absolute L2 norm of the perturbation of a whole sequence's embeddings (Miyato et al.), whose
    effect depends on the model's embedding scale and the sequence length, and that LoRA goes on
    the attention projections unless lora.target_modules says otherwise."""
    return _build(_settings("lora", lora, LORA_DEFAULTS_V1), contrastive,
                  _settings("adversarial", adversarial, ADVERSARIAL_DEFAULTS_V1), base_model, answer_loss, dtype,
                  store_base, seed, fgm="sequence")


def _build(lora_cfg: Dict[str, Any], contrastive: Optional[Dict[str, Any]], adv_cfg: Dict[str, float],
           base_model: Optional[str], answer_loss: str, dtype: str, store_base: Optional[bool], seed: int,
           fgm: str) -> Model:
    con_cfg = _settings("contrastive", contrastive, CONTRASTIVE_DEFAULTS)
    if not 0 < float(con_cfg["layer"]) <= 1:
        raise ValueError(f"contrastive.layer is a fraction of the model's depth in (0, 1], got {con_cfg['layer']}.")
    if float(con_cfg["temperature"]) <= 0 or float(con_cfg["weight"]) < 0:
        raise ValueError(f"contrastive needs temperature > 0 and weight >= 0, got {con_cfg}.")
    if con_cfg["unit"] not in CONTRASTIVE_UNITS:
        raise ValueError(f"contrastive.unit must be one of {', '.join(CONTRASTIVE_UNITS)}, got {con_cfg['unit']!r}.")
    if float(adv_cfg["epsilon"]) < 0:
        raise ValueError(f"adversarial.epsilon must be >= 0, got {adv_cfg['epsilon']}.")
    if int(lora_cfg["r"]) < 1:
        raise ValueError(f"lora.r must be >= 1, got {lora_cfg['r']}.")
    if answer_loss not in ("lm", "constrained"):
        raise ValueError(f"answer_loss must be 'lm' or 'constrained', got {answer_loss!r}.")
    if dtype != "float16":
        check_precision(dtype)
    return Model(
        "lora_instruction_ner",
        forward,
        init=init,
        shims=[LoRACausalLMShim(None, dtype=dtype)],
        attrs={
            "base_model": base_model, "lora": lora_cfg, "contrastive": con_cfg, "adversarial": adv_cfg, "fgm": fgm,
            "dtype": dtype, "store_base": store_base, "seed": seed, "answer_loss": answer_loss,
        },
    )


def get_shim(model: Model) -> "LoRACausalLMShim":
    return model.shims[0]


def init(model: Model, X: Any = None, Y: Any = None) -> Model:
    """Load the base model and add fresh LoRA adapters (once)."""
    shim = get_shim(model)
    if not shim.loaded:
        a = model.attrs
        shim.load(a["base_model"], a["lora"], a["dtype"], a["store_base"], a["seed"])
    return model


# -- the model itself ---------------------------------------------------------------------------
class LoRACausalLMShim(PyTorchShim):
    """A PyTorchShim around a peft-wrapped causal LM that also owns its tokenizer and its
    serialization: LoRA weights in safetensors, the base model identifier and config, the
    tokenizer, and (optionally) the base weights, never pickles."""

    def __init__(self, model: Any = None, dtype: Optional[str] = None, **kwargs):
        super().__init__(model, **kwargs)
        #: The configured `dtype` (None: the one a saved model recorded): the config decides on load.
        self.dtype = dtype
        self.tokenizer = None
        self.meta: Dict[str, Any] = {}
        self._base_dir: Optional[Path] = None
        #: Base-weight files of saved pipelines (written by `to_disk` or loaded from one), with the
        #: (inode, size, mtime) they had: later saves hard-link these instead of copying again.
        self._stored: Dict[str, Tuple[Path, Tuple[int, int, int]]] = {}
        self._tmp: Optional[tempfile.TemporaryDirectory] = None

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def model(self):
        if self._model is None:
            raise ValueError("The few-shot NER model is not initialized: call nlp.initialize() or load a trained pipeline.")
        return self._model

    # -- loading -------------------------------------------------------------------------------
    def load(self, base_model: Optional[str], lora: Dict[str, Any], dtype: str, store_base: Optional[bool],
             seed: Optional[int], base_dir: Optional[Path] = None, tokenizer_dir: Optional[Path] = None) -> None:
        """Load tokenizer and base weights (from `base_dir` if given, else `base_model`) and wrap
        them with LoRA adapters, initialised from a local generator seeded with `seed` (None: left
        for the caller to fill, as `from_disk` does). The global torch random state is left as it was."""
        from peft import LoraConfig, get_peft_model
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        if not base_model:
            raise ValueError(
                "No base model set for the few-shot NER component: set [components.<name>.model] base_model "
                "to a Hugging Face hub id or a local causal-LM directory (e.g. --paths.base_model DIR)."
            )
        source = str(base_dir or base_model)
        config = AutoConfig.from_pretrained(source)
        check_causal_lm(config, base_model)
        device = get_torch_default_device()
        torch_dtype = resolve_dtype(dtype, device)
        self.tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir or source))
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        targets = lora.get("target_modules") or target_modules_for(config)
        peft_config = LoraConfig(
            r=int(lora["r"]), lora_alpha=float(lora["alpha"]), lora_dropout=float(lora["dropout"]),
            target_modules=targets, bias="none", task_type="CAUSAL_LM",
            fan_in_fan_out=config.model_type == "gpt2", init_lora_weights=False,
        )
        with torch.random.fork_rng(devices=[]):  # module constructors draw; the user's stream must not move
            base = AutoModelForCausalLM.from_pretrained(source, torch_dtype=torch_dtype, use_safetensors=True)
            peft_model = get_peft_model(base, peft_config, autocast_adapter_dtype=True)
        if seed is not None:
            init_lora(peft_model, seed)
        peft_model.to(device)
        self._model = peft_model
        local = Path(base_model).is_dir() if base_dir is None else True
        keep = local if store_base is None else bool(store_base)
        if keep and not local:
            raise ValueError(f"store_base is set but base model {base_model!r} is not a local directory to copy.")
        self._base_dir = Path(source) if keep else None
        self._stored = {f.name: (f, _identity(f)) for f in self._base_files()} if base_dir is not None else {}
        self.meta = {
            "format": FORMAT_VERSION, "base_model": base_model, "stored_base": keep, "lora": dict(lora, target_modules=targets),
            "dtype": dtype, "model_type": config.model_type, "hf_config": config.to_dict(),
        }

    # -- serialization ---------------------------------------------------------------------------
    def to_disk(self, path: Union[str, Path]) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if not self.loaded:
            srsly.write_json(path / "fewshot_model.json", {"format": FORMAT_VERSION, "initialized": False})
            return
        from peft import get_peft_model_state_dict
        from safetensors.torch import save_file

        state = {k: v.detach().to("cpu").contiguous() for k, v in get_peft_model_state_dict(self._model).items()}
        save_file(state, str(path / "adapter.safetensors"))
        self.tokenizer.save_pretrained(str(path / "tokenizer"))
        if self.meta["stored_base"]:
            target = path / "base"
            if self._base_dir is None or not self._base_dir.is_dir():
                raise ValueError(f"The stored base model directory {self._base_dir} is gone; cannot save the pipeline.")
            if target.resolve() != self._base_dir.resolve():
                target.mkdir(exist_ok=True)
                for f in self._base_files():
                    self._store(f, target / f.name)
        srsly.write_json(path / "fewshot_model.json", dict(self.meta, initialized=True))

    def _base_files(self) -> List[Path]:
        return sorted(f for f in self._base_dir.iterdir() if f.name in BASE_FILES or f.suffix == ".safetensors")

    def _store(self, source: Path, target: Path) -> None:
        """Write one base-weight file into a saved pipeline: a hard link to a copy this shim
        already stored (or loaded), if that file is unchanged, so that saving a pipeline twice
        keeps one copy of the bytes on disk; else a copy. The user's own base directory is never
        linked (an in-place rewrite of it would change the saved pipeline), and an existing
        target is replaced, never written into."""
        stored = self._stored.get(source.name)
        linkable = stored is not None and stored[0].exists() and _identity(stored[0]) == stored[1]
        if target.exists():
            if linkable and target.samefile(stored[0]):
                return
            target.unlink()
        if linkable:
            try:
                os.link(stored[0], target)
                return
            except OSError:  # e.g. another file system: copy instead
                pass
        shutil.copyfile(source, target)
        self._stored[source.name] = (target, _identity(target))

    def from_disk(self, path: Union[str, Path]) -> "LoRACausalLMShim":
        path = Path(path)
        meta_path = path / "fewshot_model.json"
        if not meta_path.exists():
            raise ValueError(f"{path} is not a saved few-shot NER model (no fewshot_model.json).")
        meta = srsly.read_json(meta_path)
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"{meta_path}: unsupported format {meta.get('format')!r} (expected {FORMAT_VERSION}).")
        if not meta.get("initialized"):
            return self
        base_dir = path / "base" if meta["stored_base"] else None
        self.load(meta["base_model"], meta["lora"], self.dtype or meta["dtype"], meta["stored_base"], None,
                  base_dir=base_dir, tokenizer_dir=path / "tokenizer")
        self.meta["base_model"] = meta["base_model"]
        load_adapter(self._model, path / "adapter.safetensors")
        return self

    def to_bytes(self) -> bytes:
        with tempfile.TemporaryDirectory() as tmp:
            self.to_disk(tmp)
            files = {str(f.relative_to(tmp)): f.read_bytes() for f in sorted(Path(tmp).rglob("*")) if f.is_file()}
        return srsly.msgpack_dumps({"files": files})

    def from_bytes(self, data: bytes) -> "LoRACausalLMShim":
        files = srsly.msgpack_loads(data)["files"]
        tmp = tempfile.TemporaryDirectory(prefix="fewshot-ner-")
        for name, content in files.items():
            target = Path(tmp.name) / name
            if ".." in Path(name).parts:
                raise ValueError(f"Refusing to unpack {name!r} outside the model directory.")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        self.from_disk(tmp.name)
        self._tmp = tmp  # keeps a stored base directory alive for later saving
        return self

    def save_merged(self, path: Union[str, Path]) -> Path:
        """Write the base model with the LoRA weights merged in as a plain Hugging Face causal-LM
        folder (safetensors, tokenizer): a base for a later fine-tuning stage, e.g. the target
        stage after source-domain training. The live model keeps its adapters; an existing
        `path` is replaced only once the new folder is complete."""
        import copy

        from ..util import atomic_dir

        # merged in float32 and saved so, whatever dtype the live base computes in
        merged = copy.deepcopy(self.model).float().merge_and_unload()
        with atomic_dir(path) as tmp:
            merged.save_pretrained(str(tmp), safe_serialization=True)
            self.tokenizer.save_pretrained(str(tmp))
        return Path(path)


def _identity(path: Path) -> Tuple[int, int, int]:
    st = path.stat()
    return st.st_ino, st.st_size, st.st_mtime_ns


# -- training forward ---------------------------------------------------------------------------
def forward(model: Model, chunks: List[List[Instruction]], is_train: bool) -> Tuple[Dict[str, float], Callable]:
    """Loss terms of one update batch of instructions, given as `chunks` that are run one at a
    time, and the backprop that applies them. The loss does not depend on the chunking: the LM
    (and adversarial) term is the mean cross-entropy over all answer tokens of the batch, and
    InfoNCE sees every text token of the batch. With one chunk, the forward pass keeps its graph;
    with several, a no-grad pass over the chunks gives the loss and the gradient of the
    contrastive term with respect to every chunk's representations (a gradient cache, Gao et al.
    2021), and backprop recomputes each chunk with a graph, replaying the random state of its
    first pass (same dropout masks), and backpropagates LM + those cached gradients."""
    shim = get_shim(model)
    lm = shim.model
    if is_train and model.attrs["dtype"] == "float16":
        raise ValueError(
            "dtype = \"float16\" is for prediction only: training a float16 base without loss scaling lets "
            "gradients underflow. Train with dtype = \"bfloat16\" (or \"float32\"; \"auto\" picks bfloat16 "
            "on GPU) and predict in float16 if you like."
        )
    con, adv = model.attrs["contrastive"], model.attrs["adversarial"]
    epsilon, weight = float(adv["epsilon"]), float(con["weight"])
    device = shim.device
    constrained = model.attrs["answer_loss"] == "constrained"
    limit = max_positions(lm, shim.tokenizer)
    share = model.attrs["fgm"] == "token"  # v1's per-sequence FGM norm needs whole rows
    all_tensors = [collate(chunk, shim.tokenizer.pad_token_id, device, limit, constrained, share) for chunk in chunks]
    n_answer = sum(len(t["targets"]) for t in all_tensors)
    layer = contrastive_layer(float(con["layer"]), num_layers(lm)) if weight > 0 else None
    lm.train(is_train)
    backbone, head = split_causal_lm(lm)
    embed = backbone.get_input_embeddings()
    keep_graph = is_train and len(chunks) == 1
    scale = mean_embedding_norm(embed.weight) if is_train and epsilon > 0 else 0.0  # FGM's unit, once an update
    states, passes = [], []
    for chunk, tensors in zip(chunks, all_tensors):
        states.append(rng_state(device))
        passes.append(run_chunk(backbone, head, embed, chunk, tensors, layer, keep_graph, keep_graph and epsilon > 0))
    with torch.set_grad_enabled(is_train):
        lm_loss = sum(p.lm_sum for p in passes) / n_answer
        con_loss = None
        if layer is not None:
            reps = torch.cat([p.reps for p in passes])
            if not keep_graph:
                reps = reps.detach().requires_grad_(is_train)
            units, types = reps, [t for p in passes for t in p.types]
            if con["unit"] == "span":
                units, types = pool_spans(reps, types, [None if g is None else (i, *g)
                                                        for i, p in enumerate(passes) for g in p.groups])
            con_loss = info_nce_loss(units, types, float(con["temperature"]))
    terms = {"lm": lm_loss.item(), "contrastive": con_loss.item() if con_loss is not None else 0.0, "adversarial": 0.0}

    def backprop(d_loss: float = 1.0) -> None:
        if keep_graph:
            total = lm_loss if con_loss is None else lm_loss + weight * con_loss
            (total * d_loss).backward()
            _adversarial_step(passes[0], d_loss)
            return
        d_reps = None
        if con_loss is not None:
            (d_all,) = torch.autograd.grad(weight * con_loss, reps)
            d_reps = d_all.split([len(p.types) for p in passes])
        for i, (chunk, tensors) in enumerate(zip(chunks, all_tensors)):
            set_rng_state(states[i], device)
            run = run_chunk(backbone, head, embed, chunk, tensors, layer, True, epsilon > 0)
            surrogate = run.lm_sum / n_answer
            if d_reps is not None:
                surrogate = surrogate + (run.reps.float() * d_reps[i]).sum()
            (surrogate * d_loss).backward()
            _adversarial_step(run, d_loss)

    def _adversarial_step(run: ChunkPass, d_loss: float) -> None:
        if epsilon <= 0:
            return
        moved = []
        masks = [movable for key, movable in PARTS if key in run.tensors]
        for e, movable in zip(run.embeds, masks):
            if movable is None:  # the instruction before the text stays as it is
                moved.append(e.detach())
            elif model.attrs["fgm"] == "token":
                moved.append(e.detach() + relative_fgm_perturbation(e.grad, epsilon, run.tensors[movable], scale))
            else:  # v1: whole rows only (collate shares nothing), every position
                moved.append(e.detach() + fgm_perturbation(e.grad, epsilon, run.tensors["attention_mask"]))
        hidden, _ = forward_chunk(backbone, moved, run.tensors, None)
        adv_sum = answer_loss(hidden, head, run.tensors, reduction="sum")
        (adv_sum / n_answer * d_loss).backward()
        terms["adversarial"] += adv_sum.item() / n_answer

    return terms, backprop

