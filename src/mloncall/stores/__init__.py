"""Stores: the metadata database, the artifact store, the context of one installation and the job loop."""
