"""The console's screens: the main screen and the params editor."""

from .edit_params import EditParamsScreen, schema_summary
from .main import MainScreen

__all__ = ["EditParamsScreen", "MainScreen", "schema_summary"]
