"""The kernel-transform candidate: MiniRocket features of the windows and a linear head."""
