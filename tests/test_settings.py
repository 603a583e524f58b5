"""Every setting is documented, and the layers of configuration apply in order."""

from __future__ import annotations

from pathlib import Path

import pytest

from urbanmim.settings import Settings

DOCS = Path(__file__).resolve().parent.parent / "docs" / "settings.md"


def test_every_setting_is_documented() -> None:
    text = DOCS.read_text()
    missing = [name for name, _, _ in Settings.documented() if f"`{name}`" not in text]
    assert not missing, f"settings missing from docs/settings.md: {missing}"


def test_file_then_environment_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "u.toml"
    cfg.write_text('port = 2000\ndb = "from-file.db"\nmax_limit = 50\n')
    monkeypatch.setenv("URBANMIM_DB", "from-env.db")
    s = Settings.load(str(cfg), port=3000)
    assert (s.port, s.db, s.max_limit) == (3000, "from-env.db", 50)
