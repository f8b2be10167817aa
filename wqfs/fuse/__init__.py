"""The FUSE front: the keyring tree and the queue files, as pyfuse3 requests on the emulated kernel."""
