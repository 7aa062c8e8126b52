"""The bottom layer: errors, the build options, the cache file's schema and its validating open.

Imports no other layer."""
