"""The request engine: the pipeline and the plugin registry."""
