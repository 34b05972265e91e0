"""Example host applications for sessiontrack (not part of the installed package)."""
