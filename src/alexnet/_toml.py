"""TOML reading on every supported Python: ``tomllib`` (3.11+) or its backport ``tomli`` (3.10)."""

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pyproject.toml installs tomli there
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = ["tomllib"]
