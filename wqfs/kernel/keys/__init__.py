"""The key source, split as security/keys/ is: key.c, keyring.c, keyctl.c, process_keys.c,
permission.c, request_key.c, persistent.c, gc.c, proc.c, and the key types (user_defined.c's
in key_type.py, big_key.c's in big_key.py, registered on import as register_key_type does)."""
from . import big_key  # noqa: F401  (registers the type)
