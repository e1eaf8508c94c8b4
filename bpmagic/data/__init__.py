"""Small public-domain texts shipped with bpmagic for the teaching labs (see README.md here)."""
from importlib.resources import files


def text(name: str = "carroll") -> str:
    """The text `name` (.txt in this folder), e.g. text("carroll")."""
    return files(__package__).joinpath(f"{name}.txt").read_text(encoding="utf-8")
