"""deltatrain: keep a Rasa-format assistant's models current from CI.

The package is layered as a functional core with an imperative shell:

* ``pipeline.data``         – frozen data model and the Rasa YAML loader
* ``pipeline.validation``   – pure checks over the data model
* ``pipeline.fingerprint``  – sectioned content hashes and change summaries
* ``pipeline.decision``     – skip / repackage / finetune / full, with reasons
* ``pipeline.training``     – the only place that imports TensorFlow
* ``pipeline.stores``       – model stores picked by URL (local, HTTP, S3)
* ``pipeline.ci``           – the one orchestrator
* ``pipeline.cli``          – the thin command-line adapter
"""

__version__ = "0.1.0"

#: Version of the on-disk model format. Bump when saved models change shape;
#: models of another format version are never finetuned, always retrained.
MODEL_FORMAT_VERSION = "1"

#: Where ``deltatrain ci`` writes its test reports, relative to the project: a folder deltatrain owns.
RESULTS_DIR = ".deltatrain/results"
