"""Files: streaming FITS reading and writing, and the one atomic write-then-rename helper.

Imports only numpy, astropy and the standard library.
"""
