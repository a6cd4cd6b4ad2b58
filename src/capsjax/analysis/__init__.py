"""What trained models do and how fast they are: probes, figures, benchmarks, reports, classifying files.

May import every layer below it (ops, nn, data, training), never the CLI. Modules: ``probes``
(capsule perturbations, couplings by iteration), ``figures`` (PNG plots), ``matching`` (comparing
models at the same accuracy), ``reports`` (results files), ``classify`` (image files to classes)
and ``bench`` (speed and memory).
"""
