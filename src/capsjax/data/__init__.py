"""Data on the host: file readers, named datasets, generated datasets and batching.

Imports nothing of capsjax above :mod:`capsjax.ops` (and :mod:`capsjax.errors`). Modules: ``idx``
(the IDX format), ``sources`` (where the IDX datasets are found), ``download`` (checksummed
downloads with a deadline), ``file_formats``, ``image_folders`` and ``format_errors`` (data in files),
``dataset`` (``ArrayDataset``), ``registry`` (datasets by name: ``load_split``), ``multimnist``,
``affine`` and ``viewpoints`` (generated data; ``shapes`` and ``rendering`` build and draw the 3-D
objects of ``viewpoints``), ``canvas`` (placing images on a larger canvas), ``pipeline`` (epoch
order, batches, prefetch), ``image_files`` (reading images, writing PNG grids) and ``atomic``
(files written whole or not at all).
"""
