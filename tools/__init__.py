"""Benchmarks (:mod:`tools.bench`) and maintenance scripts, each run from the repository root as
``python -m tools.<name>``: ``zoo_report`` (the README's model-zoo table), ``reproduce_samek`` (the AOPC
comparison), ``photos`` (the offline photos), ``make_imagenet_labels`` (the ImageNet class-name file)."""
