"""Long-form projects: a text as rows of segments under `results/<voice>/projects/<name>/`, each row
rendered, checked, picked and stitched on its own (state, segments, stitch, render, service)."""

from src.projects.segments import split_segments
from src.projects.service import Change, Edit, ProjectService, parse_ref, project_ref
from src.projects.state import Candidate, Project, Row

__all__ = [
    "Candidate",
    "Change",
    "Edit",
    "Project",
    "ProjectService",
    "Row",
    "parse_ref",
    "project_ref",
    "split_segments",
]
