"""mmpt.store: the Lance dataset store — schema, ingest (manifests, folders, tables) with validation and a
report, the dataset handle (`open_dataset`), `data info` figures, notebook preview and the demo corpus."""
