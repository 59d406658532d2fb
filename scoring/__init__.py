"""Batch scoring: stream a file of texts through one model version into resumable Parquet/CSV parts.

Modules, in the order a row travels: ``readers`` (find, check and stream the input) →
``score`` (the per-chunk function: validate texts, call the Predictor) → ``writer`` (atomic part
files + manifest) with ``engines`` (local processes or Dask) and ``job`` (the steps of one run)
in between; ``cli`` is the command line. ``storage`` lets every path be local or an fsspec URL
(``s3://``), ``models`` finds the model version (local or remote registry). Never imports
TensorFlow or Flask.
"""
