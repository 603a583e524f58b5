"""The platform's web shell: layout, navigation, message catalogues and static files for every page.

See ``docs/web.md`` for how a component adds a page.
"""

from urbanmim.web.shell import STATIC_PREFIX, NavEntry, Web, web_of

__all__ = ["STATIC_PREFIX", "NavEntry", "Web", "web_of"]
