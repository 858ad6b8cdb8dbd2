"""Benchmarks (:mod:`tools.bench`) and maintenance scripts, each run from the repository root as
``python -m tools.<name>``: ``zoo_report`` (the README's model-zoo table), ``zoo_gradient_pieces`` (why three zoo rows
differ from the float64 gradient), ``aopc_study`` (the region-perturbation study, docs/aopc.md), ``photos`` (the
offline photos), ``make_imagenet_labels`` (the ImageNet class-name file)."""
