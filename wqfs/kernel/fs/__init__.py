"""The mount and superblock sources of the general notification queue, as the 2020 patches
put them in fs/: fs/namespace.c (the mount table and the hooks that post), fs/mount_notify.c
(watch_mount and the rootward walk) and fs/super.c (watch_sb and notify_sb). None of this was
merged; the patches' text is the specification (../shared/reference/mount-notifications.md)."""
