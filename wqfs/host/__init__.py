"""The host's side of mount and superblock notifications: what the real kernel reports of its
mount namespaces (fanotify mount events, statmount/listmount, /proc/PID/mountinfo's POLLPRI,
FAN_FS_ERROR), fed to the emulated kernel's fs/namespace.c hooks, and paths resolved as a
caller sees them. Not part of the core: it touches the real machine, and uses only the core's
public API (wqfs.kernel).

    feeds.py       MountFeeds: watch_mount/watch_sb in the patches' order, the feeds' life and bounds
    engines.py     one namespace's feed: the fanotify engine and the mountinfo fallback
    sb_errors.py   a FAN_FS_ERROR group per watched superblock
    lookup.py      the path lookup as the caller, in a helper (lookup_child.py)
    sentinel.py    a process in a namespace, for its mountinfo (sentinel_child.py)
    fanotify.py statmount.py mountinfo.py libc.py   the host interfaces, one file each
"""
