"""The bottom layer: errors, the build options and the cache file format. Imports no other layer."""
