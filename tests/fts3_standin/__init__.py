"""A stand-in FTS3 server for tests (see :mod:`tests.fts3_standin.server`)."""
