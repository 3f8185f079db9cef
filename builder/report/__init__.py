"""The report site: gather run directories into page models, then write a static, offline website."""

from builder.report.gather import Site, gather_site, read_run
from builder.report.images import ImageSource
from builder.report.render import MARKER, RenderResult, check_output, render_site
from builder.report.serve import serve

__all__ = [
    "MARKER",
    "ImageSource",
    "RenderResult",
    "Site",
    "check_output",
    "gather_site",
    "read_run",
    "render_site",
    "serve",
]
