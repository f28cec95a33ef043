"""Model training: the only package that imports TensorFlow.

Import this package (and its submodules) only once a decision says something
must be trained or tested; ``deltatrain --help``, ``data validate`` and a
``skip`` decision never import it.
"""
