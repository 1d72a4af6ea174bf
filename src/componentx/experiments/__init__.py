"""DVC experiments side by side with paired intervals, and the standard model sweep."""
