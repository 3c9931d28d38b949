"""The Scrapy project: discovery spider, settings, site config, and the archive pipeline.

Importing this package does not import Scrapy; ``spiders.config`` is safe to use anywhere.
"""
