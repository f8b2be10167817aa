"""The general notification queue, kernel/watch_queue.c: queues, their filters, watches and
posting, apart from the sources (keys; mounts and superblocks) that post into them."""
from .filter import Filter, TypeFilter, filter_entries_size, pack_filter
from .queue import QueueStatistics, WatchQueue, capacity_for
from .watch import (Watch, WatchCounts, add_watch_to_object, find_watch, post_watch_notification,
                    remove_watch_from_object, remove_watch_list, watch_queue_clear)

__all__ = ["Filter", "TypeFilter", "filter_entries_size", "pack_filter", "QueueStatistics", "WatchQueue", "capacity_for", "Watch",
           "WatchCounts", "add_watch_to_object", "find_watch", "post_watch_notification",
           "remove_watch_from_object", "remove_watch_list", "watch_queue_clear"]
