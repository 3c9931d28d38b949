"""The forkserver's preload (see :mod:`spiders.extraction_pool`): importing this module
loads the extractor and the language detector, once, in the forkserver, so that every worker
forked from it starts warm and shares those pages with its siblings."""

import gc

from spiders.extraction_pool import warm_up

warm_up()
# Everything loaded so far lives as long as the workers: keep the garbage collector of each
# worker from walking it (and from writing to its pages, which would unshare them).
gc.freeze()
