"""Candidate checkpoints: a URI → a verified local Hugging Face folder, and a loader.

URIs:
- `zoo:<variant>@<step>`: a checkpoint of the local zoo (`<zoo_root>/<variant>-<hash8>/
  checkpoint-<step>`); `zoo:<variant>-<hash8>@<step>` names one configuration exactly.
- `hf:<repo>@<revision>`: a Hugging Face Hub snapshot (safetensors, JSON and tokenizer files
  only), pinned to a revision so the lineage says exactly which weights were used.
- anything else without a scheme: a local folder in Hugging Face format.

Every folder is verified before anything is loaded (`sftcast.zoo.verify`); every problem is a
`CandidateError` naming the URI and what is wrong. A pickle-only folder is refused unless the
caller passes `allow_pickle=True`: then a converted safetensors copy (`sftcast.zoo.convert`) is
verified and used.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

from huggingface_hub import snapshot_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from sftcast.zoo.config import is_valid_name
from sftcast.zoo.convert import convert_pickle_folder, pickle_only
from sftcast.zoo.train import RUN_MANIFEST
from sftcast.zoo.verify import CandidateError, check_config, verify_checkpoint

DEFAULT_ZOO_ROOT = Path("artifacts/zoo")
HF_ALLOW_PATTERNS = ["*.safetensors", "*.json", "tokenizer.model", "*.tiktoken", "merges.txt"]

_ZOO_URI = re.compile(r"zoo:(?P<name>[^@]+)@(?P<step>\d+)")
_HF_URI = re.compile(r"hf:(?P<repo>[A-Za-z0-9][\w.-]*(?:/[\w.-]+)?)@(?P<revision>[\w./-]+)")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:")


def resolve_candidate(
    uri: str,
    *,
    zoo_root: str | Path = DEFAULT_ZOO_ROOT,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    cache_dir: str | Path | None = None,
) -> Path:
    """The verified local folder of a candidate URI.

    `allow_pickle`: a folder with pickle weights only is converted to safetensors (see
    `convert_pickle_folder`) into `<cache_dir>/safetensors/`, or next to the folder when no
    `cache_dir` is given, and the converted folder is returned."""
    uri = uri.strip()
    if not uri:
        raise CandidateError(
            uri, "empty URI; expected zoo:<variant>@<step>, hf:<repo>@<rev> or a path"
        )
    if uri.startswith("zoo:"):
        path = _zoo_folder(uri, Path(zoo_root))
    elif uri.startswith("hf:"):
        path = _hf_snapshot(uri, trust_remote_code, allow_pickle, cache_dir)
    elif _SCHEME.match(uri):
        raise CandidateError(
            uri, "unknown URI scheme; expected zoo:<variant>@<step>, hf:<repo>@<rev> or a path"
        )
    else:
        path = Path(uri).expanduser()
    if allow_pickle and pickle_only(path):
        check_config(path, uri, trust_remote_code)  # before anything is read from it
        target = Path(cache_dir) / "safetensors" if cache_dir is not None else path.parent
        path = convert_pickle_folder(path, uri, target)
    verify_checkpoint(path, uri, trust_remote_code=trust_remote_code)
    return path


def load_candidate(
    uri: str,
    *,
    zoo_root: str | Path = DEFAULT_ZOO_ROOT,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    cache_dir: str | Path | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Model and tokenizer of a verified candidate."""
    path = resolve_candidate(
        uri,
        zoo_root=zoo_root,
        trust_remote_code=trust_remote_code,
        allow_pickle=allow_pickle,
        cache_dir=cache_dir,
    )
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path, use_safetensors=True, trust_remote_code=trust_remote_code
        )
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, RuntimeError) as err:
        raise CandidateError(uri, f"transformers could not load {path}: {err}") from err
    return model, tokenizer


def parse_zoo_uri(uri: str) -> tuple[str, int]:
    """`zoo:<variant>@<step>` → (variant, step); the name can never be a path."""
    match = _ZOO_URI.fullmatch(uri)
    if match is None:
        raise CandidateError(uri, "malformed zoo URI; expected zoo:<variant>@<step>")
    if not is_valid_name(match["name"]):
        raise CandidateError(
            uri, "invalid variant name: letters, digits, '.', '_' and '-' only (no paths)"
        )
    return match["name"], int(match["step"])


def install_run(run: Path, zoo_root: Path, run_name: str) -> Path:
    """Put a pre-training run that arrived from elsewhere (an artifact store) into the zoo
    root under its name, atomically; a run already there is left as it is."""
    if not is_valid_name(run_name):
        raise CandidateError(f"zoo:{run_name}", "invalid run name")
    target = zoo_root / run_name
    if not target.is_dir():
        zoo_root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{run_name}-", dir=zoo_root))
        shutil.copytree(run, staging, dirs_exist_ok=True)
        try:
            staging.rename(target)
        except OSError:  # another process installed it first
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _zoo_folder(uri: str, zoo_root: Path) -> Path:
    name, step = parse_zoo_uri(uri)
    root = zoo_root.resolve()
    runs = [root / name] if re.search(r"-[0-9a-f]{8}$", name) and (root / name).is_dir() else []
    runs = runs or [
        p
        for p in root.glob(f"{name}-*")
        if re.fullmatch(rf"{re.escape(name)}-[0-9a-f]{{8}}", p.name)
    ]
    if not runs:
        raise CandidateError(uri, f"no variant {name!r} in the zoo at {root}")
    run = max(runs, key=_run_rank)  # several configurations of one name: the newest complete
    path = (run / f"checkpoint-{step}").resolve()
    if not path.is_relative_to(root):
        raise CandidateError(uri, f"resolves outside the zoo root {root}")
    if not path.is_dir():
        found = (re.fullmatch(r"checkpoint-(\d+)", p.name) for p in run.iterdir() if p.is_dir())
        steps = sorted(int(m[1]) for m in found if m)
        raise CandidateError(uri, f"no checkpoint at step {step} in {run}; saved steps: {steps}")
    return path


def _run_rank(run: Path) -> tuple[bool, float]:
    manifest = run / RUN_MANIFEST
    try:
        complete = bool(json.loads(manifest.read_text()).get("complete"))
        return complete, manifest.stat().st_mtime
    except (OSError, ValueError):
        return False, 0.0


def _hf_snapshot(
    uri: str, trust_remote_code: bool, allow_pickle: bool, cache_dir: str | Path | None
) -> Path:
    match = _HF_URI.fullmatch(uri)
    if match is None:
        raise CandidateError(
            uri, "malformed hf URI; expected hf:<owner>/<repo>@<revision> (pin a revision)"
        )
    patterns = HF_ALLOW_PATTERNS + (["*.py"] if trust_remote_code else [])
    try:
        folder = Path(
            snapshot_download(
                match["repo"],
                revision=match["revision"],
                allow_patterns=patterns,
                cache_dir=cache_dir,
            )
        )
        if allow_pickle and not any(folder.glob("*.safetensors")):  # pickles only if need be
            folder = Path(
                snapshot_download(
                    match["repo"],
                    revision=match["revision"],
                    allow_patterns=[*patterns, "pytorch_model*.bin"],
                    cache_dir=cache_dir,
                )
            )
    except (HfHubHTTPError, EntryNotFoundError, OSError, ValueError) as err:
        raise CandidateError(
            uri,
            f"could not fetch {match['repo']}@{match['revision']} from the Hugging Face Hub: "
            f"{err} (offline, with HF_HUB_OFFLINE=1 or no network, only snapshots already in "
            "the local cache can be used)",
        ) from err
    return folder
