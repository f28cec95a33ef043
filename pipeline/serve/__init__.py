"""``deltatrain serve``: Rasa's HTTP API over deltatrain models, following the model store.

NumPy only: nothing here imports TensorFlow (a test holds it to that). Modules::

    settings   ServeSettings: every option and default of the server, once
    loaded     LoadedModel: an archive read into memory (NLU, dialogue, metadata)
    sources    where models come from: an archive or folder, or a model store's manifest
    watch      cheap "has the manifest changed?" reads per store backend (stat, ETag)
    reloader   Reloader: polls a source, loads a new model in the background, swaps atomically
    batching   MicroBatcher: groups concurrent parse requests into ``parse_batch`` calls
    tracker    in-memory conversations and their Rasa-shaped JSON
    auth       Rasa's token / Bearer / JWT checks (401 vs 403)
    responses  ApiError and Rasa's error body
    app        the aiohttp application: routes, middlewares, access log
    server     run the application: signals, graceful shutdown, workers

The web stack (aiohttp) is imported only by :mod:`.app` and :mod:`.server`.
"""
