"""Training: configs, the train and eval steps, sharding, checkpoints, metrics, the loop and sweeps.

May import :mod:`capsjax.ops`, :mod:`capsjax.nn` and :mod:`capsjax.data`; never analysis or the CLI.
Modules: ``config`` (dataclasses, files, overrides), ``state`` (TrainState, optimizer),
``objectives`` (losses and accuracy), ``steps`` (the jitted steps), ``sharding``, ``checkpoint``,
``metrics``, ``evaluation``, ``loop`` (``train_and_evaluate``) and ``sweeps`` (variants x seeds).
"""
