"""The host's side of mount and superblock notifications: what the real kernel reports of its
mount namespaces (fanotify mount events, statmount/listmount, /proc/PID/mountinfo's POLLPRI,
FAN_FS_ERROR), fed to the emulated kernel's fs/namespace.c hooks, and paths resolved as a
caller sees them. Not part of the core: it touches the real machine, and uses only the core's
public API (wqfs.kernel)."""
