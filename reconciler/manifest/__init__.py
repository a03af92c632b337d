"""Manifests: YAML files in git -> DesiredState, with every problem as a located Diagnostic.

    discovery     which files are manifests; their bytes read safely (regular files, size bound)
    yaml_source   safe YAML with line/column of every key and value
    schema        structure, from schemas/manifest.schema.json (shipped in reconciler.data)
    loader        semantics (defaults, roles, references, duplicates) -> DesiredState

The only package that imports yaml.
"""

from reconciler.manifest.discovery import collect_files
from reconciler.manifest.loader import MAX_USER_TAGS, load_manifests
from reconciler.manifest.schema import schema

__all__ = ["MAX_USER_TAGS", "collect_files", "load_manifests", "schema"]
