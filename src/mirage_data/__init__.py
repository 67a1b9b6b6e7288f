"""mirage-data: get, check and prepare the Mirage JWST reference-file collection."""

__version__ = "0.1.0"
