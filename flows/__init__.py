"""Prefect flows (crawl), and the ``newsarchive`` command line."""
