"""Transfer backends: the systems that actually move files.

Import from the modules themselves (``dynamo_transfer.backends.fts3`` for the FTS3 REST client),
so that using one backend does not load the others' dependencies.
"""
