"""What trained models do and how fast they are: probes, figures, benchmarks, reports, classifying files.

May import every layer below it (ops, nn, data, training), never the CLI. Modules: ``probes``
(capsule perturbations, couplings by iteration), ``figures`` (PNG plots),
``learning_curves`` (test error through training), ``matching`` (comparing
models at the same accuracy), ``reports`` (results files), ``classify`` (image files to classes),
``bench`` (speed and memory) and ``side_by_side`` with ``systems/`` (capsjax against its peers).
"""
