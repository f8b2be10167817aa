"""The syscall front of `wqfs run`: seccomp user notifications answered by the emulated kernel."""
