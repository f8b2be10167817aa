"""security/keys/big_key.c: the big_key type, for payloads up to 1 MiB (Kerberos tickets).

big_key_preparse takes 1..1048576 bytes (add_key's own limit, 1 MiB - 1, comes first) and
charges an arbitrary 16 bytes of quota whatever the size; big_key_update reserves the whole
new length first (so a large update can fail with EDQUOT though it would be charged 16);
revoke gives the quota back. The kernel encrypts large payloads into a shmem file: that is
storage, invisible to a caller, and not emulated.
"""
from __future__ import annotations

from .key_type import KeyType, register_key_type

BIG_KEY_MAX_PAYLOAD = 1024 * 1024
BIG_KEY_QUOTA = 16  # "Set an arbitrary quota"

BIG_KEY = KeyType("big_key", readable=True, updatable=True, max_payload=BIG_KEY_MAX_PAYLOAD,
                  fixed_quota=BIG_KEY_QUOTA, revoke_clears_quota=True)
register_key_type(BIG_KEY)
