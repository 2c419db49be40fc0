"""BitLocker: unlock (pybde), the FVE metadata reader and the OpenSSL fast path."""
