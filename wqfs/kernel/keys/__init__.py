"""The key source, split as security/keys/ is: key.c, keyring.c, keyctl.c, process_keys.c,
permission.c, request_key.c, persistent.c, gc.c, proc.c, and the key types."""
