"""``python -m rollway.web``: rewrites rollway.classic.js from rollway.js after an edit."""

from rollway.web import FILES, HERE, classic_build, source

(HERE / FILES["classic"]).write_text(classic_build(source("module")), encoding="utf-8")
print(f"wrote {HERE / FILES['classic']}")
