"""Data on the host: file readers, named datasets, generated datasets and batching.

Imports nothing of capsjax above :mod:`capsjax.ops`. Modules: ``idx`` (the IDX format),
``sources`` (where the IDX datasets are found), ``dataset`` (``ArrayDataset``), ``registry``
(datasets by name: ``load_split``), ``multimnist`` and ``affine`` (generated data), ``canvas``
(placing images on a larger canvas), ``pipeline`` (epoch order, batches, prefetch) and
``image_files`` (reading images, writing PNG grids).
"""
