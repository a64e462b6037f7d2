"""tgsample."""
