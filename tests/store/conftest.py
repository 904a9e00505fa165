"""The store tests' ``where`` fixture: each test that takes it runs on a library directory and on a shared library."""

from store_backends import where  # noqa: F401
